"""The export contract: what recipients receive, as pandera models, and the data dictionary generated from them."""

from __future__ import annotations

import datetime as dt

import pandera.polars as pa

from carelink.export.consent import PurposeRules

SCHEMA_VERSION = "export/1"


class PersonExport(pa.DataFrameModel):
    """One row per person in the recipient's export."""

    person_id: str = pa.Field(unique=True, str_matches=r"^R[0-9a-f]{20}$",
                              description="Person pseudonym keyed for this recipient (not joinable across recipients)")
    sources: list[str] = pa.Field(description="Sources holding at least one record of the person")
    source_count: int = pa.Field(ge=1, description="Number of sources holding the person")
    records: int = pa.Field(ge=1, description="Number of source records linked into the person")
    age_band: str = pa.Field(nullable=True, description="Five-year age band at the reference date (90+ top-coded)")
    postcode_district: str = pa.Field(nullable=True, description="Postcode district (outward code) most often recorded")
    ndop_opt_out: bool = pa.Field(description="National Data Opt-out recorded by any source")
    ndop_opt_out_source: str = pa.Field(nullable=True, description="Source whose statement decided ndop_opt_out")
    type1_opt_out: bool = pa.Field(description="GP Type 1 objection recorded")
    type1_opt_out_source: str = pa.Field(nullable=True, description="Source whose statement decided type1_opt_out")
    sensitive_category: bool = pa.Field(description="A sensitive-category marker recorded by any source")
    shared_care_consent: str = pa.Field(nullable=True, isin=("granted", "withdrawn", "refused"),
                                        description="Latest shared-care consent statement (dated beats undated)")
    shared_care_consent_date: dt.date = pa.Field(nullable=True, description="Date of the deciding statement")
    shared_care_consent_source: str = pa.Field(nullable=True, description="Source of the deciding statement")
    research_consent: bool = pa.Field(nullable=True, description="Latest explicit research consent statement")
    research_consent_source: str = pa.Field(nullable=True, description="Source of the deciding statement")
    link_probability: float = pa.Field(nullable=True, ge=0, le=1,
                                       description="Weakest attachment of any of the person's records (null: one record)")

    class Config:
        strict = True
        ordered = True


class ActivityExport(pa.DataFrameModel):
    """One activity row (contact, admission, referral, ...) of a person, per source."""

    person_id: str = pa.Field(str_matches=r"^R[0-9a-f]{20}$", description="Person pseudonym keyed for this recipient")
    source: str = pa.Field(description="Source that recorded the activity")
    activity_date: dt.date = pa.Field(nullable=True, description="Date of the activity")
    activity_type: str = pa.Field(nullable=True, description="Kind of activity as the source records it")

    class Config:
        strict = True
        ordered = True


def _columns(model: type[pa.DataFrameModel]) -> list[dict[str, str]]:
    schema = model.to_schema()
    return [{"name": name, "type": str(column.dtype), "description": column.description or ""}
            for name, column in schema.columns.items()]


def data_dictionary(rules: PurposeRules) -> dict:
    """The data dictionary of an export, generated from the schemas."""
    return {
        "schema_version": SCHEMA_VERSION,
        "purpose": rules.name,
        "rules": rules.description,
        "tables": {"person.parquet": _columns(PersonExport), "activity/<source>.parquet": _columns(ActivityExport)},
    }
