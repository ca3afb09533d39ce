"""Keyed tokens and Bloom-filter encodings of identifier values.

- ``token``: HMAC-SHA256 under a per-field key (HKDF from the linkage key), truncated to a signed 64-bit integer.
  64 bits keep the hub's joins fast and small; a chance collision between two *different* values of one field
  (~n²/2⁶⁵, about 3·10⁻⁶ among ten million values) adds one spurious agreement on one feature and is harmless to
  probabilistic linkage. Record tokens, which must be unique, are 128-bit hex strings.
- ``bloom``: a cryptographic long-term key style encoding (Schnell et al.) of a value's character bigrams: each
  bigram sets ``k`` bits chosen by HMAC under the field's key, so the Dice coefficient of two filters approximates
  the bigram similarity of the two values without revealing them. Stored as signed 64-bit words so
  DuckDB and Spark can score Dice in SQL. Optional hardenings (salting, balancing, XOR-folding) are in
  ``carelink.pseudonymise.hardening``.

Values are encoded once per distinct value (``factorize``) and gathered back by index, and HMACs reuse the hashed
key blocks (``KeyedHash``): names, dates and postcodes repeat heavily, and an HMAC of a short value then costs one
pair of SHA-256 compressions.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources

import jellyfish
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from carelink.pseudonymise import hardening as hard

BLOOM_BITS = 512
BLOOM_WORDS = BLOOM_BITS // 64
BLOOM_HASHES = 15


@dataclass(frozen=True)
class BloomLayout:
    """Size and hash count of one field's filter, chosen so a typical value sets roughly a quarter of the bits
    (a saturated filter makes every pair look similar), and the hardening applied to it.

    ``bits`` is the size of the filter the bigrams are hashed into; ``out_bits`` and ``words`` are the size of what
    is stored (balancing doubles it, XOR-folding halves it), which is what Dice in SQL reads.
    """

    bits: int
    hashes: int
    hardening: str = "none"

    @property
    def out_bits(self) -> int:
        return hard.output_bits(self.bits, self.hardening)

    @property
    def words(self) -> int:
        return self.out_bits // 64


_BASE_LAYOUTS = {
    "given_name_bf": (BLOOM_BITS, BLOOM_HASHES),
    "family_name_bf": (BLOOM_BITS, BLOOM_HASHES),
    "address_bf": (1024, 8),
}


def bloom_layouts(hardening: str = "none") -> dict[str, BloomLayout]:
    """Filter layout per encoded field under one hardening (see ``hardening.HARDENINGS``)."""
    hard.check(hardening)
    return {column: BloomLayout(bits, hashes, hardening) for column, (bits, hashes) in _BASE_LAYOUTS.items()}


#: Filter layout per encoded field, unhardened: names are short (~8 bigrams), address lines long (~30-40 bigrams).
BLOOM_LAYOUTS = bloom_layouts("none")
_MASK64 = (1 << 64) - 1


# ------------------------------------------------------------------------------------------------------- HMAC


class KeyedHash:
    """HMAC-SHA256 (RFC 2104) under one key, for many short values.

    The key's inner and outer padded blocks are hashed once and the states copied per value, which halves the cost
    of ``hmac.digest`` (that re-hashes them on every call).
    """

    def __init__(self, key: bytes):
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        block = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def digest(self, value: bytes) -> bytes:
        inner, outer = self._inner.copy(), self._outer.copy()
        inner.update(value)
        outer.update(inner.digest())
        return outer.digest()

    def prefixes(self, values: Iterable[bytes], size: int) -> bytes:
        """The first ``size`` bytes of each value's HMAC, concatenated."""
        new_inner, new_outer = self._inner.copy, self._outer.copy
        out = []
        append = out.append
        for value in values:
            inner = new_inner()
            inner.update(value)
            outer = new_outer()
            outer.update(inner.digest())
            append(outer.digest()[:size])
        return b"".join(out)


def token_of(field_key: bytes, value: str) -> int:
    """The keyed token of one value (signed 64-bit integer)."""
    digest = hmac.digest(field_key, value.encode("utf-8"), "sha256")
    return int.from_bytes(digest[:8], "big", signed=True)


def record_token_of(field_key: bytes, value: str) -> str:
    """A 128-bit hex token, for values that must stay unique (record identifiers)."""
    return hmac.digest(field_key, value.encode("utf-8"), "sha256")[:16].hex()


