"""A frozen copy of the pseudonymise stage's feature, leak-scan and risk code as it was before the speed-up (commit
3cc4a6c): the reference the fast implementations are tested against, output for output.

Deliberately not maintained: if a feature changes on purpose, change the live code and its own tests, and update or
drop the comparison here.
"""
# ruff: noqa: E501

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jellyfish
import numpy as np
import polars as pl

from carelink.keys import Key
from carelink.pseudonymise.encodings import (
    BLOOM_BITS,
    BLOOM_HASHES,
    BLOOM_LAYOUTS,
    name_forms,
    nickname_table,
    typo_near,
    typo_reach,
)

# -------------------------------------------------------------------------------- keyed tokens and Bloom filters

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




def canonical_forename(series: pl.Series) -> pl.Series:
    """First word of a forename with nicknames mapped to their canonical form (PEGGY → MARGARET)."""
    table = nickname_table()
    return _map_distinct(series.cast(pl.String), _each(lambda v: table.get(v.split(" ")[0], v.split(" ")[0]), pl.String))


# ------------------------------------------------------------------------------------------------------ features

HMAC64 = "HMAC-SHA256 (HKDF per-field key), 64-bit"
HMAC128 = "HMAC-SHA256 (HKDF per-field key), 128-bit"
def _clk(column: str) -> str:
    layout = BLOOM_LAYOUTS[column]
    return f"keyed bigram Bloom filter, {layout.bits} bits, {layout.hashes} HMAC-SHA256 hashes per bigram"


@dataclass(frozen=True)
class Feature:
    """One output column: what it is made from and how."""

    column: str
    source_field: str
    method: str  # keyed token | encoding | generalised | passed through
    algorithm: str
    build: Callable[[pl.DataFrame, Key, dt.date], pl.Series]


def _token(field: str, values: Callable[[pl.DataFrame], pl.Series]) -> Callable[[pl.DataFrame, Key, dt.date], pl.Series]:
    return lambda frame, key, _: tokens(values(frame), key.field_key(field))


def _bloom(field: str, column: str) -> Callable[[pl.DataFrame, Key, dt.date], pl.Series]:
    layout = BLOOM_LAYOUTS[field]
    return lambda frame, key, _: BloomEncoder(key.field_key(field), layout.bits, layout.hashes).encode_series(
        frame[column])


def _variant_tokens(field: str, variants: Callable[[str], list[str]]) -> Callable[[pl.DataFrame, Key, dt.date], pl.Series]:
    """One token per variant, value by value (the construction the vectorised ``variant_tokens`` must equal)."""
    return lambda frame, key, _: _map_distinct(
        frame["given_name"].cast(pl.String),
        _each(lambda v: [token_of(key.field_key(field), d) for d in variants(v)], pl.List(pl.Int64)))


def _column(name: str) -> Callable[[pl.DataFrame], pl.Series]:
    return lambda frame: frame[name]


def _dob_text(frame: pl.DataFrame, fmt: str) -> pl.Series:
    return frame["date_of_birth"].dt.strftime(fmt)


def _dob_swapped(frame: pl.DataFrame) -> pl.Series:
    """Date of birth with day and month exchanged (as the same token space as ``dob``), where that is a date."""
    dob = frame["date_of_birth"]
    swappable = dob.dt.day().le(12) & (dob.dt.day() != dob.dt.month())
    text = dob.dt.strftime("%Y-") + dob.dt.day().cast(pl.String).str.zfill(2) + "-" + dob.dt.month().cast(pl.String).str.zfill(2)
    return pl.select(pl.when(swappable).then(text).otherwise(None)).to_series()


def _first_word(name: str) -> Callable[[pl.DataFrame], pl.Series]:
    return lambda frame: frame[name].str.split(" ").list.first()


