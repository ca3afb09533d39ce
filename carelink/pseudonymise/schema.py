"""The node contract between pseudonymise (at each partner) and link (at the hub), as a pandera model."""

from __future__ import annotations

import pandera.polars as pa

import carelink.checks  # noqa: F401  (registers the unique_values check)
from carelink.ingest.schema import ConsentColumns
from carelink.ingest.standardise import NHS_STATUSES

SCHEMA_VERSION = "nodes/2"


class NodeRecord(ConsentColumns):
    """One pseudonymised record: tokens, encodings and non-identifying payload only."""

    record_token: str = pa.Field(unique_values=(), str_matches=r"^[0-9a-f]{32}$")
    source: str
    source_kind: str = pa.Field(isin=("health", "social_care", "voluntary"))
    nhs_number_token: int = pa.Field(nullable=True)
    nhs_number_status: str = pa.Field(isin=NHS_STATUSES)
    shared_id_token: int = pa.Field(nullable=True)
    shared_id_near_tokens: list[int] = pa.Field(nullable=True)
    given_name_token: int = pa.Field(nullable=True)
    given_first_token: int = pa.Field(nullable=True)
    given_middle_token: int = pa.Field(nullable=True)
    given_nickname_tokens: list[int] = pa.Field(nullable=True)
    given_near_tokens: list[int] = pa.Field(nullable=True)
    given_reach_tokens: list[int] = pa.Field(nullable=True)
    given_canonical_token: int = pa.Field(nullable=True)
    given_phonetic_token: int = pa.Field(nullable=True)
    given_name_bf: list[int] = pa.Field(nullable=True)
    given_prefix_token: int = pa.Field(nullable=True)
    family_prefix_token: int = pa.Field(nullable=True)
    family_name_token: int = pa.Field(nullable=True)
    family_phonetic_token: int = pa.Field(nullable=True)
    family_name_bf: list[int] = pa.Field(nullable=True)
    given_as_name_token: int = pa.Field(nullable=True)
    family_as_name_token: int = pa.Field(nullable=True)
    dob_token: int = pa.Field(nullable=True)
    dob_swapped_token: int = pa.Field(nullable=True)
    dob_year_token: int = pa.Field(nullable=True)
    dob_month_token: int = pa.Field(nullable=True)
    dob_day_token: int = pa.Field(nullable=True)
    sex_token: int = pa.Field(nullable=True)
    postcode_unit_token: int = pa.Field(nullable=True)
    postcode_sector_token: int = pa.Field(nullable=True)
    postcode_district_token: int = pa.Field(nullable=True)
    premises_token: int = pa.Field(nullable=True)
    address_bf: list[int] = pa.Field(nullable=True)
    age_band: str = pa.Field(nullable=True, str_matches=r"^([0-9]{1,2}-[0-9]{1,2}|90\+)$")
    record_id_sealed: str | None = pa.Field(nullable=True)
    nhs_number_sealed: str | None = pa.Field(nullable=True)
    shared_id_sealed: str | None = pa.Field(nullable=True)
    postcode_district: str = pa.Field(nullable=True, str_matches=r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")

    class Config:
        strict = True
