"""The export stage, run at the hub: registry + nodes payload + activity → one dataset per recipient and purpose.

Each recipient sees its own keyed ``person_id`` (HMAC under a key derived from the hub's export key for that
recipient), so two recipients cannot join their extracts; the hub can map between them through the registry
(:func:`pseudonym_map`).

An export folder holds ``person.parquet``, ``activity/<source>.parquet`` (one file per source, sorted by person and
date), ``record_map.parquet`` where the purpose allows it, disclosure-controlled ``summary/*.parquet``, the data
dictionary, the export report and ``manifest.json``. Every table is validated before anything is written, and the
folder is built aside and renamed into place (``publish.staged_folder``), so a failure never leaves half an export.

:func:`export_all` makes every export of a run and computes what they share (the people table, each activity row's
person) once; :func:`export` makes one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandera.errors
import polars as pl

from carelink import __version__
from carelink.config import ExportConfig
from carelink.errors import ConfigError, DataQualityError
from carelink.export.consent import PURPOSES, TYPE1_RULE, PurposeRules, resolution_texts, withheld_reason
from carelink.export.people import NODE_COLUMNS, people_table
from carelink.export.pseudonyms import RANK, RecipientIdStore, keyed_ids, pseudonym_map, recipient_pseudonyms
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
from carelink.pseudonymise.reversible import SUFFIX as SEALED
from carelink.tables import write_json, write_parquet_files, write_text

__all__ = ["ExportInputs", "ExportResult", "RecipientIdStore", "check_reconciles", "export", "export_all",
           "export_inputs", "node_column_needed", "pseudonym_map", "recipient_pseudonyms", "verify_export"]
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
    #: People by how many sources hold them, over everyone the hub linked (before any purpose withholds anyone).
    people_by_source_count: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportInputs:
    """What every export of a run starts from, whatever its purpose and recipient (``export_inputs``)."""

    person_map: pl.DataFrame
    sealed: pl.DataFrame  # record_token and any sealed identifiers of every node
    people: pl.DataFrame  # people_table: one row per person, consent resolved, nobody withheld yet
    activity: pl.DataFrame  # every activity row received, with its registry person_id (null: not in the registry)
    sources: list[str]
    type1_sources: frozenset[str]
    consent_resolution: Mapping[str, str] | None
    people_by_source_count: dict[int, int]  # of ``people``, for every export's result


def node_column_needed(name: str) -> bool:
    """Whether the export reads this node column (payload, consent and sealed identifiers; ``record_token``)."""
    return name == "record_token" or name in NODE_COLUMNS or name.endswith(SEALED)


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


def _activity_rows(activity: dict[str, pl.DataFrame], person_map: pl.DataFrame) -> pl.DataFrame:
    """Every activity row received (source from its delivery), with its registry ``person_id``."""
    frames = [rows.select("record_token", pl.lit(source).alias("source"), "activity_date", "activity_type")
              for source, rows in sorted(activity.items())]
    rows = pl.concat(frames) if frames else pl.DataFrame(schema=_ACTIVITY_SCHEMA)
    return rows.join(person_map.select("record_token", "person_id"), on="record_token", how="left")


def _activity_outcomes(rows: pl.DataFrame, people: pl.DataFrame, ids: pl.DataFrame, rules: PurposeRules,
                       type1_sources: frozenset[str]) -> pl.DataFrame:
    """Every activity row received, with its registry person, why it is withheld (null: exported) and, where the
    person is exported, the recipient's ``recipient_id`` and its ``RANK``."""
    persons = people.select("person_id", "withheld_reason", "type1_opt_out").join(ids, on="person_id", how="left")
    joined = rows.join(persons, on="person_id", how="left")
    type1 = pl.lit(False)
    if getattr(rules, TYPE1_RULE.flag):
        type1 = TYPE1_RULE.condition & pl.col("source").is_in(sorted(type1_sources))
    reason = (pl.when(pl.col("person_id").is_null()).then(pl.lit(UNLINKED))
              .when(pl.col("withheld_reason").is_not_null()).then(pl.col("withheld_reason"))
              .when(type1).then(pl.lit(TYPE1_RULE.reason))
              .otherwise(pl.lit(None, dtype=pl.String)))
    return joined.with_columns(reason.alias("withheld_reason")).drop("type1_opt_out")


