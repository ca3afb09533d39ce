"""Turn standardised records into match features: keyed tokens, Bloom encodings and generalised payload.

``FEATURES`` lists every node column, the identifier it comes from and how it was made; the pseudonymisation
report is generated from it, so what the report says is what the code does.

Features are row-wise functions of one or two standardised columns, so each column is factorised once
(``Build.distinct``), every feature is computed on distinct values (or distinct combinations) only, and the
results are gathered back to the rows by index.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import polars as pl

from carelink.keys import Key
from carelink.pseudonymise import encodings as enc

HMAC64 = "HMAC-SHA256 (HKDF per-field key), 64-bit"
HMAC128 = "HMAC-SHA256 (HKDF per-field key), 128-bit"
#: The stable per-record attribute salted Bloom filters are keyed by.
SALT_FIELD = "year of birth"


def describe_bloom(column: str, hardening: str = "none") -> str:
    """The report's description of one Bloom-filter column."""
    layout = enc.bloom_layouts(hardening)[column]
    text = f"keyed bigram Bloom filter, {layout.bits} bits, {layout.hashes} HMAC-SHA256 hashes per bigram"
    return text + {
        "none": "",
        "salted": f", hashed under a key salted with the {SALT_FIELD}",
        "balanced": f", balanced (with its complement, keyed permutation; {layout.out_bits} bits stored)",
        "xor_fold": f", XOR-folded to {layout.out_bits} bits",
    }[hardening]


@dataclass(frozen=True)
class Build:
    """What a feature is built from: the source's records, each column factorised once, the key and the date."""

    frame: pl.DataFrame
    key: Key
    reference_date: dt.date
    hardening: str = "none"
    _distinct: dict[str, enc.Distinct] = field(default_factory=dict, repr=False)

    def distinct(self, column: str) -> enc.Distinct:
        """The distinct values of a column and each row's index among them (computed once)."""
        if column not in self._distinct:
            self._distinct[column] = enc.factorize(self.frame[column])
        return self._distinct[column]

    def per_value(self, column: str, function: Callable[[pl.Series], pl.Series]) -> pl.Series:
        """``function`` of each distinct value of ``column``, gathered back to the rows."""
        distinct = self.distinct(column)
        return distinct.back(function(distinct.values))

    def per_combination(self, columns: tuple[str, ...], function: Callable[[pl.DataFrame], pl.Series]) -> pl.Series:
        """``function`` of each distinct combination of ``columns`` (a frame, nulls included as values), gathered
        back to the rows."""
        combined: pl.Series | None = None
        for column in columns:
            distinct = self.distinct(column)
            code = distinct.codes.cast(pl.Int64).fill_null(distinct.values.len())  # null: one more value
            if combined is None:
                combined = code
            else:
                combined = enc.factorize(combined * (distinct.values.len() + 1) + code).codes.cast(pl.Int64)
        assert combined is not None
        distinct = enc.factorize(combined)
        return distinct.back(function(self.frame.select(columns)[enc.first_rows(distinct)]))


@dataclass(frozen=True)
class Feature:
    """One output column: what it is made from and how."""

    column: str
    source_field: str
    method: str  # keyed token | encoding | generalised | passed through
    algorithm: str
    build: Callable[[Build], pl.Series]


def _token(key_field: str, column: str, values: Callable[[pl.Series], pl.Series] | None = None, *,
           per_row: bool = False) -> Callable[[Build], pl.Series]:
    """Keyed tokens (under ``key_field``'s key) of ``values`` of each distinct value of ``column`` (``per_row``: of
    each row's value, for identifiers that rarely repeat, where finding the distinct values costs more than it
    saves)."""
    def build(b: Build) -> pl.Series:
        field_key = b.key.field_key(key_field)
        if per_row:
            return enc.tokens_of_values(b.frame[column], field_key)
        if values is None:
            return b.per_value(column, lambda v: enc.tokens_of_values(v, field_key))
        return b.per_value(column, lambda v: enc.tokens(values(v), field_key))  # derived values repeat: once each
    return build


