"""The ingest stage: one partner extract → standardised records, quarantine and a validation summary.

Invariant, checked every run: rows in = rows standardised + rows quarantined, for person and activity files alike.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandera.errors
import polars as pl

from carelink.config import SourceConfig, TableSpec
from carelink.errors import DataQualityError, InputFileError
from carelink.ingest import standardise as st
from carelink.ingest.carry import DATED, RAW_HASH, PreviousRecords, fingerprint, raw_hash, write_fingerprints
from carelink.ingest.readers import RAW, ROW, RawChunk, read_table, shorten
from carelink.ingest.schema import SCHEMA_VERSION, StandardisedActivity, StandardisedRecord
from carelink.tables import file_sha256, stacked_rows, write_json, write_parquet_files

log = logging.getLogger(__name__)

_TRUE = ("Y", "YES", "TRUE", "T", "1", "OPTED OUT", "OPT OUT", "OBJECTED", "DISSENT")
_FALSE = ("N", "NO", "FALSE", "F", "0", "NOT OPTED OUT", "NONE")
_SHARED_CARE = {
    "GRANTED": "granted", "CONSENTED": "granted", "CONSENT": "granted", "YES": "granted", "Y": "granted",
    "WITHDRAWN": "withdrawn", "WITHDRAWN CONSENT": "withdrawn",
    "REFUSED": "refused", "OBJECTED": "refused", "DECLINED": "refused", "NO": "refused", "N": "refused",
}
_BOOL_FIELDS = ("ndop_opt_out", "type1_opt_out", "research_consent", "sensitive_category")
_DATE_FIELDS = ("ndop_opt_out_date", "type1_opt_out_date", "shared_care_consent_date", "research_consent_date")


@dataclass(frozen=True)
class TableCounts:
    """Rows read, standardised and quarantined for one extract file."""

    rows_in: int
    rows_standardised: int
    rows_quarantined: int

    def reconciles(self) -> bool:
        return self.rows_in == self.rows_standardised + self.rows_quarantined


@dataclass(frozen=True)
class IngestResult:
    """What ingest did for one source."""

    source: str
    records: TableCounts
    activity: TableCounts | None
    folder: Path
    records_carried: int = 0  # rows whose standardised values were carried from the previous run


def ingest_source(source: SourceConfig, out_dir: Path, reference_date: dt.date,
                  previous: Path | None = None) -> IngestResult:
    """Read, standardise, validate and quarantine one source; write its files under ``out_dir/<source>/``.

    ``previous`` is the source's ingest folder of the previous run: rows unchanged since then keep their
    standardised values (see ``carry``); the output is the same either way.
    """
    folder = out_dir / source.name
    made = fingerprint(source, SCHEMA_VERSION)
    carry_from = PreviousRecords.load(previous, made, list(CARRIED)) if previous is not None else None
    records, quarantine, rows_in = _ingest_records(source, reference_date, carry_from)
    record_counts = TableCounts(rows_in, records.height, quarantine.height)
    activity_counts = None
    meta = {"schema_version": SCHEMA_VERSION, "source": source.name, "kind": source.kind}
    files = [(records.drop(RAW_HASH, _CARRIED_FLAG), folder / "standardised.parquet", meta),
             (quarantine, folder / "quarantine.parquet", meta)]
    if source.activity is not None:
        activity, activity_quarantine, activity_in = _ingest_activity(source, records, reference_date)
        activity_counts = TableCounts(activity_in, activity.height, activity_quarantine.height)
        files += [(activity, folder / "activity.parquet", meta),
                  (activity_quarantine, folder / "activity_quarantine.parquet", meta)]
    for counts, spec in ((record_counts, source.table), (activity_counts, source.activity)):
        if counts is not None and not counts.reconciles():
            raise DataQualityError(f"{spec.path}: {counts.rows_in} rows in but {counts.rows_standardised} "
                                   f"standardised + {counts.rows_quarantined} quarantined")
    carried = int(records[_CARRIED_FLAG].sum())
    standardised = write_parquet_files(files)[0]
    del files
    write_fingerprints(records[RAW_HASH], folder, standardised, made)
    write_json(_validation_summary(source, records, quarantine, record_counts, activity_counts), folder / "validation.json")
    log.info("ingest %s: %d rows in, %d standardised (%d carried from the previous run), %d quarantined",
             source.name, rows_in, records.height, carried, quarantine.height)
    return IngestResult(source.name, record_counts, activity_counts, folder, carried)


def _formats(spec: TableSpec) -> tuple[str, ...]:
    # Parquet date columns arrive as ISO text (see readers._as_text).
    return spec.date_formats + (("%Y-%m-%d",) if spec.format == "parquet" else ())


def _column(spec: TableSpec, canonical: str) -> pl.Expr:
    return pl.col(spec.columns[canonical]) if canonical in spec.columns else pl.lit(None, dtype=pl.String)


def _ingest_records(source: SourceConfig, reference_date: dt.date,
                    previous: PreviousRecords | None) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    spec = source.table
    kept: list[pl.DataFrame] = []
    quarantined: list[pl.DataFrame] = []
    first_seen = pl.DataFrame(schema={"record_id": pl.String, "_first": pl.Int64})
    rows_in = repeated = 0
    for chunk in read_table(spec):
        rows_in += chunk.rows.height + chunk.unreadable.height
        quarantined.append(chunk.unreadable)
        good, bad = _standardise_records(source, chunk, reference_date, previous)
        good, duplicates = _split_duplicates(good, first_seen)
        first_seen = pl.concat([first_seen, good.select("record_id", pl.col(ROW).alias("_first"))], rechunk=False)
        repeated += duplicates.height
        kept.append(good)
        quarantined.append(_with_raw(pl.concat([bad, duplicates]), chunk.rows))
    records = pl.concat(kept)
    if repeated:
        log.warning("%s: %d rows repeat an earlier record_id and were quarantined", spec.path, repeated)
    return records, _sorted(pl.concat(quarantined)), rows_in


#: Standardised person-record columns, in the order of ``standardised.parquet``.
COLUMNS = ("source", "record_id", ROW, "nhs_number", "nhs_number_status", "shared_id", "given_name", "family_name",
           "date_of_birth", "date_of_birth_status", "sex", "address", "postcode", "postcode_status",
           "ndop_opt_out", "ndop_opt_out_date", "type1_opt_out", "type1_opt_out_date", "shared_care_consent",
           "shared_care_consent_date", "research_consent", "research_consent_date", "sensitive_category")
#: Columns a row unchanged since the previous run keeps (the others are its key or depend on the reference date).
CARRIED = tuple(c for c in COLUMNS if c not in ("source", "record_id", ROW, *DATED))
#: Whether a row's values were carried from the previous run (dropped before writing).
_CARRIED_FLAG = "_carried"


def _standardise_records(source: SourceConfig, chunk: RawChunk, reference_date: dt.date,
                         previous: PreviousRecords | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Standardised rows of a chunk (with ``RAW_HASH`` and ``_CARRIED_FLAG``) and the rows quarantined
    (``ROW``, reasons)."""
    spec = source.table
    raw = chunk.rows
    formats = _formats(spec)
    keys = raw.select(pl.col(ROW), _column(spec, "record_id").str.strip_chars().alias("record_id"), raw_hash(spec))
    missing_id = keys["record_id"].is_null() | (keys["record_id"] == "")
    bad = keys.filter(missing_id).select(ROW, pl.lit("record_id is missing").alias("reasons"))
    keys, accepted = keys.filter(~missing_id), raw.filter(~missing_id)
    carried = previous.carried(keys) if previous is not None else keys.select(ROW).clear()
    is_carried = keys[ROW].is_in(carried[ROW].implode())
    fresh = accepted.filter(~is_carried)
    # a select keeps ROW so that literals, for fields the source does not map, take the frame's height
    values = fresh.select(pl.col(ROW), *_carried_columns(spec, fresh)).select(CARRIED)
    if carried.height:  # carried and fresh values stacked, then gathered into the chunk's row order
        positions = np.empty(keys.height, dtype=np.int64)
        positions[is_carried.to_numpy()] = np.arange(carried.height)
        positions[~is_carried.to_numpy()] = carried.height + np.arange(fresh.height)
        values = stacked_rows([carried.select(CARRIED), values], positions)
    dated = accepted.select(pl.col(ROW), *_dated_columns(spec, formats, reference_date)).drop(ROW)
    frame = pl.concat([keys, dated, values], how="horizontal").with_columns(
        pl.lit(source.name).alias("source"), is_carried.alias(_CARRIED_FLAG)).select(*COLUMNS, RAW_HASH, _CARRIED_FLAG)
    good, invalid = _validate(frame, StandardisedRecord, spec.path)
    return good, pl.concat([bad, invalid])