def token_array(field_key: bytes, values: list[bytes]) -> np.ndarray:
    """Keyed 64-bit tokens of UTF-8 values as an int64 array (``token_of`` of each)."""
    buffer = KeyedHash(field_key).prefixes(values, 8)
    return np.frombuffer(buffer, dtype=">i8").astype(np.int64)


def _utf8(series: pl.Series) -> list[bytes]:
    return series.cast(pl.Binary).to_list()


def tokens_of_values(series: pl.Series, field_key: bytes) -> pl.Series:
    """Keyed 64-bit tokens of each value of a string column, one HMAC per row (nulls stay null)."""
    series = series.cast(pl.String)
    present = series.is_not_null()
    if series.null_count() == 0:
        return pl.Series(series.name, token_array(field_key, _utf8(series)), dtype=pl.Int64)
    out = np.zeros(series.len(), dtype=np.int64)
    out[present.to_numpy()] = token_array(field_key, _utf8(series.filter(present)))
    return pl.select(pl.when(present).then(pl.Series(series.name, out))).to_series().alias(series.name)


# ------------------------------------------------------------------------------------- distinct values


@dataclass(frozen=True)
class Distinct:
    """A column factorised: its distinct non-null ``values`` and, per row, the index of its value (null for null)."""

    values: pl.Series
    codes: pl.Series

    def back(self, encoded: pl.Series) -> pl.Series:
        """Per-row values of ``encoded`` (one entry per distinct value)."""
        return encoded.gather(self.codes)


def factorize(series: pl.Series) -> Distinct:
    """Distinct values of a column and each row's index among them.

    Strings and nested values are grouped by a 64-bit hash (fast) and every row is then compared with its group's
    representative, so a hash collision can never merge two values: if one ever did, the exact (hash-table join)
    path is used instead. Other types are dictionary-encoded directly.
    """
    present = series.drop_nulls()
    values, codes = _factorize_present(present)
    if present.len() != series.len():
        mask = series.is_not_null()
        position = (mask.cast(pl.Int64).cum_sum() - 1).clip(lower_bound=0)
        codes = pl.select(pl.when(mask).then(codes.gather(position))).to_series() if present.len() else \
            pl.Series(codes.name, [None] * series.len(), dtype=codes.dtype)
    return Distinct(values.alias(series.name), codes.alias("_code"))


def _factorize_present(series: pl.Series) -> tuple[pl.Series, pl.Series]:
    if series.len() == 0:
        return series, pl.Series("_code", [], dtype=pl.Int32)
    if series.dtype != pl.String and not series.dtype.is_nested():
        encoded = pc.dictionary_encode(series.to_arrow())
        return pl.Series(series.name, encoded.dictionary), pl.from_arrow(encoded.indices).alias("_code")
    encoded = pc.dictionary_encode(series.hash(0x5EED).to_arrow())
    codes = pl.from_arrow(encoded.indices).alias("_code")
    first = np.empty(len(encoded.dictionary), dtype=np.int64)
    first[codes.to_numpy()] = np.arange(series.len())
    values = series.gather(first)
    if bool(values.gather(codes).eq_missing(series).all()):
        return values, codes
    distinct = series.unique(maintain_order=True)  # a hash collision: group by the values themselves
    index = pl.DataFrame({"_v": distinct, "_code": pl.int_range(distinct.len(), dtype=pl.Int32, eager=True)})
    codes = pl.DataFrame({"_v": series}).join(index, on="_v", how="left", maintain_order="left")["_code"]
    return distinct, codes


def map_distinct(series: pl.Series, function: Callable[[pl.Series], pl.Series]) -> pl.Series:
    """Encode each distinct non-null value of ``series`` once (``function`` maps a Series of distinct values to a
    Series of their encodings) and map the results back onto every row."""
    distinct = factorize(series)
    return distinct.back(function(distinct.values)).alias(series.name)


def tokens(series: pl.Series, field_key: bytes) -> pl.Series:
    """Keyed 64-bit tokens of a string column (nulls stay null)."""
    return map_distinct(series.cast(pl.String), lambda values: tokens_of_values(values, field_key))


def record_tokens(series: pl.Series, field_key: bytes) -> pl.Series:
    """Keyed 128-bit hex tokens of a string column (one HMAC per row: record identifiers do not repeat)."""
    series = series.cast(pl.String)
    present = series.drop_nulls()
    buffer = KeyedHash(field_key).prefixes(_utf8(present), 16)
    digests = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), present.len(), [None, pa.py_buffer(buffer)])
    hexes = pl.Series(series.name, digests, dtype=pl.Binary).bin.encode("hex")
    if present.len() == series.len():
        return hexes.alias(series.name)
    mask = series.is_not_null()
    position = (mask.cast(pl.Int64).cum_sum() - 1).clip(lower_bound=0)
    return pl.select(pl.when(mask).then(hexes.gather(position))).to_series().alias(series.name)