def _premises(frame: pl.DataFrame) -> pl.Series:
    """House number and the first four letters of the street ("12 HIGH"), with the postcode's outward code when
    there is one: a blocking key that survives typos late in the street name and finds people whose names and
    date of birth were both mis-recorded."""
    premises = frame["address"].str.extract(r"^(?:FLAT [0-9A-Z]+ )?([0-9]+[A-Z]?) ([A-Z]{1,4})", 0)
    district = frame["postcode"].str.extract(r"^(\S+) ", 1)
    return pl.select(pl.concat_str([premises, district.fill_null("")], separator="|")).to_series()


def _postcode_part(pattern: str) -> Callable[[pl.DataFrame], pl.Series]:
    return lambda frame: frame["postcode"].str.extract(pattern, 1)


def _age_band(frame: pl.DataFrame, _: Key, reference_date: dt.date) -> pl.Series:
    dob = frame["date_of_birth"]
    years = reference_date.year - dob.dt.year() - (
        (dob.dt.month() > reference_date.month)
        | ((dob.dt.month() == reference_date.month) & (dob.dt.day() > reference_date.day))
    ).cast(pl.Int32)
    low = (years.clip(0, 90) // 5 * 5).cast(pl.Int32)
    band = pl.select(pl.when(low >= 90).then(pl.lit("90+")).otherwise(low.cast(pl.String) + "-" + (low + 4).cast(pl.String))).to_series()
    return band


def _passthrough(name: str) -> Callable[[pl.DataFrame, Key, dt.date], pl.Series]:
    return lambda frame, _key, _date: frame[name]


FEATURES: tuple[Feature, ...] = (
    Feature("nhs_number_token", "nhs_number", "keyed token", HMAC64, _token("nhs_number", _column("nhs_number"))),
    Feature("nhs_number_status", "nhs_number", "generalised", "status category (valid, missing, ...)", _passthrough("nhs_number_status")),
    Feature("shared_id_token", "shared_id", "keyed token", HMAC64, _token("shared_id", _column("shared_id"))),
    Feature("shared_id_near_tokens", "shared_id", "encoding",
            HMAC64 + " of each one-character deletion (matches identifiers one typo apart)",
            lambda f, k, _: deletion_tokens(f["shared_id"], k.field_key("shared_id_near"))),
    Feature("given_name_token", "given_name", "keyed token", HMAC64, _token("given_name", _column("given_name"))),
    Feature("given_first_token", "given_name", "keyed token", HMAC64 + " of the first word", _token("given_first", _first_word("given_name"))),
    Feature("given_middle_token", "given_name", "keyed token", "",
            _token("given_first", lambda f: f["given_name"].str.extract(r" (\S+)$", 1))),
    Feature("given_nickname_tokens", "given_name", "encoding", "", _variant_tokens("given_nickname", name_forms)),
    Feature("given_near_tokens", "given_name", "encoding", "",
            _variant_tokens("given_typo", lambda v: typo_near(v.split(" ")[0]))),
    Feature("given_reach_tokens", "given_name", "encoding", "",
            _variant_tokens("given_typo", lambda v: typo_reach(v.split(" ")[0]))),
    Feature("given_canonical_token", "given_name", "keyed token", HMAC64 + " of the first word, nicknames mapped (PEGGY→MARGARET)",
            lambda f, k, _: tokens(canonical_forename(f["given_name"]), k.field_key("given_canonical"))),
    Feature("given_phonetic_token", "given_name", "keyed token", HMAC64 + " of the Metaphone code of the first word",
            lambda f, k, _: tokens(phonetic(f["given_name"]), k.field_key("given_phonetic"))),
    Feature("given_name_bf", "given_name", "encoding", _clk("given_name_bf"), _bloom("given_name_bf", "given_name")),
    Feature("given_prefix_token", "given_name", "keyed token", HMAC64 + " of the first three letters (blocking only)",
            _token("given_prefix", lambda f: _first_word("given_name")(f).str.slice(0, 3))),
    Feature("family_prefix_token", "family_name", "keyed token", HMAC64 + " of the first three letters (blocking only)",
            _token("family_prefix", lambda f: f["family_name"].str.slice(0, 3))),
    Feature("family_name_token", "family_name", "keyed token", HMAC64, _token("family_name", _column("family_name"))),
    Feature("family_phonetic_token", "family_name", "keyed token", HMAC64 + " of the Metaphone code",
            lambda f, k, _: tokens(phonetic(f["family_name"]), k.field_key("family_phonetic"))),
    Feature("family_name_bf", "family_name", "encoding", _clk("family_name_bf"), _bloom("family_name_bf", "family_name")),
    # Forename and surname tokens in one shared token space, so a swapped pair can be recognised.
    Feature("given_as_name_token", "given_name", "keyed token", HMAC64 + " (shared name space, for swaps)",
            _token("any_name", _column("given_name"))),
    Feature("family_as_name_token", "family_name", "keyed token", HMAC64 + " (shared name space, for swaps)",
            _token("any_name", _column("family_name"))),
    Feature("dob_token", "date_of_birth", "keyed token", HMAC64, _token("date_of_birth", lambda f: _dob_text(f, "%Y-%m-%d"))),
    Feature("dob_swapped_token", "date_of_birth", "keyed token", HMAC64 + " of the date with day and month exchanged",
            _token("date_of_birth", _dob_swapped)),
    Feature("dob_year_token", "date_of_birth", "keyed token", HMAC64, _token("dob_year", lambda f: _dob_text(f, "%Y"))),
    Feature("dob_month_token", "date_of_birth", "keyed token", HMAC64, _token("dob_month", lambda f: _dob_text(f, "%m"))),
    Feature("dob_day_token", "date_of_birth", "keyed token", HMAC64, _token("dob_day", lambda f: _dob_text(f, "%d"))),
    Feature("sex_token", "sex", "keyed token", HMAC64, _token("sex", _column("sex"))),
    Feature("postcode_unit_token", "postcode", "keyed token", HMAC64, _token("postcode_unit", _column("postcode"))),
    Feature("postcode_sector_token", "postcode", "keyed token", HMAC64, _token("postcode_sector", _postcode_part(r"^(\S+ [0-9])"))),
    Feature("postcode_district_token", "postcode", "keyed token", HMAC64, _token("postcode_district", _postcode_part(r"^(\S+) "))),
    Feature("premises_token", "address", "keyed token",
            HMAC64 + " of house number, first four letters of the street and postcode outward code (blocking only)",
            _token("premises", _premises)),
    Feature("address_bf", "address", "encoding", _clk("address_bf"), _bloom("address_bf", "address")),
    Feature("age_band", "date_of_birth", "generalised", "5-year band at the reference date (90+ top-coded)", _age_band),
    Feature("postcode_district", "postcode", "generalised", "outward code (e.g. LS6)", lambda f, _k, _d: _postcode_part(r"^(\S+) ")(f)),
)

#: Consent and status fields carried through unchanged: they describe permissions, not the person's identity.
PASSED_THROUGH = (
    "ndop_opt_out", "ndop_opt_out_date", "type1_opt_out", "type1_opt_out_date", "shared_care_consent",
    "shared_care_consent_date", "research_consent", "research_consent_date", "sensitive_category",
)
#: Standardised fields that are direct identifiers: never written to any output in plaintext.
DIRECT_IDENTIFIERS = ("record_id", "nhs_number", "shared_id", "given_name", "family_name", "date_of_birth", "address", "postcode")


def build_nodes(frame: pl.DataFrame, key: Key, reference_date: dt.date, source_kind: str) -> pl.DataFrame:
    """The node table of one source: record token, match features and non-identifying payload."""
    columns = [
        record_tokens(frame["source"] + "\x1f" + frame["record_id"], key.field_key("record_id")).alias("record_token"),
        frame["source"],
        pl.Series("source_kind", [source_kind] * frame.height, dtype=pl.String),
    ]
    columns += [feature.build(frame, key, reference_date).alias(feature.column) for feature in FEATURES]
    columns += [frame[name] for name in PASSED_THROUGH]
    return pl.DataFrame(columns)


# ----------------------------------------------------------------------------------------------------- leak scan

_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%Y%m%d", "%d%m%Y", "%d/%m/%y")


@dataclass
class LeakScanResult:
    """What the scan compared and what it found."""

    columns_scanned: int = 0
    cells_scanned: int = 0
    identifier_values: int = 0
    leaks: list[dict[str, str | int]] = field(default_factory=list)
    not_scanned: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.leaks

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "columns_scanned": self.columns_scanned,
            "cells_scanned": self.cells_scanned,
            "identifier_values": self.identifier_values,
            "leaks": self.leaks[:50],
            "not_scanned": self.not_scanned,
        }