def _carried_columns(spec: TableSpec, raw: pl.DataFrame) -> list[pl.Expr]:
    """The standardised columns of ``CARRIED``: functions of a row's raw values alone."""
    consent = _consent_columns(spec, raw)
    return [
        st.nhs_number_and_status(_column(spec, "nhs_number")).struct.unnest(),
        st.standardise_identifier(_column(spec, "shared_id")).alias("shared_id"),
        st.standardise_name(_column(spec, "given_name")).alias("given_name"),
        st.standardise_name(_column(spec, "family_name")).alias("family_name"),
        st.standardise_sex(_column(spec, "sex")).alias("sex"),
        st.standardise_address(_column(spec, "address")).alias("address"),
        st.postcode_and_status(_column(spec, "postcode")).struct.unnest(),
        *consent,
    ]


def _dated_columns(spec: TableSpec, formats: tuple[str, ...], reference_date: dt.date) -> list[pl.Expr]:
    """The standardised columns of ``DATED``: they depend on the reference date too."""
    return [
        st.birth_date_and_status(_column(spec, "date_of_birth"), formats, reference_date).struct.unnest(),
        *(st.statement_date(_column(spec, name), formats, reference_date).alias(name) for name in _DATE_FIELDS),
    ]


def _with_raw(quarantined: pl.DataFrame, raw: pl.DataFrame) -> pl.DataFrame:
    """Quarantined rows (``ROW``, reasons) with their original row as ``RAW``."""
    originals = raw.join(quarantined.select(ROW), on=ROW, how="semi")
    return quarantined.join(originals.select(pl.col(ROW), _raw_record(originals).alias(RAW)), on=ROW).select(ROW, RAW, "reasons")