def deletion_variants(value: str) -> list[str]:
    """The value and the value with each one character deleted, sorted and de-duplicated
    ("123" → "12", "123", "13", "23").

    Two values share a variant when they differ by one substitution, one adjacent transposition, or one inserted or
    deleted character — the typing errors identifiers suffer — so keyed tokens of the variants compare identifiers
    at edit distance one without revealing them.
    """
    return sorted({value} | {value[:i] + value[i + 1 :] for i in range(len(value))} - {""})


def variant_tokens(series: pl.Series, field_key: bytes, variants: Callable[[str], list[str]]) -> pl.Series:
    """Keyed 64-bit tokens of ``variants`` of each value (a list per row; nulls stay null)."""
    def lists(values: pl.Series) -> pl.Series:
        groups = [variants(v) for v in values.to_list()]
        flat = token_array(field_key, [d.encode("utf-8") for group in groups for d in group])
        offsets = np.zeros(len(groups) + 1, dtype=np.int64)
        np.cumsum([len(group) for group in groups], out=offsets[1:])
        array = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat, type=pa.int64()))
        return pl.Series(values.name, pl.from_arrow(array), dtype=pl.List(pl.Int64))
    return map_distinct(series.cast(pl.String), lists)


def deletion_tokens(series: pl.Series, field_key: bytes) -> pl.Series:
    """Keyed 64-bit tokens of every one-character deletion of each value (a list per row; nulls stay null)."""
    return variant_tokens(series, field_key, deletion_variants)


# ------------------------------------------------------------------------------------------ Bloom filters


def typo_near(value: str) -> list[str]:
    """What ``value`` offers for one-typo matching: itself, each deletion tagged with its position (two values
    share one when they differ by a substitution there) and each adjacent transposition of it."""
    deletions = {f"S{i}:{value[:i]}{value[i + 1:]}" for i in range(len(value))}
    swaps = {f"T:{value[:i]}{value[i + 1]}{value[i]}{value[i + 2:]}" for i in range(len(value) - 1)}
    return sorted({f"V:{value}"} | deletions | swaps)


def typo_reach(value: str) -> list[str]:
    """What ``value`` accepts from the other side's ``typo_near``: each one-character deletion of it (the other value
    lacks a character) and itself as a transposition target. A value's near list meets the other's reach list, or
    the two near lists meet, exactly when the two are one substitution, insertion, deletion or adjacent
    transposition apart — never two edits (JACK/JAKE), unlike a plain deletion neighbourhood."""
    return sorted({f"V:{value[:i]}{value[i + 1:]}" for i in range(len(value))} - {"V:"} | {f"T:{value}"})


def bigrams(value: str) -> set[str]:
    """Character bigrams of a value padded with a space at each end ("ANN" → " A", "AN", "NN", "N ")."""
    padded = f" {value} "
    return {padded[i : i + 2] for i in range(len(padded) - 1)}


#: Values per block when filters are built (a block's filters stay in the CPU cache while its bigrams are OR-ed in).
_BLOCK = 2048