def _record_map(person_map: pl.DataFrame, nodes: pl.DataFrame) -> pl.DataFrame:
    """The registry with each record's sealed identifiers (no sealed column: the registry as it is, record tokens
    being unique among nodes)."""
    sealed = [c for c in nodes.columns if c.endswith(SEALED)]
    if not sealed:
        return person_map
    return person_map.join(nodes.select("record_token", *sealed), on="record_token", how="left")


def _rekey(frame: pl.DataFrame, ids: pl.DataFrame) -> pl.DataFrame:
    """Replace registry ``person_id`` by the recipient's (rows of people not in ``ids`` drop out)."""
    return frame.join(ids, on="person_id").drop("person_id").rename({"recipient_id": "person_id"})


def _tables(rules: PurposeRules, people: pl.DataFrame, record_map: pl.DataFrame | None, outcomes: pl.DataFrame,
            sources: list[str], ids: pl.DataFrame) -> tuple[dict[str, pl.DataFrame], dict[str, ProtectedTable]]:
    """Every table of the export by its path in the folder, and the summary tables with their suppression counts.

    ``ids`` comes from ``pseudonyms.keyed_ids``: tables sort by the recipient's ``person_id`` through its ``RANK``.
    ``record_map`` (the registry with any sealed columns) is needed only where the purpose receives the record map.
    """
    included = people.filter(pl.col("withheld_reason").is_null())
    person = (ids.sort(RANK).join(included, on="person_id", maintain_order="left")
              .drop("person_id").rename({"recipient_id": "person_id"}).select(list(PersonExport.to_schema().columns)))
    activity_columns = list(ActivityExport.to_schema().columns)
    exported = outcomes.filter(pl.col("withheld_reason").is_null()).select(
        pl.col("recipient_id").alias("person_id"), *activity_columns[1:], RANK)
    by_source = exported.partition_by("source", as_dict=True)
    tables = {"person.parquet": person}
    for source in sources:
        rows = by_source.get((source,), exported.clear())
        tables[f"activity/{source}.parquet"] = rows.sort(RANK, "activity_date", "activity_type").select(activity_columns)
    if rules.record_map and record_map is not None:
        sealed = [c for c in record_map.columns if c.endswith(SEALED) and record_map[c].is_not_null().any()]
        records = _rekey(record_map.select("person_id", "source", "record_token", *sealed), ids)
        columns = [c for c in RecordMapExport.to_schema().columns if c in records.columns]
        tables["record_map.parquet"] = records.sort(RANK, "source", "record_token").select(columns)
    exported = exported.drop(RANK)
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
        person_map, nodes, activity, edges, type1_sources, consent_resolution: As for :func:`export_inputs`.
        export_key: The hub's export key, from which the recipient's key is derived.
        provenance: Written into the manifest and every table's metadata (partnership, key IDs, model hash).
        purposes: The purposes an export may name (shipped and the partnership's own).
    """
    rules = purpose_rules(export, purposes)
    inputs = export_inputs(person_map, nodes, activity, edges, type1_sources, consent_resolution)
    return _export_one(export, rules, out_folder, inputs, export_key, provenance)


def export_all(exports: Sequence[ExportConfig], out_folder: Path, inputs: ExportInputs, *, export_key: Key,
               provenance: dict, purposes: Mapping[str, PurposeRules] = PURPOSES,
               progress: Callable[[Iterable[ExportConfig]], Iterable[ExportConfig]] = iter,
               id_store: RecipientIdStore | None = None) -> list[ExportResult]:
    """Every export of a run, each as :func:`export` makes it (the same bytes), from the ``inputs`` they share.

    Every export's purpose is checked before anything is written. Arguments as for :func:`export`; ``progress``
    wraps the exports as they are made (a progress bar); ``id_store`` keeps recipients' IDs between runs, so only
    people new to a recipient cost an HMAC.

    Raises:
        ConfigError: If an export names an unknown purpose, or a legal basis its purpose does not accept.
    """
    rules = {target: purpose_rules(target, purposes) for target in exports}
    return [_export_one(target, rules[target], out_folder, inputs, export_key, provenance, id_store)
            for target in progress(exports)]


def export_inputs(person_map: pl.DataFrame, nodes: pl.DataFrame, activity: dict[str, pl.DataFrame],
                  edges: pl.DataFrame, type1_sources: frozenset[str] = frozenset(),
                  consent_resolution: Mapping[str, str] | None = None) -> ExportInputs:
    """What every export of a run starts from, computed once. It keeps only what the exports read, so the
    caller that lets go of its frames frees the edges, the activity as delivered and the nodes' payload (about
    4 GB at ten million records).

    Args:
        person_map: The registry's record → person map (``record_token``, ``person_id``, ``source``).
        nodes: Every source's pseudonymised records (payload and consent columns, any sealed identifiers).
        activity: Activity rows per source (``record_token``, ``activity_date``, ``activity_type``).
        edges: Scored pairs (``record_token_l``, ``record_token_r``, ``match_probability``), for each person's
            link quality.
        type1_sources: Sources that record GP Type 1 objections; a Type 1 objection withholds their activity for
            purposes that honour it.
        consent_resolution: How opt-outs resolve (``consent.DEFAULT_RESOLUTION`` where not given).
    """
    people = people_table(person_map, nodes, edges, consent_resolution)
    by_sources = dict(people.group_by("source_count").len().sort("source_count").iter_rows())
    sealed = nodes.select("record_token", *(c for c in nodes.columns if c.endswith(SEALED)))
    return ExportInputs(person_map=person_map, sealed=sealed, people=people,
                        activity=_activity_rows(activity, person_map), sources=sorted(activity),
                        type1_sources=type1_sources, consent_resolution=consent_resolution,
                        people_by_source_count=by_sources)


def _export_one(export: ExportConfig, rules: PurposeRules, out_folder: Path, shared: ExportInputs, export_key: Key,
                provenance: dict, id_store: RecipientIdStore | None = None) -> ExportResult:
    """Build, validate and publish one export from the shared inputs."""
    where = f"{export.recipient}/{export.purpose}"
    people = shared.people.with_columns(withheld_reason(rules))
    ids = keyed_ids(people.filter(pl.col("withheld_reason").is_null())["person_id"], export_key, export.recipient,
                    id_store)
    outcomes = _activity_outcomes(shared.activity, people, ids, rules, shared.type1_sources)
    record_map = _record_map(shared.person_map, shared.sealed) if rules.record_map else None
    tables, summaries = _tables(rules, people, record_map, outcomes, shared.sources, ids)
    _validate(tables, where)
    report = export_report(resolution=resolution_texts(shared.consent_resolution),
                           recipient=export.recipient, legal_basis=export.legal_basis, rules=rules, people=people,
                           activity=outcomes, summaries=summaries)
    meta = {"schema_version": SCHEMA_VERSION, "recipient": export.recipient, "purpose": export.purpose,
            "legal_basis": export.legal_basis, "export_key_id": export_key.key_id, **provenance}
    dictionary = data_dictionary(rules)
    target = out_folder / export.recipient / export.purpose
    with staged_folder(target) as folder:
        write_parquet_files((frame, folder / name, meta) for name, frame in tables.items())
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
                        counts["activity_rows"], target, shared.people_by_source_count)


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