def _raw_record(raw: pl.DataFrame) -> pl.Expr:
    """The original row, untouched, as a JSON object of its fields (for quarantine)."""
    columns = [c for c in raw.columns if c != ROW]
    return pl.struct(columns).struct.json_encode() if columns else pl.lit("{}")


def _consent_columns(spec: TableSpec, raw: pl.DataFrame) -> list[pl.Expr]:
    """The coded consent fields (their dates are in ``_dated_columns``)."""
    columns = []
    for name in _BOOL_FIELDS:
        codes = {v: True for v in _TRUE} | {v: False for v in _FALSE} | spec.consent_values.get(name, {})
        columns.append(_coded(spec, raw, name, codes, pl.Boolean))
    shared_care = _SHARED_CARE | spec.consent_values.get("shared_care_consent", {})
    columns.append(_coded(spec, raw, "shared_care_consent", shared_care, pl.String))
    return columns


def _coded(spec: TableSpec, raw: pl.DataFrame, name: str, codes: dict[str, object], dtype: pl.DataType) -> pl.Expr:
    """Map a coded value; an unknown code is an error naming file, row and field (it must be mapped, not guessed)."""
    if name not in spec.columns:
        return pl.lit(None, dtype=dtype).alias(name)
    column = spec.columns[name]
    # A column holds a handful of distinct codes: each is looked up once and the column mapped from them.
    values = raw[column].unique().drop_nulls()
    key = values.to_frame().select(st.ascii_upper(pl.col(column).str.strip_chars()).str.replace_all(r"\s+", " "))[column]
    unknown = values.filter(key.is_not_null() & (key != "") & ~key.is_in(list(codes)))
    if unknown.len():
        first = raw.filter(pl.col(column).is_in(unknown.to_list()))
        raise InputFileError(spec.path, f"unknown value {shorten(first[column][0])!r} (expected one of: "
                             f"{', '.join(sorted(codes))})", row=first[ROW][0], field=column)
    canonical = key.replace_strict(codes, default=None, return_dtype=dtype)
    return pl.col(column).replace_strict(values, canonical, default=None, return_dtype=dtype).alias(name)