def _bloom(column: str, source: str) -> Callable[[Build], pl.Series]:
    def build(b: Build) -> pl.Series:
        layout = enc.BLOOM_LAYOUTS[column]
        encoder = enc.BloomEncoder(b.key.field_key(column), layout.bits, layout.hashes, b.hardening)
        if b.hardening == "salted":
            return encoder.encode_series(b.frame[source], salts=b.frame["date_of_birth"].dt.year().cast(pl.String))
        distinct = b.distinct(source)
        return enc.list_column(column, encoder.encode_values(distinct.values.to_list()), distinct.codes)
    return build


def _first_word(values: pl.Series) -> pl.Series:
    return values.str.split(" ").list.first()


def _prefix(values: pl.Series) -> pl.Series:
    return values.str.slice(0, 3)


def _dob_text(fmt: str) -> Callable[[pl.Series], pl.Series]:
    return lambda dob: dob.dt.strftime(fmt)


def _dob_swapped(dob: pl.Series) -> pl.Series:
    """Date of birth with day and month exchanged (as the same token space as ``dob``), where that is a date."""
    swappable = dob.dt.day().le(12) & (dob.dt.day() != dob.dt.month())
    text = dob.dt.strftime("%Y-") + dob.dt.day().cast(pl.String).str.zfill(2) + "-" + dob.dt.month().cast(pl.String).str.zfill(2)
    return pl.select(pl.when(swappable).then(text).otherwise(None)).to_series()


def _premises(frame: pl.DataFrame) -> pl.Series:
    """House number and the first four letters of the street ("12 HIGH"), with the postcode's outward code when
    there is one: a blocking key that survives typos late in the street name and finds people whose names and
    date of birth were both mis-recorded."""
    premises = frame["address"].str.extract(r"^(?:FLAT [0-9A-Z]+ )?([0-9]+[A-Z]?) ([A-Z]{1,4})", 0)
    district = frame["postcode"].str.extract(r"^(\S+) ", 1)
    return pl.select(pl.concat_str([premises, district.fill_null("")], separator="|")).to_series()


def _premises_tokens(b: Build) -> pl.Series:
    field_key = b.key.field_key("premises")
    return b.per_combination(("address", "postcode"), lambda pairs: enc.tokens(_premises(pairs), field_key))


def _shared_id_near(b: Build) -> pl.Series:
    field_key = b.key.field_key("shared_id_near")
    return b.per_value("shared_id", lambda values: enc.deletion_tokens(values, field_key))


def _last_of_several_words(values: pl.Series) -> pl.Series:
    return values.str.extract(r" (\S+)$", 1)


def _variants(key_field: str, variants: Callable[[str], list[str]]) -> Callable[[Build], pl.Series]:
    """Keyed tokens of ``variants`` of each distinct forename (a list per row)."""
    def build(b: Build) -> pl.Series:
        field_key = b.key.field_key(key_field)
        return b.per_value("given_name", lambda values: enc.variant_tokens(values, field_key, variants))
    return build


def _postcode_part(pattern: str) -> Callable[[pl.Series], pl.Series]:
    return lambda postcode: postcode.str.extract(pattern, 1)