def identifier_spellings(standardised: pl.DataFrame) -> pl.Series:
    """Every spelling of every direct identifier value in the standardised records (upper-cased)."""
    parts: list[pl.Series] = []
    for name in DIRECT_IDENTIFIERS:
        if name not in standardised.columns:
            continue
        column = standardised[name].drop_nulls()
        if name == "date_of_birth":
            parts += [column.dt.strftime(fmt) for fmt in _DATE_FORMATS]
            continue
        text = column.cast(pl.String)
        parts.append(text)
        parts.append(text.str.replace_all(" ", ""))
        if name in ("given_name", "family_name"):
            parts.append(text.str.split(" ").explode())
        if name == "nhs_number":
            parts.append(text.str.slice(0, 3) + " " + text.str.slice(3, 3) + " " + text.str.slice(6))
    values = pl.concat([p.cast(pl.String) for p in parts]).str.to_uppercase().unique()
    # A short number ("12") is as likely an activity code as record 12's id; numbers count from five digits.
    numeric = values.str.contains(r"^[0-9]+$")
    return values.filter((~numeric & (values.str.len_chars() >= 2)) | (numeric & (values.str.len_chars() >= 5)))


def _own_numeric_spellings(standardised: pl.DataFrame) -> pl.Series:
    """Per record, the digit strings its own identifiers could leak as in a numeric column."""
    parts = [standardised["nhs_number"]]
    for name in ("record_id", "shared_id"):
        if name in standardised.columns:
            parts.append(standardised[name].str.replace_all(r"\D", "").str.strip_chars_start("0"))
    parts += [standardised["date_of_birth"].dt.strftime(fmt) for fmt in ("%Y%m%d", "%d%m%Y")]
    frame = pl.DataFrame([part.alias(f"_{i}") for i, part in enumerate(parts)])
    own = frame.select(pl.concat_list(pl.all()).list.drop_nulls().alias("_own"))["_own"]
    return own.list.eval(pl.element().filter(pl.element().str.len_chars() >= 5))


