"""The export stage, run at the hub: registry + nodes payload + activity → one dataset per recipient and purpose.

Each recipient sees its own keyed ``person_id`` (HMAC under a key derived from the hub's export key for that
recipient), so two recipients cannot join their extracts; the hub can map between them through the registry
(:func:`pseudonym_map`).

An export folder holds ``person.parquet``, ``activity/<source>.parquet`` (one file per source, sorted by person and
date), ``record_map.parquet`` where the purpose allows it, disclosure-controlled ``summary/*.parquet``, the data
dictionary, the export report and ``manifest.json``. Every table is validated before anything is written, and the
folder is built aside and renamed into place (``publish.staged_folder``), so a failure never leaves half an export.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandera.errors
import polars as pl

from carelink import __version__
from carelink.config import ExportConfig
from carelink.errors import ConfigError, DataQualityError
from carelink.export.publish import MANIFEST, file_entries, staged_folder
from carelink.export.report import UNLINKED, export_report, report_markdown
from carelink.export.schema import (
    SCHEMA_VERSION,
    ActivityExport,
    PersonExport,
    RecordMapExport,
    data_dictionary,
    dictionary_markdown,
    table_schema,
)
from carelink.export.summaries import SUMMARIES, ProtectedTable, summary_table
from carelink.export.verify import verify_export
from carelink.keys import Key
from carelink.tables import write_json, write_parquet, write_text

from .consent import (
    PURPOSES,
    TYPE1_RULE,
    PurposeRules,
    resolution_texts,
    resolve_consent,
    withheld_reasons,
)

__all__ = ["ExportResult", "check_reconciles", "export", "pseudonym_map", "recipient_pseudonyms", "verify_export"]
log = logging.getLogger(__name__)
_ACTIVITY_SCHEMA = {"record_token": pl.String, "source": pl.String, "activity_date": pl.Date, "activity_type": pl.String}


@dataclass(frozen=True)
class ExportResult:
    """What one export wrote."""

    recipient: str
    purpose: str
    people: int
    people_withheld: int
    activity_rows: int
    folder: Path


def recipient_pseudonyms(person_ids: pl.Series, export_key: Key, recipient: str) -> pl.Series:
    """Recipient-keyed person IDs: the same person has unrelated IDs for two recipients."""
    key = export_key.recipient_key(recipient)
    distinct = person_ids.unique().to_list()
    mapping = {pid: "R" + hmac.digest(key, pid.encode(), "sha256")[:10].hex() for pid in distinct}
    return person_ids.replace_strict(mapping, return_dtype=pl.String)


def pseudonym_map(person_ids: pl.Series, export_key: Key, recipient: str) -> pl.DataFrame:
    """Registry ``person_id`` → the recipient's ``recipient_id``, for the distinct IDs given.

    This is how the hub maps a recipient's IDs back to its registry (and so between two recipients); recipients,
    without the export key, cannot.
    """
    distinct = person_ids.unique().sort()
    return pl.DataFrame({"person_id": distinct,
                         "recipient_id": recipient_pseudonyms(distinct, export_key, recipient)})


def _people(person_map: pl.DataFrame, nodes: pl.DataFrame, edges: pl.DataFrame,
            resolution: Mapping[str, str] | None = None) -> pl.DataFrame:
    records = person_map.select("record_token", "person_id").join(nodes, on="record_token", how="inner")
    consent = resolve_consent(records, resolution)
    describe = records.group_by("person_id").agg(
        pl.col("source").unique().sort().alias("sources"),
        pl.len().cast(pl.Int64).alias("records"),
        pl.col("age_band").drop_nulls().mode().sort().first().alias("age_band"),
        pl.col("postcode_district").drop_nulls().mode().sort().first().alias("postcode_district"),
    )
    weakest = _weakest_links(person_map, edges)
    return (
        describe.join(consent, on="person_id")
        .join(weakest, on="person_id", how="left")
        .with_columns(pl.col("sources").list.len().cast(pl.Int64).alias("source_count"))
    )


def _weakest_links(person_map: pl.DataFrame, edges: pl.DataFrame) -> pl.DataFrame:
    """Per person, how weakly its least-attached record is held: min over records of the record's best edge."""
    ids = person_map.select("record_token", "person_id")
    inside = (
        edges.select("record_token_l", "record_token_r", "match_probability")
        .join(ids.rename({"record_token": "record_token_l"}), on="record_token_l")
        .join(ids.rename({"record_token": "record_token_r", "person_id": "person_id_r"}), on="record_token_r")
        .filter(pl.col("person_id") == pl.col("person_id_r"))
    )
    ends = pl.concat([
        inside.select("person_id", pl.col("record_token_l").alias("record_token"), "match_probability"),
        inside.select("person_id", pl.col("record_token_r").alias("record_token"), "match_probability"),
    ])
    best = ends.group_by("person_id", "record_token").agg(pl.col("match_probability").max())
    return best.group_by("person_id").agg(pl.col("match_probability").min().alias("link_probability"))


