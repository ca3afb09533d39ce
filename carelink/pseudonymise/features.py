"""Turn standardised records into match features: keyed tokens, Bloom encodings and generalised payload.

``FEATURES`` lists every node column, the identifier it comes from and how it was made; the pseudonymisation
report is generated from it, so what the report says is what the code does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from carelink.keys import Key
from carelink.pseudonymise import encodings as enc

HMAC64 = "HMAC-SHA256 (HKDF per-field key), 64-bit"
HMAC128 = "HMAC-SHA256 (HKDF per-field key), 128-bit"
def _clk(column: str) -> str:
    layout = enc.BLOOM_LAYOUTS[column]
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
    return lambda frame, key, _: enc.tokens(values(frame), key.field_key(field))


def _bloom(field: str, column: str) -> Callable[[pl.DataFrame, Key, dt.date], pl.Series]:
    layout = enc.BLOOM_LAYOUTS[field]
    return lambda frame, key, _: enc.BloomEncoder(key.field_key(field), layout.bits, layout.hashes).encode_series(
        frame[column])


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
            lambda f, k, _: enc.deletion_tokens(f["shared_id"], k.field_key("shared_id_near"))),
    Feature("given_name_token", "given_name", "keyed token", HMAC64, _token("given_name", _column("given_name"))),
    Feature("given_first_token", "given_name", "keyed token", HMAC64 + " of the first word", _token("given_first", _first_word("given_name"))),
    Feature("given_middle_token", "given_name", "keyed token",
            HMAC64 + " of the last word of a forename of several words (first-word key: known by a middle name)",
            _token("given_first", lambda f: f["given_name"].str.extract(r" (\S+)$", 1))),
    Feature("given_nickname_tokens", "given_name", "encoding",
            HMAC64 + " of the first word and of every forename it is a nickname of (PEGGY → PEGGY, MARGARET)",
            lambda f, k, _: enc.variant_tokens(f["given_name"], k.field_key("given_nickname"), enc.name_forms)),
    Feature("given_near_tokens", "given_name", "encoding",
            HMAC64 + " of the first word, its position-tagged deletions and transpositions (one-typo matching)",
            lambda f, k, _: enc.variant_tokens(_first_word("given_name")(f), k.field_key("given_typo"), enc.typo_near)),
    Feature("given_reach_tokens", "given_name", "encoding",
            HMAC64 + " of the first word's deletions and of the word as a transposition target (one-typo matching)",
            lambda f, k, _: enc.variant_tokens(_first_word("given_name")(f), k.field_key("given_typo"), enc.typo_reach)),
    Feature("given_canonical_token", "given_name", "keyed token", HMAC64 + " of the first word, nicknames mapped (PEGGY→MARGARET)",
            lambda f, k, _: enc.tokens(enc.canonical_forename(f["given_name"]), k.field_key("given_canonical"))),
    Feature("given_phonetic_token", "given_name", "keyed token", HMAC64 + " of the Metaphone code of the first word",
            lambda f, k, _: enc.tokens(enc.phonetic(f["given_name"]), k.field_key("given_phonetic"))),
    Feature("given_name_bf", "given_name", "encoding", _clk("given_name_bf"), _bloom("given_name_bf", "given_name")),
    Feature("given_prefix_token", "given_name", "keyed token", HMAC64 + " of the first three letters (blocking only)",
            _token("given_prefix", lambda f: _first_word("given_name")(f).str.slice(0, 3))),
    Feature("family_prefix_token", "family_name", "keyed token", HMAC64 + " of the first three letters (blocking only)",
            _token("family_prefix", lambda f: f["family_name"].str.slice(0, 3))),
    Feature("family_name_token", "family_name", "keyed token", HMAC64, _token("family_name", _column("family_name"))),
    Feature("family_phonetic_token", "family_name", "keyed token", HMAC64 + " of the Metaphone code",
            lambda f, k, _: enc.tokens(enc.phonetic(f["family_name"]), k.field_key("family_phonetic"))),
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
        enc.record_tokens(frame["source"] + "\x1f" + frame["record_id"], key.field_key("record_id")).alias("record_token"),
        frame["source"],
        pl.Series("source_kind", [source_kind] * frame.height, dtype=pl.String),
    ]
    columns += [feature.build(frame, key, reference_date).alias(feature.column) for feature in FEATURES]
    columns += [frame[name] for name in PASSED_THROUGH]
    return pl.DataFrame(columns)