def _dates_of_birth(series: pl.Series, births: pl.Series) -> int:
    """Rows of a date column holding their own record's date of birth, when that is systematic (two or more rows and
    over 1 % of the column's dates): a consent recorded on the day a baby was born is an event, a column of birth
    dates a leak."""
    same = int((series == births).fill_null(False).sum())
    return same if same >= 2 and same > 0.01 * max(series.is_not_null().sum(), 1) else 0


def _numeric_hits_aligned(series: pl.Series, own: pl.Series) -> int:
    """Rows where any element of a list cell equals that same record's identifier."""
    frame = pl.DataFrame({"_cell": series, "_own": own}).with_row_index("_row")
    if isinstance(series.dtype, pl.List):
        frame = frame.explode("_cell")
    text = frame.select("_row", pl.col("_cell").cast(pl.String), "_own").drop_nulls("_cell")
    hits = text.filter(pl.col("_own").list.contains(pl.col("_cell")))
    return hits["_row"].n_unique()


def scan(outputs: dict[str, pl.DataFrame], standardised: pl.DataFrame, categorical: tuple[str, ...] = (),
         aligned: tuple[str, ...] = ()) -> LeakScanResult:
    """Scan every output table's columns for identifier values.

    - Text and integer cells are compared with every identifier value of the source; text is also searched for
      embedded NHS numbers and postcodes. (A keyed 64-bit token equals a given value with probability 2⁻⁶⁴.)
    - Bloom-filter words (lists of integers) are not uniform — a sparse word is a small number — so a word equal to
      *some* NHS number happens by chance; in tables listed in ``aligned`` (one row per standardised record, same
      order) they are compared with their own record's identifiers, which is where a leak would put them.
    - Date cells of aligned tables are compared with their own record's date of birth (see ``_dates_of_birth``);
      event dates in other tables (activity) are listed as not scanned.
    - ``categorical`` columns hold values from a fixed vocabulary (source names, statuses, bands); they are listed
      as not scanned rather than risk a false alarm when a surname happens to equal a category.
    """
    spellings = identifier_spellings(standardised)
    needles = pl.DataFrame({"_needle": spellings})
    known = spellings.implode()
    own = _own_numeric_spellings(standardised)
    result = LeakScanResult(identifier_values=spellings.len())
    for table_name, frame in outputs.items():
        for column in frame.columns:
            series = frame[column]
            is_aligned = table_name in aligned and series.len() == standardised.height
            if column in categorical or (series.dtype == pl.Date and not is_aligned):
                result.not_scanned.append(f"{table_name}.{column}")
                continue
            if series.dtype == pl.Date:
                hits = _dates_of_birth(series, standardised["date_of_birth"])
            elif isinstance(series.dtype, pl.List) and is_aligned:
                hits = _numeric_hits_aligned(series, own)
            else:
                cells = _cells_as_text(series)
                if cells is None:
                    result.not_scanned.append(f"{table_name}.{column}")
                    continue
                upper = cells.str.to_uppercase()
                hits = pl.DataFrame({"_needle": upper}).join(needles, on="_needle", how="semi").height
                if series.dtype == pl.String and cells.str.contains(r"[^0-9a-f]").any():  # hex tokens embed nothing
                    hits += _embedded_hits(upper, known)
            result.columns_scanned += 1
            result.cells_scanned += series.len()
            if hits:
                result.leaks.append({"table": table_name, "column": column, "cells": hits})
    return result