def _age_band(b: Build) -> pl.Series:
    reference_date = b.reference_date

    def band(dob: pl.Series) -> pl.Series:
        years = reference_date.year - dob.dt.year() - (
            (dob.dt.month() > reference_date.month)
            | ((dob.dt.month() == reference_date.month) & (dob.dt.day() > reference_date.day))
        ).cast(pl.Int32)
        low = (years.clip(0, 90) // 5 * 5).cast(pl.Int32)
        return pl.select(pl.when(low >= 90).then(pl.lit("90+"))
                         .otherwise(low.cast(pl.String) + "-" + (low + 4).cast(pl.String))).to_series()
    return b.per_value("date_of_birth", band)


def _passthrough(name: str) -> Callable[[Build], pl.Series]:
    return lambda b: b.frame[name]


def _generalised(column: str, function: Callable[[pl.Series], pl.Series]) -> Callable[[Build], pl.Series]:
    return lambda b: b.per_value(column, function)


FEATURES: tuple[Feature, ...] = (
    Feature("nhs_number_token", "nhs_number", "keyed token", HMAC64, _token("nhs_number", "nhs_number", per_row=True)),
    Feature("nhs_number_status", "nhs_number", "generalised", "status category (valid, missing, ...)", _passthrough("nhs_number_status")),
    Feature("shared_id_token", "shared_id", "keyed token", HMAC64, _token("shared_id", "shared_id")),
    Feature("shared_id_near_tokens", "shared_id", "encoding",
            HMAC64 + " of each one-character deletion (matches identifiers one typo apart)", _shared_id_near),
    Feature("given_name_token", "given_name", "keyed token", HMAC64, _token("given_name", "given_name")),
    Feature("given_first_token", "given_name", "keyed token", HMAC64 + " of the first word", _token("given_first", "given_name", _first_word)),
    Feature("given_middle_token", "given_name", "keyed token",
            HMAC64 + " of the last word of a forename of several words (first-word key: known by a middle name)",
            _token("given_first", "given_name", _last_of_several_words)),
    Feature("given_nickname_tokens", "given_name", "encoding",
            HMAC64 + " of the first word and of every forename it is a nickname of (PEGGY → PEGGY, MARGARET)",
            _variants("given_nickname", enc.name_forms)),
    Feature("given_near_tokens", "given_name", "encoding",
            HMAC64 + " of the first word, its position-tagged deletions and transpositions (one-typo matching)",
            _variants("given_typo", lambda v: enc.typo_near(v.split(" ")[0]))),
    Feature("given_reach_tokens", "given_name", "encoding",
            HMAC64 + " of the first word's deletions and of the word as a transposition target (one-typo matching)",
            _variants("given_typo", lambda v: enc.typo_reach(v.split(" ")[0]))),
    Feature("given_canonical_token", "given_name", "keyed token", HMAC64 + " of the first word, nicknames mapped (PEGGY→MARGARET)",
            _token("given_canonical", "given_name", enc.canonical_first_word)),
    Feature("given_phonetic_token", "given_name", "keyed token", HMAC64 + " of the Metaphone code of the first word",
            _token("given_phonetic", "given_name", enc.metaphone_first_word)),
    Feature("given_name_bf", "given_name", "encoding", describe_bloom("given_name_bf"), _bloom("given_name_bf", "given_name")),
    Feature("given_prefix_token", "given_name", "keyed token", HMAC64 + " of the first three letters (blocking only)",
            _token("given_prefix", "given_name", lambda v: _prefix(_first_word(v)))),
    Feature("family_prefix_token", "family_name", "keyed token", HMAC64 + " of the first three letters (blocking only)",
            _token("family_prefix", "family_name", _prefix)),
    Feature("family_name_token", "family_name", "keyed token", HMAC64, _token("family_name", "family_name")),
    Feature("family_phonetic_token", "family_name", "keyed token", HMAC64 + " of the Metaphone code",
            _token("family_phonetic", "family_name", enc.metaphone_first_word)),
    Feature("family_name_bf", "family_name", "encoding", describe_bloom("family_name_bf"), _bloom("family_name_bf", "family_name")),
    # Forename and surname tokens in one shared token space, so a swapped pair can be recognised.
    Feature("given_as_name_token", "given_name", "keyed token", HMAC64 + " (shared name space, for swaps)",
            _token("any_name", "given_name")),
    Feature("family_as_name_token", "family_name", "keyed token", HMAC64 + " (shared name space, for swaps)",
            _token("any_name", "family_name")),
    Feature("dob_token", "date_of_birth", "keyed token", HMAC64, _token("date_of_birth", "date_of_birth", _dob_text("%Y-%m-%d"))),
    Feature("dob_swapped_token", "date_of_birth", "keyed token", HMAC64 + " of the date with day and month exchanged",
            _token("date_of_birth", "date_of_birth", _dob_swapped)),
    Feature("dob_year_token", "date_of_birth", "keyed token", HMAC64, _token("dob_year", "date_of_birth", _dob_text("%Y"))),
    Feature("dob_month_token", "date_of_birth", "keyed token", HMAC64, _token("dob_month", "date_of_birth", _dob_text("%m"))),
    Feature("dob_day_token", "date_of_birth", "keyed token", HMAC64, _token("dob_day", "date_of_birth", _dob_text("%d"))),
    Feature("sex_token", "sex", "keyed token", HMAC64, _token("sex", "sex")),
    Feature("postcode_unit_token", "postcode", "keyed token", HMAC64, _token("postcode_unit", "postcode")),
    Feature("postcode_sector_token", "postcode", "keyed token", HMAC64, _token("postcode_sector", "postcode", _postcode_part(r"^(\S+ [0-9])"))),
    Feature("postcode_district_token", "postcode", "keyed token", HMAC64, _token("postcode_district", "postcode", _postcode_part(r"^(\S+) "))),
    Feature("premises_token", "address", "keyed token",
            HMAC64 + " of house number, first four letters of the street and postcode outward code (blocking only)",
            _premises_tokens),
    Feature("address_bf", "address", "encoding", describe_bloom("address_bf"), _bloom("address_bf", "address")),
    Feature("age_band", "date_of_birth", "generalised", "5-year band at the reference date (90+ top-coded)", _age_band),
    Feature("postcode_district", "postcode", "generalised", "outward code (e.g. LS6)", _generalised("postcode", _postcode_part(r"^(\S+) "))),
)

#: Consent and status fields carried through unchanged: they describe permissions, not the person's identity.
PASSED_THROUGH = (
    "ndop_opt_out", "ndop_opt_out_date", "type1_opt_out", "type1_opt_out_date", "shared_care_consent",
    "shared_care_consent_date", "research_consent", "research_consent_date", "sensitive_category",
)
#: The standardised columns a node row is made from (``build_nodes`` reads no other).
NODE_INPUTS = ("source", "record_id", "nhs_number", "nhs_number_status", "shared_id", "given_name", "family_name",
               "date_of_birth", "sex", "address", "postcode", *PASSED_THROUGH)
#: Node columns that depend on the reference date as well as on the record.
DATED_COLUMNS = ("age_band",)
#: Fingerprint of how node rows are made (columns, inputs, methods), recorded with every delivery.
FEATURES_SHA256 = hashlib.sha256(json.dumps(
    [NODE_INPUTS, [(f.column, f.source_field, f.method, f.algorithm) for f in FEATURES]]).encode()).hexdigest()
#: Standardised fields that are direct identifiers: never written to any output in plaintext.
DIRECT_IDENTIFIERS = ("record_id", "nhs_number", "shared_id", "given_name", "family_name", "date_of_birth", "address", "postcode")


def feature_algorithm(feature: Feature, hardening: str = "none") -> str:
    """The report's description of how a feature is made (Bloom columns depend on the hardening)."""
    return describe_bloom(feature.column, hardening) if feature.column in enc.BLOOM_LAYOUTS else feature.algorithm


def build_nodes(frame: pl.DataFrame, key: Key, reference_date: dt.date, source_kind: str,
                bloom_hardening: str = "none") -> pl.DataFrame:
    """The node table of one source: record token, match features and non-identifying payload.

    ``bloom_hardening`` (one of ``hardening.HARDENINGS``) applies to every Bloom-filter column. The Bloom filters
    (numpy, which runs outside the interpreter lock) are built on a second thread while the keyed tokens (HMAC,
    which holds it) are computed on this one.
    """
    frame = frame.select(NODE_INPUTS)
    build = Build(frame, key, reference_date, bloom_hardening)
    for column in {f.source_field for f in FEATURES if f.column in enc.BLOOM_LAYOUTS}:
        build.distinct(column)  # before the threads share the cache
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bloom") as pool:
        blooms = {f.column: pool.submit(f.build, build) for f in FEATURES if f.column in enc.BLOOM_LAYOUTS}
        columns = [
            enc.record_tokens(frame["source"] + "\x1f" + frame["record_id"], key.field_key("record_id"))
            .alias("record_token"),
            frame["source"],
            pl.Series("source_kind", [source_kind] * frame.height, dtype=pl.String),
        ]
        columns += [(blooms[f.column].result() if f.column in blooms else f.build(build)).alias(f.column)
                    for f in FEATURES]
    columns += [frame[name] for name in PASSED_THROUGH]
    return pl.DataFrame(columns)


def dated_columns(frame: pl.DataFrame, key: Key, reference_date: dt.date) -> list[pl.Series]:
    """The node columns of ``frame``'s records that depend on the reference date (``DATED_COLUMNS``)."""
    build = Build(frame.select(NODE_INPUTS), key, reference_date)
    return [f.build(build).alias(f.column) for f in FEATURES if f.column in DATED_COLUMNS]
