"""The standardised-record contract between ingest and pseudonymise, as pandera models."""

from __future__ import annotations

import datetime as dt

import pandera.polars as pa

from carelink.ingest.standardise import (
    DATE_STATUSES,
    NHS_STATUSES,
    POSTCODE_FORMATTED,
    POSTCODE_STATUSES,
    SEX_CODES,
)

SCHEMA_VERSION = "standardised/1"
SHARED_CARE_VALUES = ("granted", "withdrawn", "refused")


class ConsentColumns(pa.DataFrameModel):
    """Consent fields a source may carry; standardised records and nodes both hold them."""

    ndop_opt_out: bool = pa.Field(nullable=True)
    ndop_opt_out_date: dt.date = pa.Field(nullable=True)
    type1_opt_out: bool = pa.Field(nullable=True)
    type1_opt_out_date: dt.date = pa.Field(nullable=True)
    shared_care_consent: str = pa.Field(nullable=True, isin=SHARED_CARE_VALUES)
    shared_care_consent_date: dt.date = pa.Field(nullable=True)
    research_consent: bool = pa.Field(nullable=True)
    research_consent_date: dt.date = pa.Field(nullable=True)
    sensitive_category: bool = pa.Field(nullable=True)


class StandardisedRecord(ConsentColumns):
    """One person record of one source, standardised. Invalid identifiers are null with a status saying why."""

    source: str
    record_id: str = pa.Field(str_length={"min_value": 1})
    source_row: int = pa.Field(ge=1)
    nhs_number: str = pa.Field(nullable=True, str_matches=r"^[0-9]{10}$")
    nhs_number_status: str = pa.Field(isin=NHS_STATUSES)
    shared_id: str = pa.Field(nullable=True, str_matches=r"^[A-Z0-9]+$")
    given_name: str = pa.Field(nullable=True, str_matches=r"^[A-Z]+( [A-Z]+)*$")
    family_name: str = pa.Field(nullable=True, str_matches=r"^[A-Z]+( [A-Z]+)*$")
    date_of_birth: dt.date = pa.Field(nullable=True, ge=dt.date(1890, 1, 1))
    date_of_birth_status: str = pa.Field(isin=DATE_STATUSES)
    sex: str = pa.Field(nullable=True, isin=SEX_CODES)
    address: str = pa.Field(nullable=True)
    postcode: str = pa.Field(nullable=True, str_matches=POSTCODE_FORMATTED)
    postcode_status: str = pa.Field(isin=POSTCODE_STATUSES)

    class Config:
        strict = True


class StandardisedActivity(pa.DataFrameModel):
    """One activity row (contact, admission, referral, ...) of one source record."""

    source: str
    record_id: str = pa.Field(str_length={"min_value": 1})
    source_row: int = pa.Field(ge=1)
    activity_date: dt.date = pa.Field(nullable=True)
    activity_type: str = pa.Field(nullable=True)

    class Config:
        strict = True
        ordered = True