def _embedded_hits(upper: pl.Series, known: pl.Series) -> int:
    """Cells holding an identifier NHS number or postcode inside longer text, as a separate word (a run of digits
    inside a hex token is not an NHS number)."""
    found = pl.DataFrame({"_cell": upper}).with_row_index("_row").select(
        "_row",
        pl.col("_cell").str.extract_all(r"\b([0-9]{3}[ -]?[0-9]{3}[ -]?[0-9]{4}|[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2})\b")
        .alias("_found"),
    ).explode("_found").drop_nulls("_found")
    candidates = found.with_columns(pl.col("_found").str.replace_all(r"[ -]", "").alias("_compact"))
    hits = candidates.filter(pl.col("_found").is_in(known) | pl.col("_compact").is_in(known))
    return hits["_row"].n_unique()


def _cells_as_text(series: pl.Series) -> pl.Series | None:
    dtype = series.dtype
    if dtype == pl.String:
        return series.drop_nulls()
    if dtype.is_integer():
        return series.drop_nulls().cast(pl.String)
    if isinstance(dtype, pl.List) and dtype.inner is not None and dtype.inner.is_integer():
        return series.drop_nulls().explode().drop_nulls().cast(pl.String)
    return None


# ---------------------------------------------------------------------------------------------------------- risk