class BloomEncoder:
    """Encodes values as keyed bigram Bloom filters, optionally hardened (``hardening.HARDENINGS``).

    A filter is the bitwise OR of its bigrams' bit patterns (``hashes`` bits each, by double hashing over
    HMAC-SHA256 of the bigram). Filters are built in numpy: each distinct bigram's pattern is computed once per
    encoder (per salt, when salted), then OR-ed into each value's filter position by position.
    """

    def __init__(self, field_key: bytes, bits: int = BLOOM_BITS, hashes: int = BLOOM_HASHES,
                 hardening: str = "none"):
        hard.check(hardening)
        if bits % 64 or bits <= 0 or (hardening == "xor_fold" and bits % 128):
            raise ValueError(f"Bloom filter size must be a positive multiple of 64 bits (128 to fold), not {bits}")
        self._key = field_key
        self._bits = bits
        self._hashes = hashes
        self.hardening = hardening
        self._patterns: dict[tuple[str, str], np.ndarray] = {}  # (salt, bigram) → words
        self._permutation = hard.permutation(field_key, 2 * bits) if hardening == "balanced" else None

    @property
    def out_bits(self) -> int:
        return hard.output_bits(self._bits, self.hardening)

    def encode(self, value: str, salt: str | None = None) -> tuple[int, ...]:
        """The filter of one value as signed 64-bit words (``salt``: the record's salt, when salted)."""
        return tuple(int(w) for w in self.encode_values([value], None if salt is None else [salt])[0])

    def encode_values(self, values: list[str], salts: list[str] | None = None) -> np.ndarray:
        """Filters of many values as a (values × words) int64 array; ``salts`` (one per value) when salted."""
        if (salts is None) == (self.hardening == "salted"):
            raise ValueError("salts are needed exactly when the hardening is 'salted'")
        base = self._filters(values, salts)
        return hard.transform(base, self.hardening, self._permutation).view(np.int64)

    def encode_series(self, series: pl.Series, salts: pl.Series | None = None) -> pl.Series:
        """Filters of a string column as lists of signed 64-bit words (null stays null). When salted, ``salts``
        holds each row's salt (a null salt is the salt "")."""
        series = series.cast(pl.String)
        if salts is None:
            distinct = factorize(series)
            return list_column(series.name, self.encode_values(distinct.values.to_list()), distinct.codes)
        salts = salts.cast(pl.String).fill_null("")
        by_value, by_salt = factorize(series), factorize(salts)
        pair = by_value.codes.cast(pl.Int64) * max(by_salt.values.len(), 1) + by_salt.codes.cast(pl.Int64)
        distinct = factorize(pair)
        first = first_rows(distinct)
        matrix = self.encode_values(series.gather(first).to_list(), salts.gather(first).to_list())
        return list_column(series.name, matrix, distinct.codes)

    # ----------------------------------------------------------------------------------------- internals

    def _filters(self, values: list[str], salts: list[str] | None) -> np.ndarray:
        """Unhardened filters (values × words, uint64).

        Values are taken in blocks of similar length as UTF-32 code arrays; each (salt, bigram) becomes a row of a
        pattern table (row 0 all zeros, for positions past a value's end) and a value's filter is the OR of the
        rows of its bigrams, one bigram position at a time.
        """
        words = self._bits // 64
        out = np.zeros((len(values), words), dtype=np.uint64)
        if not values:
            return out
        padded = [f" {v} " for v in values]
        lengths = np.fromiter(map(len, padded), dtype=np.int64, count=len(padded))
        order = np.argsort(lengths, kind="stable")
        salt_ids, salt_names = (np.zeros(len(values), dtype=np.int64), [""]) if salts is None else _ids(salts)
        blocks = []
        seen = np.zeros(_CODEPOINTS, dtype=bool)
        for start, end in _blocks(lengths[order]):
            rows = order[start:end]
            width = int(lengths[rows[-1]])
            chars = np.array([padded[i] for i in rows], dtype=f"<U{width}").view(np.uint32).reshape(len(rows), width)
            seen[chars.ravel()] = True
            blocks.append((rows, chars))
        alphabet = np.flatnonzero(seen)
        char_id = np.zeros(_CODEPOINTS, dtype=np.int64)
        char_id[alphabet] = np.arange(len(alphabet))
        size = len(alphabet)
        if len(salt_names) * size * size >= 2**62:
            raise ValueError(f"{len(salt_names)} salts × {size} distinct characters: too many to index bigrams")

        pairs = size * size
        space = len(salt_names) * pairs
        keyed = []
        for rows, chars in blocks:
            ids = char_id[chars]
            key = (salt_ids[rows] * pairs)[:, None] + ids[:, :-1] * size + ids[:, 1:]
            valid = np.arange(chars.shape[1] - 1)[None, :] < (lengths[rows] - 1)[:, None]
            keyed.append((rows, key, valid))
        if space <= _ALL_GRAMS:  # few enough to give every (salt, bigram) a row, used or not
            distinct = np.arange(space)
            row_of = lambda key: key + 1  # noqa: E731
        elif space <= _DENSE_KEYS:
            used = np.zeros(space, dtype=bool)
            for _rows, key, valid in keyed:
                used[key[valid]] = True
            distinct = np.flatnonzero(used)
            lookup = np.zeros(space, dtype=np.int64)
            lookup[distinct] = np.arange(1, len(distinct) + 1)
            row_of = lambda key: lookup[key]  # noqa: E731
        else:
            distinct = np.unique(np.concatenate([key[valid] for _rows, key, valid in keyed]))
            row_of = lambda key: np.searchsorted(distinct, key) + 1  # noqa: E731
        grams = [(salt_names[k // pairs], chr(alphabet[(k // size) % size]) + chr(alphabet[k % size]))
                 for k in distinct.tolist()]
        table = np.zeros((len(grams) + 1, words), dtype=np.uint64)
        table[1:] = self._pattern_rows(grams)
        scratch = np.empty((min(_BLOCK, len(values)), words), dtype=np.uint64)
        for rows, key, valid in keyed:
            index = np.ascontiguousarray(np.where(valid, row_of(key), 0).T)
            acc = np.zeros((len(rows), words), dtype=np.uint64)
            tmp = scratch[: len(rows)]
            for position in index:
                np.take(table, position, axis=0, out=tmp)
                acc |= tmp
            out[rows] = acc
        return out

    def _pattern_rows(self, grams: list[tuple[str, str]]) -> np.ndarray:
        """Bit patterns of (salt, bigram) pairs as (pairs × words) uint64, cached per encoder."""
        missing = [g for g in dict.fromkeys(grams) if g not in self._patterns]
        if missing:
            for g, row in zip(missing, self._compute_patterns(missing), strict=True):
                self._patterns[g] = row
        if not grams:
            return np.zeros((0, self._bits // 64), dtype=np.uint64)
        return np.stack([self._patterns[g] for g in grams])

    def _compute_patterns(self, grams: list[tuple[str, str]]) -> np.ndarray:
        """Bit ``(h1 + i·h2) mod bits`` for i < hashes, h1 and h2 the first two big-endian 64-bit words of the
        bigram's HMAC (h2 made odd), under the field key (or the salt's key, when salted)."""
        words = self._bits // 64
        by_salt: dict[str, list[int]] = {}
        for i, (salt, _gram) in enumerate(grams):
            by_salt.setdefault(salt, []).append(i)
        digests = np.empty((len(grams), 16), dtype=np.uint8)
        for salt, members in by_salt.items():
            key = hard.salt_key(self._key, salt) if self.hardening == "salted" else self._key
            buffer = KeyedHash(key).prefixes((grams[i][1].encode("utf-8") for i in members), 16)
            digests[members] = np.frombuffer(buffer, dtype=np.uint8).reshape(len(members), 16)
        h1 = digests[:, :8].copy().view(">u8").astype(np.uint64).ravel()
        h2 = digests[:, 8:].copy().view(">u8").astype(np.uint64).ravel() | np.uint64(1)
        if self._bits & (self._bits - 1) == 0:
            # (h1 + i·h2) mod 2^m: uint64 arithmetic wraps mod 2^64, which 2^m divides, so this is exact.
            steps = np.arange(self._hashes, dtype=np.uint64)
            positions = ((h1[:, None] + steps[None, :] * h2[:, None]) % np.uint64(self._bits)).astype(np.int64)
        else:
            positions = np.array([[(int(a) + i * int(b)) % self._bits for i in range(self._hashes)]
                                  for a, b in zip(h1.tolist(), h2.tolist(), strict=True)], dtype=np.int64)
        bitmap = np.zeros((len(grams), self._bits), dtype=bool)
        bitmap[np.arange(len(grams))[:, None], positions] = True
        packed = np.packbits(bitmap, axis=1, bitorder="little")
        return packed.view("<u8").astype(np.uint64).reshape(len(grams), words)


def _blocks(sorted_lengths: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive blocks of values (sorted by length) of at most ``_BLOCK`` values and ``_BLOCK_CHARS`` padded
    characters, so one very long value does not make a whole block wide."""
    blocks, start, count = [], 0, len(sorted_lengths)
    while start < count:
        low, high = start + 1, min(count, start + _BLOCK)
        while low < high:  # the last end whose block fits (sizes grow with the end: the lengths are sorted)
            middle = (low + high + 1) // 2
            if (middle - start) * int(sorted_lengths[middle - 1]) <= _BLOCK_CHARS:
                low = middle
            else:
                high = middle - 1
        blocks.append((start, low))
        start = low
    return blocks


#: Padded characters per block at most (its UTF-32 codes and bigram keys take 12 bytes each).
_BLOCK_CHARS = 1 << 20
_CODEPOINTS = 0x110000
#: Largest (salt × bigram) key space given a pattern for every key (cheaper than finding the ones used) ...
_ALL_GRAMS = 1 << 12
#: ... and indexed by a dense lookup array rather than a sorted one.
_DENSE_KEYS = 1 << 24


def _ids(names: list[str]) -> tuple[np.ndarray, list[str]]:
    distinct = list(dict.fromkeys(names))
    index = {name: i for i, name in enumerate(distinct)}
    return np.fromiter((index[n] for n in names), dtype=np.int64, count=len(names)), distinct


def first_rows(distinct: Distinct) -> np.ndarray:
    """For each distinct value, the index of one row that holds it."""
    codes = distinct.codes
    present = codes.is_not_null()
    first = np.empty(distinct.values.len(), dtype=np.int64)
    first[codes.filter(present).to_numpy().astype(np.int64)] = np.flatnonzero(present.to_numpy())
    return first


def list_column(name: str, matrix: np.ndarray, codes: pl.Series) -> pl.Series:
    """Rows of ``matrix`` (distinct values × words) gathered by ``codes`` as a List(Int64) column, null for null."""
    words = matrix.shape[1]
    present = codes.is_not_null().to_numpy()
    index = codes.filter(codes.is_not_null()).to_numpy().astype(np.int64)
    flat = matrix.view(np.int64)[index].reshape(-1)
    lengths = np.where(present, words, 0)
    offsets = np.zeros(len(present) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    array = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat),
                                          mask=None if present.all() else pa.array(~present))
    return pl.Series(name, pl.from_arrow(array), dtype=pl.List(pl.Int64))


def dice(left: list[int], right: list[int]) -> float:
    """Dice coefficient of two filters (the Python twin of the SQL the linkage uses)."""
    common = sum(bin((a & b) & _MASK64).count("1") for a, b in zip(left, right, strict=True))
    total = sum(bin(a & _MASK64).count("1") for a in left) + sum(bin(b & _MASK64).count("1") for b in right)
    return 2 * common / total if total else 0.0


# --------------------------------------------------------------------------------------- other encodings


def _each(function: Callable[[str], object], dtype: pl.DataType) -> Callable[[pl.Series], pl.Series]:
    return lambda values: pl.Series(values.name, [function(v) for v in values.to_list()], dtype=dtype)


def metaphone_first_word(values: pl.Series) -> pl.Series:
    """Metaphone code of each value's first word (the value itself where the code is empty)."""
    return _each(lambda v: jellyfish.metaphone(v.split(" ")[0]) or v, pl.String)(values)


def phonetic(series: pl.Series) -> pl.Series:
    """Metaphone code of each value's first word (computed before tokenising; never leaves in plaintext)."""
    return map_distinct(series.cast(pl.String), metaphone_first_word)


@cache
def nickname_table() -> dict[str, str]:
    """Nickname or short form → canonical forename, shipped as package data."""
    text = resources.files("carelink.data").joinpath("nicknames.csv").read_text(encoding="utf-8")
    table: dict[str, str] = {}
    for row in csv.DictReader(text.splitlines()):
        name, canonical = row["name"].strip().upper(), row["canonical"].strip().upper()
        if name and canonical and name != canonical:
            table.setdefault(name, canonical)
    return table


def canonical_first_word(values: pl.Series) -> pl.Series:
    """First word of each forename with nicknames mapped to their canonical form."""
    table = nickname_table()
    return _each(lambda v: table.get(v.split(" ")[0], v.split(" ")[0]), pl.String)(values)


@cache
def nickname_forms() -> dict[str, tuple[str, ...]]:
    """Name → every canonical forename it may stand for (CHRIS → CHRISTIAN, CHRISTINE, CHRISTOPHER, …)."""
    text = resources.files("carelink.data").joinpath("nicknames.csv").read_text(encoding="utf-8")
    forms: dict[str, set[str]] = {}
    for row in csv.DictReader(text.splitlines()):
        name, canonical = row["name"].strip().upper(), row["canonical"].strip().upper()
        if name and canonical and name != canonical:
            forms.setdefault(name, set()).add(canonical)
    return {name: tuple(sorted(canonicals)) for name, canonicals in forms.items()}


def name_forms(value: str) -> list[str]:
    """A forename's first word and every canonical name it may be short for: two forenames are nickname-equivalent
    when these lists meet (PEGGY and MEG both stand for MARGARET; MEG also for MEGAN)."""
    first = value.split(" ")[0]
    return sorted({first, *nickname_forms().get(first, ())})


def canonical_forename(series: pl.Series) -> pl.Series:
    """First word of a forename with nicknames mapped to their canonical form (PEGGY → MARGARET)."""
    return map_distinct(series.cast(pl.String), canonical_first_word)
