"""Keyed tokens and Bloom-filter encodings of identifier values.

- ``token``: HMAC-SHA256 under a per-field key (HKDF from the linkage key), truncated to a signed 64-bit integer.
  64 bits keep the hub's joins fast and small; a chance collision between two *different* values of one field
  (~n²/2⁶⁵, about 3·10⁻⁶ among ten million values) adds one spurious agreement on one feature and is harmless to
  probabilistic linkage. Record tokens, which must be unique, are 128-bit hex strings.
- ``bloom``: a cryptographic long-term key style encoding (Schnell et al.) of a value's character bigrams: each
  bigram sets ``k`` bits chosen by HMAC under the field's key, so the Dice coefficient of two filters approximates
  the bigram similarity of the two values without revealing them. Stored as signed 64-bit words so
  DuckDB and Spark can score Dice in SQL.

Values are encoded once per distinct value and joined back, which is what makes a million records a second
feasible in Python: names and dates repeat heavily.
"""

from __future__ import annotations

import csv
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

import jellyfish
import numpy as np
import polars as pl

BLOOM_BITS = 512
BLOOM_WORDS = BLOOM_BITS // 64
BLOOM_HASHES = 15


@dataclass(frozen=True)
class BloomLayout:
    """Size and hash count of one field's filter, chosen so a typical value sets roughly a quarter of the bits
    (a saturated filter makes every pair look similar)."""

    bits: int
    hashes: int

    @property
    def words(self) -> int:
        return self.bits // 64


#: Filter layout per encoded field: names are short (~8 bigrams), address lines long (~30-40 bigrams).
BLOOM_LAYOUTS = {
    "given_name_bf": BloomLayout(BLOOM_BITS, BLOOM_HASHES),
    "family_name_bf": BloomLayout(BLOOM_BITS, BLOOM_HASHES),
    "address_bf": BloomLayout(1024, 8),
}
_MASK64 = (1 << 64) - 1


def token_of(field_key: bytes, value: str) -> int:
    """The keyed token of one value (signed 64-bit integer)."""
    digest = hmac.digest(field_key, value.encode("utf-8"), "sha256")
    return int.from_bytes(digest[:8], "big", signed=True)


def record_token_of(field_key: bytes, value: str) -> str:
    """A 128-bit hex token, for values that must stay unique (record identifiers)."""
    return hmac.digest(field_key, value.encode("utf-8"), "sha256")[:16].hex()


def _map_distinct(series: pl.Series, function: Callable[[list[str]], pl.Series]) -> pl.Series:
    """Encode each distinct non-null value of ``series`` once (``function`` maps a list of values to a Series of
    their encodings) and map the results back onto every row."""
    distinct = series.drop_nulls().unique().sort()
    encoded = function(distinct.to_list())
    if distinct.len() == 0:
        return pl.Series(series.name, [None] * series.len(), dtype=encoded.dtype)
    mapping = pl.DataFrame({"_value": distinct, "_encoded": encoded})
    frame = pl.DataFrame({"_value": series}).with_row_index("_i")
    joined = frame.join(mapping, on="_value", how="left").sort("_i")
    return joined["_encoded"].alias(series.name)


def _each(function: Callable[[str], object], dtype: pl.DataType) -> Callable[[list[str]], pl.Series]:
    return lambda values: pl.Series([function(v) for v in values], dtype=dtype)


def tokens(series: pl.Series, field_key: bytes) -> pl.Series:
    """Keyed 64-bit tokens of a string column (nulls stay null)."""
    return _map_distinct(series.cast(pl.String), _each(lambda v: token_of(field_key, v), pl.Int64))


def record_tokens(series: pl.Series, field_key: bytes) -> pl.Series:
    """Keyed 128-bit hex tokens of a string column."""
    return _map_distinct(series.cast(pl.String), _each(lambda v: record_token_of(field_key, v), pl.String))


def deletion_variants(value: str) -> list[str]:
    """The value and the value with each one character deleted, sorted and de-duplicated
    ("123" → "12", "123", "13", "23").

    Two values share a variant when they differ by one substitution, one adjacent transposition, or one inserted or
    deleted character — the typing errors identifiers suffer — so keyed tokens of the variants compare identifiers
    at edit distance one without revealing them.
    """
    return sorted({value} | {value[:i] + value[i + 1 :] for i in range(len(value))} - {""})