QUASI_IDENTIFIERS = ("age_band", "postcode_district", "source_kind")
DEFAULT_K = 5


def k_anonymity(nodes: pl.DataFrame, columns: tuple[str, ...] = QUASI_IDENTIFIERS, k: int = DEFAULT_K) -> dict[str, Any]:
    """Equivalence-class sizes of the plaintext quasi-identifiers."""
    classes = nodes.group_by(list(columns)).len("size")
    per_record = nodes.select(list(columns)).join(classes, on=list(columns), how="left", nulls_equal=True)["size"]
    bands = {"1": (1, 1), "2-4": (2, 4), "5-9": (5, 9), "10+": (10, None)}
    distribution = {
        name: int(((per_record >= lo) & (per_record <= hi if hi else True)).sum()) for name, (lo, hi) in bands.items()
    }
    return {
        "quasi_identifiers": list(columns),
        "k": k,
        "records": nodes.height,
        "records_unique": distribution["1"],
        "records_below_k": int((per_record < k).sum()),
        "share_below_k": float((per_record < k).mean()) if nodes.height else 0.0,
        "class_size_distribution": distribution,
    }


def token_exposure(nodes: pl.DataFrame, columns: list[str], k: int = DEFAULT_K) -> list[dict[str, Any]]:
    """Per token column: distinct tokens, unique tokens, tokens rarer than k, the top token's share of records."""
    rows = []
    for column in columns:
        counts = nodes[column].drop_nulls().value_counts(name="n")["n"]
        present = int(counts.sum())
        rows.append({
            "column": column,
            "distinct": counts.len(),
            "unique": int((counts == 1).sum()),
            "rarer_than_k": int((counts < k).sum()),
            "top_share": float(counts.max() / present) if present else 0.0,
        })
    return rows


def frequency_attack(values: pl.Series, tokens: pl.Series) -> dict[str, Any]:
    """Rank-align tokens with the partner's own value frequencies; count what the alignment gets right."""
    pairs = pl.DataFrame({"value": values, "token": tokens}).drop_nulls()
    if pairs.height == 0:
        return {"distinct_values": 0, "values_reidentified": 0, "share_values": 0.0, "share_records": 0.0}
    value_freq = pairs.group_by("value").len("n")
    token_freq = pairs.group_by("token").len("n")
    # Only frequencies held by exactly one value can be aligned without guessing.
    distinct_freq = value_freq.group_by("n").len("ties").filter(pl.col("ties") == 1).select("n")
    guessed_values = value_freq.join(distinct_freq, on="n")
    guessed_tokens = token_freq.join(distinct_freq, on="n")
    guesses = guessed_values.join(guessed_tokens, on="n")  # token → value guessed by frequency
    truth = pairs.unique(["value", "token"])
    correct = guesses.join(truth, on=["value", "token"])
    records = int(correct["n"].sum()) if correct.height else 0
    return {
        "distinct_values": value_freq.height,
        "values_reidentified": correct.height,
        "share_values": correct.height / value_freq.height,
        "share_records": records / pairs.height,
    }


def assess(standardised: pl.DataFrame, nodes: pl.DataFrame, token_columns: list[str], k: int = DEFAULT_K) -> dict[str, Any]:
    """The whole risk section of the pseudonymisation report."""
    attacks = {
        "family_name": frequency_attack(standardised["family_name"], nodes["family_name_token"]),
        "given_name": frequency_attack(standardised["given_name"], nodes["given_name_token"]),
        "family_name_bloom_filter": frequency_attack(
            standardised["family_name"], nodes["family_name_bf"].list.eval(pl.element().cast(pl.String)).list.join(",")),
    }
    return {
        "k_anonymity": k_anonymity(nodes, k=k),
        "token_exposure": token_exposure(nodes, token_columns, k=k),
        "frequency_attack": attacks,
        "worst_frequency_attack_share_records": max(a["share_records"] for a in attacks.values()),
    }
