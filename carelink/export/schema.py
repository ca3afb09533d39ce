"""The export contract: what recipients receive, as pandera models, and the data dictionary generated from them."""

from __future__ import annotations

import datetime as dt

import pandera.polars as pa
import polars as pl

import carelink.checks  # noqa: F401  (registers the unique_values check)
from carelink.export.purposes import PurposeRules
from carelink.export.summaries import ROUND_TO, SUMMARIES, SUPPRESS_BELOW, SummarySpec

SCHEMA_VERSION = "export/3"
_PERSON_ID = r"^R[0-9a-f]{20}$"
_SUMMARIES_BY_FILE = {spec.file: spec for spec in SUMMARIES}


class PersonExport(pa.DataFrameModel):
    """One row per person in the recipient's export."""

    person_id: str = pa.Field(unique_values=(), str_matches=_PERSON_ID,
                              description="Person pseudonym keyed for this recipient (not joinable across recipients)")
    sources: list[str] = pa.Field(description="Sources holding at least one record of the person")
    source_count: int = pa.Field(ge=1, description="Number of sources holding the person")
    records: int = pa.Field(ge=1, description="Number of source records linked into the person")
    age_band: str = pa.Field(nullable=True, description="Five-year age band at the reference date (90+ top-coded)")
    postcode_district: str = pa.Field(nullable=True, description="Postcode district (outward code) most often recorded")
    ndop_opt_out: bool = pa.Field(description="National Data Opt-out recorded by any source")
    ndop_opt_out_source: str = pa.Field(nullable=True, description="Source whose statement decided ndop_opt_out")
    ndop_opt_out_date: dt.date = pa.Field(nullable=True, description="Date of the deciding statement, where dated")
    type1_opt_out: bool = pa.Field(description="GP Type 1 objection recorded")
    type1_opt_out_source: str = pa.Field(nullable=True, description="Source whose statement decided type1_opt_out")
    type1_opt_out_date: dt.date = pa.Field(nullable=True, description="Date of the deciding statement, where dated")
    sensitive_category: bool = pa.Field(description="A sensitive-category marker recorded by any source")
    shared_care_consent: str = pa.Field(nullable=True, isin=("granted", "withdrawn", "refused"),
                                        description="Latest shared-care consent statement (dated beats undated)")
    shared_care_consent_date: dt.date = pa.Field(nullable=True, description="Date of the deciding statement")
    shared_care_consent_source: str = pa.Field(nullable=True, description="Source of the deciding statement")
    research_consent: bool = pa.Field(nullable=True, description="Latest explicit research consent statement")
    research_consent_source: str = pa.Field(nullable=True, description="Source of the deciding statement")
    research_consent_date: dt.date = pa.Field(nullable=True, description="Date of the deciding statement")
    link_probability: float = pa.Field(nullable=True, ge=0, le=1,
                                       description="Weakest attachment of any of the person's records (null: one record)")

    class Config:
        strict = True
        ordered = True


class ActivityExport(pa.DataFrameModel):
    """One activity row (contact, admission, referral, ...) of a person, per source."""

    person_id: str = pa.Field(str_matches=_PERSON_ID, description="Person pseudonym keyed for this recipient")
    source: str = pa.Field(description="Source that recorded the activity")
    activity_date: dt.date = pa.Field(nullable=True, description="Date of the activity")
    activity_type: str = pa.Field(nullable=True, description="Kind of activity as the source records it")

    class Config:
        strict = True
        ordered = True


class RecordMapExport(pa.DataFrameModel):
    """Which source records make up each person (direct care only): lets a partner find its own records."""

    person_id: str = pa.Field(str_matches=_PERSON_ID, description="Person pseudonym keyed for this recipient")
    source: str = pa.Field(description="Source holding the record")
    record_token: str = pa.Field(unique_values=(), str_matches=r"^[0-9a-f]{32}$",
                                 description="Record token; the source's re-identification map turns it into its record id")
    record_id_sealed: str | None = pa.Field(nullable=True, description=(
        "The source's record id sealed with AES-SIV where the source marks it reversible: a holder of the linkage "
        "key opens it with `carelink reidentify`"))
    nhs_number_sealed: str | None = pa.Field(nullable=True, description="NHS number sealed likewise, where reversible")

    class Config:
        strict = True
        ordered = True