def purpose_rules(export: ExportConfig, purposes: Mapping[str, PurposeRules] = PURPOSES) -> PurposeRules:
    """The rules an export applies: its purpose's profile, relaxed by a recorded legal basis where allowed.

    Raises:
        ConfigError: If the purpose is unknown or does not accept a legal basis.
    """
    rules = purposes.get(export.purpose)
    if rules is None:
        raise ConfigError(None, "exports", f"unknown purpose {export.purpose!r} (known: {', '.join(purposes)})")
    if export.legal_basis is None:
        return rules
    try:
        return rules.under_legal_basis(export.legal_basis)
    except ValueError as exc:
        raise ConfigError(None, "exports.legal_basis", str(exc)) from None


def _rekey(frame: pl.DataFrame, ids: pl.DataFrame) -> pl.DataFrame:
    """Replace registry ``person_id`` by the recipient's (rows of people not in ``ids`` drop out)."""
    return frame.join(ids, on="person_id").drop("person_id").rename({"recipient_id": "person_id"})


def _activity_outcomes(activity: dict[str, pl.DataFrame], person_map: pl.DataFrame, people: pl.DataFrame,
                       rules: PurposeRules, type1_sources: frozenset[str]) -> pl.DataFrame:
    """Every activity row received, with its registry person and why it is withheld (null: exported)."""
    frames = [rows.select("record_token", pl.lit(source).alias("source"), "activity_date", "activity_type")
              for source, rows in sorted(activity.items())]
    rows = pl.concat(frames) if frames else pl.DataFrame(schema=_ACTIVITY_SCHEMA)
    joined = (rows.join(person_map.select("record_token", "person_id"), on="record_token", how="left")
              .join(people.select("person_id", "withheld_reason", "type1_opt_out"), on="person_id", how="left"))
    type1 = pl.lit(False)
    if getattr(rules, TYPE1_RULE.flag):
        type1 = TYPE1_RULE.condition & pl.col("source").is_in(sorted(type1_sources))
    reason = (pl.when(pl.col("person_id").is_null()).then(pl.lit(UNLINKED))
              .when(pl.col("withheld_reason").is_not_null()).then(pl.col("withheld_reason"))
              .when(type1).then(pl.lit(TYPE1_RULE.reason))
              .otherwise(pl.lit(None, dtype=pl.String)))
    return joined.with_columns(reason.alias("withheld_reason")).drop("type1_opt_out")


def _tables(rules: PurposeRules, people: pl.DataFrame, person_map: pl.DataFrame, outcomes: pl.DataFrame,
            sources: list[str], ids: pl.DataFrame) -> tuple[dict[str, pl.DataFrame], dict[str, ProtectedTable]]:
    """Every table of the export by its path in the folder, and the summary tables with their suppression counts."""
    included = people.filter(pl.col("withheld_reason").is_null())
    person = _rekey(included, ids).select(list(PersonExport.to_schema().columns)).sort("person_id")
    exported = _rekey(outcomes.filter(pl.col("withheld_reason").is_null()), ids).select(
        list(ActivityExport.to_schema().columns)).sort("source", "person_id", "activity_date", "activity_type")
    tables = {"person.parquet": person}
    tables |= {f"activity/{source}.parquet": exported.filter(pl.col("source") == source) for source in sources}
    if rules.record_map:
        sealed = [c for c in person_map.columns if c.endswith("_sealed") and person_map[c].is_not_null().any()]
        records = _rekey(person_map.select("person_id", "source", "record_token", *sealed), ids)
        columns = [c for c in RecordMapExport.to_schema().columns if c in records.columns]
        tables["record_map.parquet"] = records.select(columns).sort("person_id", "source", "record_token")
    summaries = {spec.name: summary_table(person if spec.table == "person" else exported, spec) for spec in SUMMARIES}
    tables |= {spec.file: summaries[spec.name].frame for spec in SUMMARIES}
    return tables, summaries


def _validate(tables: dict[str, pl.DataFrame], where: str) -> None:
    """Validate every table against the export contract before anything is written."""
    for name, frame in tables.items():
        schema = table_schema(name)
        if schema is None:
            raise DataQualityError(f"export {where}: {name} is not a table of the export contract")
        try:
            schema.validate(frame)
        except (pandera.errors.SchemaError, pandera.errors.SchemaErrors) as exc:
            raise DataQualityError(f"export {where}: {name} failed validation: {str(exc).splitlines()[0]}") from None


