"""The export stage, run at the hub: registry + nodes payload + activity → one dataset per recipient and purpose.

Each recipient sees its own keyed ``person_id`` (HMAC under a key derived from the hub's export key for that
recipient), so two recipients cannot join their extracts; the hub can map between them through the registry.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from carelink import __version__
from carelink.config import ExportConfig
from carelink.errors import DataQualityError
from carelink.export.consent import PURPOSES, resolve_consent, withheld_reasons
from carelink.export.schema import SCHEMA_VERSION, ActivityExport, PersonExport, data_dictionary
from carelink.keys import Key
from carelink.tables import file_sha256, read_parquet_metadata, write_json, write_parquet, write_text

log = logging.getLogger(__name__)


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


def _people(person_map: pl.DataFrame, nodes: pl.DataFrame, edges: pl.DataFrame) -> pl.DataFrame:
    records = person_map.select("record_token", "person_id").join(nodes, on="record_token", how="inner")
    consent = resolve_consent(records)
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


def export(export: ExportConfig, out_folder: Path, *, person_map: pl.DataFrame, nodes: pl.DataFrame,
           activity: dict[str, pl.DataFrame], edges: pl.DataFrame, export_key: Key, provenance: dict,
           type1_sources: frozenset[str] = frozenset()) -> ExportResult:
    """Build, validate and write one recipient's export for one purpose.

    ``type1_sources`` are the sources that record GP Type 1 objections (those mapping ``type1_opt_out``); a Type 1
    objection withholds their activity for purposes that honour it.
    """
    rules = PURPOSES[export.purpose]
    people = _people(person_map, nodes, edges)
    reasons = withheld_reasons(people, rules)
    included = people.join(reasons.filter(pl.col("withheld_reason").is_null()), on="person_id", how="semi")
    pseudonym = recipient_pseudonyms(included["person_id"], export_key, export.recipient)
    person_table = included.with_columns(pseudonym.alias("person_id")).select(list(PersonExport.to_schema().columns)).sort("person_id")
    PersonExport.validate(person_table)
    folder = out_folder / export.recipient / export.purpose
    files: dict[str, Path] = {}
    meta = {"schema_version": SCHEMA_VERSION, "recipient": export.recipient, "purpose": export.purpose,
            "export_key_id": export_key.key_id, **provenance}
    files["person.parquet"] = write_parquet(person_table, folder / "person.parquet", meta)
    record_people = person_map.select("record_token", "person_id").join(
        included.select("person_id", "type1_opt_out"), on="person_id")
    activity_rows = 0
    for source, rows in sorted(activity.items()):
        table = rows.join(record_people, on="record_token", how="inner")
        if rules.honours_type1 and source in type1_sources:
            table = table.filter(~pl.col("type1_opt_out"))
        table = table.with_columns(recipient_pseudonyms(table["person_id"], export_key, export.recipient).alias("person_id"))
        table = table.select(list(ActivityExport.to_schema().columns)).sort("person_id", "activity_date", "activity_type")
        ActivityExport.validate(table)
        files[f"activity/{source}.parquet"] = write_parquet(table, folder / "activity" / f"{source}.parquet", meta)
        activity_rows += table.height
    if rules.record_map:
        kept_records = person_map.join(included.select("person_id"), on="person_id", how="semi")
        record_map = kept_records.select(
            recipient_pseudonyms(kept_records["person_id"], export_key, export.recipient).alias("person_id"),
            "source", "record_token").sort("person_id", "source", "record_token")
        files["record_map.parquet"] = write_parquet(record_map, folder / "record_map.parquet", meta)
    withheld = reasons.filter(pl.col("withheld_reason").is_not_null())
    dictionary = data_dictionary(rules)
    files["data_dictionary.json"] = write_json(dictionary, folder / "data_dictionary.json")
    files["data_dictionary.md"] = write_text(_dictionary_markdown(dictionary), folder / "data_dictionary.md")
    manifest = {
        **meta,
        "carelink_version": __version__,
        "purpose_rules": rules.description,
        "counts": {"people": person_table.height, "people_withheld": withheld.height, "activity_rows": activity_rows,
                   "withheld_by_reason": dict(sorted(withheld.group_by("withheld_reason").len().iter_rows()))},
        "files": {name: {"sha256": file_sha256(path), "bytes": path.stat().st_size} for name, path in sorted(files.items())},
    }
    write_json(manifest, folder / "manifest.json")
    log.info("export %s/%s: %d people (%d withheld), %d activity rows", export.recipient, export.purpose,
             person_table.height, withheld.height, activity_rows)
    return ExportResult(export.recipient, export.purpose, person_table.height, withheld.height, activity_rows, folder)


def _dictionary_markdown(dictionary: dict) -> str:
    lines = [f"# Data dictionary — {dictionary['purpose']}", "", dictionary["rules"], ""]
    for table, columns in dictionary["tables"].items():
        lines += [f"## {table}", "", "| column | type | description |", "|---|---|---|"]
        lines += [f"| {c['name']} | {c['type']} | {c['description']} |" for c in columns]
        lines.append("")
    return "\n".join(lines)


def verify_export(folder: Path) -> list[str]:
    """Check an export folder against its manifest; return the problems found (empty when it verifies)."""
    from carelink.tables import read_json

    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return [f"{manifest_path}: missing"]
    manifest = read_json(manifest_path)
    problems = []
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif file_sha256(path) != expected["sha256"]:
            problems.append(f"{path}: checksum does not match the manifest")
    for name, model in (("person.parquet", PersonExport),):
        path = folder / name
        if path.is_file() and not problems:
            try:
                model.validate(pl.read_parquet(path))
            except Exception as exc:  # pandera raises several types
                problems.append(f"{path}: schema check failed: {str(exc).splitlines()[0]}")
    if not problems and read_parquet_metadata(folder / "person.parquet").get("recipient") != manifest["recipient"]:
        problems.append(f"{folder}: person.parquet belongs to another recipient")
    if problems:
        log.warning("verify %s: %d problems", folder, len(problems))
    return problems


def check_reconciles(person_map: pl.DataFrame, nodes: pl.DataFrame) -> None:
    """Every node must have a person; fail loudly otherwise."""
    missing = nodes.join(person_map, on="record_token", how="anti").height
    if missing:
        raise DataQualityError(f"{missing} records have no person in the registry")