def _publishable(data: pa.PolarsData) -> pl.LazyFrame:
    """Published counts are multiples of ``ROUND_TO`` and never a small count."""
    value = pl.col(data.key)
    return data.lazyframe.select((value % ROUND_TO == 0) & ((value == 0) | (value >= SUPPRESS_BELOW)))


def summary_schema(spec: SummarySpec) -> pa.DataFrameSchema:
    """The pandera schema of one disclosure-controlled summary table."""
    columns = {dimension: pa.Column(pl.String, description=f"Category of {dimension}: 'Total' for the table's "
                                                           "total, 'Unknown' where not recorded")
               for dimension in spec.dimensions}
    columns[spec.measure] = pa.Column(pl.Int64, nullable=True, checks=pa.Check(_publishable, name="publishable"),
                                      description=f"{spec.description}: rounded to the nearest {ROUND_TO}; "
                                                  "null where suppressed")
    columns["suppressed"] = pa.Column(pl.Boolean, description="The count is withheld (small, or it would reveal one)")
    hidden_iff_null = pa.Check(lambda data: data.lazyframe.select(pl.col(spec.measure).is_null() == pl.col("suppressed")),
                               name="null_where_suppressed")
    return pa.DataFrameSchema(columns, checks=hidden_iff_null, strict=True, ordered=True, unique=list(spec.dimensions),
                              name=spec.name)


def table_schema(name: str) -> pa.DataFrameSchema | None:
    """The schema of the table at ``name`` inside an export folder (None: not a table of the contract)."""
    if name.startswith("activity/") and name.count("/") == 1 and name.endswith(".parquet"):
        return ActivityExport.to_schema()
    fixed = {"person.parquet": PersonExport, "record_map.parquet": RecordMapExport}
    if name in fixed:
        return fixed[name].to_schema()
    spec = _SUMMARIES_BY_FILE.get(name)
    return summary_schema(spec) if spec else None


def _columns(schema: pa.DataFrameSchema) -> list[dict[str, str]]:
    return [{"name": name, "type": str(column.dtype), "description": column.description or ""}
            for name, column in schema.columns.items()]


def data_dictionary(rules: PurposeRules) -> dict:
    """The data dictionary of an export for one purpose, generated from the schemas."""
    tables = {"person.parquet": PersonExport.to_schema(), "activity/<source>.parquet": ActivityExport.to_schema()}
    if rules.record_map:
        tables["record_map.parquet"] = RecordMapExport.to_schema()
    tables |= {spec.file: summary_schema(spec) for spec in SUMMARIES}
    return {
        "schema_version": SCHEMA_VERSION,
        "purpose": rules.name,
        "rules": rules.description,
        "rule_flags": rules.flags(),
        "disclosure_control": (f"summary tables: counts 1 to {SUPPRESS_BELOW - 1} suppressed, others rounded to the "
                               f"nearest {ROUND_TO}; a row or column holding one suppressed cell has its next-smallest "
                               "cell suppressed too"),
        "tables": {name: _columns(schema) for name, schema in tables.items()},
    }


def dictionary_markdown(dictionary: dict) -> str:
    """The data dictionary as Markdown."""
    lines = [f"# Data dictionary — {dictionary['purpose']}", "", dictionary["rules"], "",
             f"Disclosure control: {dictionary['disclosure_control']}.", ""]
    for table, columns in dictionary["tables"].items():
        lines += [f"## {table}", "", "| column | type | description |", "|---|---|---|"]
        lines += [f"| {c['name']} | {c['type']} | {c['description']} |" for c in columns]
        lines.append("")
    return "\n".join(lines)