def deletion_tokens(series: pl.Series, field_key: bytes) -> pl.Series:
    """Keyed 64-bit tokens of every one-character deletion of each value (a list per row; nulls stay null)."""
    return _map_distinct(series.cast(pl.String),
                         _each(lambda v: [token_of(field_key, d) for d in deletion_variants(v)], pl.List(pl.Int64)))


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


def variant_tokens(series: pl.Series, field_key: bytes, variants: Callable[[str], list[str]]) -> pl.Series:
    """Keyed 64-bit tokens of ``variants`` of each value (a list per row; nulls stay null)."""
    return _map_distinct(series.cast(pl.String),
                         _each(lambda v: [token_of(field_key, d) for d in variants(v)], pl.List(pl.Int64)))


def bigrams(value: str) -> set[str]:
    """Character bigrams of a value padded with a space at each end ("ANN" → " A", "AN", "NN", "N ")."""
    padded = f" {value} "
    return {padded[i : i + 2] for i in range(len(padded) - 1)}


class BloomEncoder:
    """Encodes values as keyed bigram Bloom filters; bigram bit patterns are cached per encoder."""

    def __init__(self, field_key: bytes, bits: int = BLOOM_BITS, hashes: int = BLOOM_HASHES):
        self._key = field_key
        self._bits = bits
        self._hashes = hashes
        self._patterns: dict[str, int] = {}

    def _pattern(self, gram: str) -> int:
        pattern = self._patterns.get(gram)
        if pattern is None:
            digest = hmac.digest(self._key, gram.encode("utf-8"), "sha256")
            h1 = int.from_bytes(digest[:8], "big")
            h2 = int.from_bytes(digest[8:16], "big") | 1
            pattern = 0
            for i in range(self._hashes):
                pattern |= 1 << ((h1 + i * h2) % self._bits)
            self._patterns[gram] = pattern
        return pattern

    def encode(self, value: str) -> list[int]:
        """The filter of one value as signed 64-bit words."""
        return self._words([value]).row(0)

    def _words(self, values: list[str]) -> pl.DataFrame:
        """Filters of many values as a (values × words) table of signed 64-bit integers.

        Vectorised: each distinct bigram's bit pattern is computed once (HMAC), then every value's filter is the
        bitwise OR of its bigrams' patterns, aggregated word by word in polars.
        """
        names = [f"w{i}" for i in range(self._bits // 64)]
        if not values:
            return pl.DataFrame(schema={name: pl.Int64 for name in names})
        grams = pl.DataFrame({"_v": range(len(values)), "_gram": [list(bigrams(v)) for v in values]}).explode("_gram")
        distinct = grams["_gram"].unique().to_list()
        size = self._bits // 8
        buffer = b"".join(self._pattern(gram).to_bytes(size, "little") for gram in distinct)
        patterns = pl.DataFrame(np.frombuffer(buffer, dtype="<i8").reshape(len(distinct), len(names)), schema=names,
                                orient="row").with_columns(pl.Series("_gram", distinct))
        filters = grams.join(patterns, on="_gram").group_by("_v").agg(pl.col(n).bitwise_or() for n in names)
        return filters.sort("_v").select(names)

    def encode_series(self, series: pl.Series) -> pl.Series:
        """Filters of a string column as lists of signed 64-bit words (null stays null)."""
        return _map_distinct(series.cast(pl.String),
                             lambda values: self._words(values).select(pl.concat_list(pl.all()).alias("w")).to_series())


def dice(left: list[int], right: list[int]) -> float:
    """Dice coefficient of two filters (the Python twin of the SQL the linkage uses)."""
    common = sum(bin((a & b) & _MASK64).count("1") for a, b in zip(left, right, strict=True))
    total = sum(bin(a & _MASK64).count("1") for a in left) + sum(bin(b & _MASK64).count("1") for b in right)
    return 2 * common / total if total else 0.0


def phonetic(series: pl.Series) -> pl.Series:
    """Metaphone code of each value's first word (computed before tokenising; never leaves in plaintext)."""
    return _map_distinct(series.cast(pl.String), _each(lambda v: jellyfish.metaphone(v.split(" ")[0]) or v, pl.String))


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
    table = nickname_table()
    return _map_distinct(series.cast(pl.String), _each(lambda v: table.get(v.split(" ")[0], v.split(" ")[0]), pl.String))