def _validate(frame: pl.DataFrame, model: type, path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validate with pandera; rows that fail come back apart (``ROW``, reasons: the failed checks)."""
    checked = frame.select(c for c in frame.columns if c not in (RAW_HASH, _CARRIED_FLAG))
    try:
        model.validate(checked, lazy=True)
        return frame, pl.DataFrame(schema={ROW: pl.Int64, "reasons": pl.String})
    except pandera.errors.SchemaErrors as exc:
        failures = exc.failure_cases.filter(pl.col("index").is_not_null())
        if failures.height == 0:
            raise DataQualityError(f"{path}: standardised data breaks its schema: {exc.failure_cases.row(0)}") from None
    reasons = (
        failures.group_by("index")
        .agg((pl.col("column") + ": " + pl.col("check")).unique().sort().str.join("; ").alias("reasons"))
        .rename({"index": "_index"})
    )
    indexed = frame.with_row_index("_index").with_columns(pl.col("_index").cast(reasons["_index"].dtype))
    bad = indexed.join(reasons, on="_index", how="inner").select(ROW, "reasons")
    good = indexed.join(reasons, on="_index", how="anti").drop("_index")
    return good, bad


def _split_duplicates(records: pl.DataFrame, first_seen: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the first row of each record_id, counting ``first_seen`` (record_id, _first: rows kept from earlier
    chunks); the later ones come back apart (``ROW``, reasons), since which one is right cannot be known."""
    # an inner join keeps the hash table on the chunk's side, not on every record seen so far
    earlier = records.select("record_id", ROW).join(first_seen, on="record_id", how="inner").drop("record_id")
    flagged = (
        records.join(earlier, on=ROW, how="left", maintain_order="left")
        .with_columns(pl.coalesce("_first", pl.col(ROW).min().over("record_id")).alias("_first"))
        .with_columns((pl.col(ROW) != pl.col("_first")).alias("_dup"))
    )
    duplicates = flagged.filter("_dup").select(
        ROW, pl.format("duplicate record_id (first seen at row {})", pl.col("_first")).alias("reasons"))
    return flagged.filter(~pl.col("_dup")).drop("_first", "_dup"), duplicates


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(ROW)


def _ingest_activity(source: SourceConfig, records: pl.DataFrame, reference_date: dt.date) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    spec = source.activity
    assert spec is not None
    known = records.select("record_id")
    kept, quarantined, rows_in = [], [], 0
    for chunk in read_table(spec):
        rows_in += chunk.rows.height + chunk.unreadable.height
        quarantined.append(chunk.unreadable)
        frame = chunk.rows.select(
            pl.lit(source.name).alias("source"),
            _column(spec, "record_id").str.strip_chars().alias("record_id"),
            pl.col(ROW),
            st.parse_date(_column(spec, "activity_date"), _formats(spec), reference_date).alias("activity_date"),
            _column(spec, "activity_type").str.strip_chars().alias("activity_type"),
        )
        # an inner join keeps the hash table on the chunk's side (known record IDs are unique)
        matched = frame.select("record_id", ROW).join(known, on="record_id", how="inner").select(ROW)
        orphan = frame.join(matched, on=ROW, how="anti").select(
            ROW, pl.lit("record_id not among the source's accepted records").alias("reasons"))
        good, bad = _validate(frame.join(matched, on=ROW, how="semi", maintain_order="left"), StandardisedActivity,
                              spec.path)
        kept.append(good)
        quarantined.append(_with_raw(pl.concat([orphan, bad]), chunk.rows))
    return pl.concat(kept).sort(ROW), _sorted(pl.concat(quarantined)), rows_in


def _validation_summary(source: SourceConfig, records: pl.DataFrame, quarantine: pl.DataFrame,
                        counts: TableCounts, activity: TableCounts | None) -> dict:
    def tally(column: str) -> dict[str, int]:
        return dict(sorted(records.group_by(column).len().iter_rows())) if records.height else {}

    reasons = quarantine.select(pl.col("reasons").str.split("; ")).explode("reasons").select(
        pl.col("reasons").str.replace(r" \(.*\)$", ""))
    return {
        "schema_version": SCHEMA_VERSION,
        "source": source.name,
        "input": {"path": source.table.path.name, "sha256": file_sha256(source.table.path)},
        "records": {"rows_in": counts.rows_in, "standardised": counts.rows_standardised,
                    "quarantined": counts.rows_quarantined, "reconciles": counts.reconciles()},
        "activity": None if activity is None else {
            "rows_in": activity.rows_in, "standardised": activity.rows_standardised,
            "quarantined": activity.rows_quarantined, "reconciles": activity.reconciles()},
        "quarantine_reasons": dict(sorted(reasons.group_by("reasons").len().iter_rows())) if reasons.height else {},
        "nhs_number_status": tally("nhs_number_status"),
        "date_of_birth_status": tally("date_of_birth_status"),
        "postcode_status": tally("postcode_status"),
        "completeness": {c: int(records[c].is_not_null().sum()) for c in
                         ("nhs_number", "shared_id", "given_name", "family_name", "date_of_birth", "sex", "address", "postcode")},
    }