def export(export: ExportConfig, out_folder: Path, *, person_map: pl.DataFrame, nodes: pl.DataFrame,
           activity: dict[str, pl.DataFrame], edges: pl.DataFrame, export_key: Key, provenance: dict,
           type1_sources: frozenset[str] = frozenset(),
           purposes: Mapping[str, PurposeRules] = PURPOSES,
           consent_resolution: Mapping[str, str] | None = None) -> ExportResult:
    """Build, validate and publish one recipient's export for one purpose.

    Args:
        export: The recipient, purpose and any legal basis.
        out_folder: The run's export folder; the export goes to ``<recipient>/<purpose>`` inside it.
        person_map: The registry's record → person map (``record_token``, ``person_id``, ``source``).
        nodes: Every source's pseudonymised records (payload and consent columns).
        activity: Activity rows per source (``record_token``, ``activity_date``, ``activity_type``).
        edges: Scored pairs, for each person's link quality.
        export_key: The hub's export key, from which the recipient's key is derived.
        provenance: Written into the manifest and every table's metadata (partnership, key IDs, model hash).
        type1_sources: Sources that record GP Type 1 objections; a Type 1 objection withholds their activity for
            purposes that honour it.
        purposes: The purposes an export may name (shipped and the partnership's own).
    """
    rules = purpose_rules(export, purposes)
    where = f"{export.recipient}/{export.purpose}"
    people = _people(person_map, nodes, edges, consent_resolution)
    people = people.join(withheld_reasons(people, rules), on="person_id")
    outcomes = _activity_outcomes(activity, person_map, people, rules, type1_sources)
    ids = pseudonym_map(people.filter(pl.col("withheld_reason").is_null())["person_id"], export_key, export.recipient)
    sealed = [c for c in nodes.columns if c.endswith("_sealed")]
    record_map = person_map.join(nodes.select("record_token", *sealed), on="record_token", how="left")
    tables, summaries = _tables(rules, people, record_map, outcomes, sorted(activity), ids)
    _validate(tables, where)
    report = export_report(resolution=resolution_texts(consent_resolution),
                           recipient=export.recipient, legal_basis=export.legal_basis, rules=rules, people=people,
                           records=person_map.select("person_id"), activity=outcomes, summaries=summaries)
    meta = {"schema_version": SCHEMA_VERSION, "recipient": export.recipient, "purpose": export.purpose,
            "legal_basis": export.legal_basis, "export_key_id": export_key.key_id, **provenance}
    dictionary = data_dictionary(rules)
    target = out_folder / export.recipient / export.purpose
    with staged_folder(target) as folder:
        for name, frame in tables.items():
            write_parquet(frame, folder / name, meta)
        write_json(dictionary, folder / "data_dictionary.json")
        write_text(dictionary_markdown(dictionary), folder / "data_dictionary.md")
        write_json(report, folder / "export_report.json")
        write_text(report_markdown(report), folder / "export_report.md")
        manifest = {**meta, "carelink_version": __version__, "purpose_rules": rules.description,
                    "purpose_flags": rules.flags(), "counts": _counts(report), "files": file_entries(folder)}
        write_json(manifest, folder / MANIFEST)
    counts = manifest["counts"]
    log.info("export %s: %d people (%d withheld), %d activity rows (%d withheld)", where, counts["people"],
             counts["people_withheld"], counts["activity_rows"], counts["activity_rows_withheld"])
    return ExportResult(export.recipient, export.purpose, counts["people"], counts["people_withheld"],
                        counts["activity_rows"], target)


def _counts(report: dict) -> dict:
    """The manifest's counts, from the export report."""
    people, records, activity = report["people"], report["records"], report["activity_rows"]
    return {
        "people": people["exported"], "people_withheld": people["withheld"],
        "records": records["exported"], "records_withheld": records["withheld"],
        "activity_rows": activity["exported"], "activity_rows_withheld": activity["withheld"],
        "withheld_by_reason": {e["reason"]: e["people"] for e in report["withheld"] if e["scope"] == "person"},
    }


def check_reconciles(person_map: pl.DataFrame, nodes: pl.DataFrame) -> None:
    """Every node must have a person; fail loudly otherwise."""
    missing = nodes.join(person_map, on="record_token", how="anti").height
    if missing:
        raise DataQualityError(f"{missing} records have no person in the registry")
