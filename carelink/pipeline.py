"""Run the stages in order over one workspace: the library behind ``carelink run`` and the single-stage commands."""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from tqdm import tqdm

from carelink import __version__
from carelink.config import PipelineConfig
from carelink.errors import DataQualityError
from carelink.export.stage import (
    ExportInputs,
    ExportResult,
    RecipientIdStore,
    check_reconciles,
    export_all,
    export_inputs,
    node_column_needed,
)
from carelink.ingest.stage import IngestResult, ingest_source
from carelink.keys import Key
from carelink.link.stage import LinkResult, link, load_nodes
from carelink.parallel import for_each_source
from carelink.pseudonymise.carry import PreviousDelivery
from carelink.pseudonymise.stage import PseudonymiseResult, pseudonymise_source
from carelink.tables import file_sha256, read_parquet_metadata, write_json
from carelink.workspace import Run, Workspace

log = logging.getLogger(__name__)
STAGES = ("ingest", "pseudonymise", "link", "export")


@dataclass
class RunReport:
    """Everything a run did, for the summary and the manifest."""

    run: Run
    ingest: list[IngestResult] = field(default_factory=list)
    pseudonymise: list[PseudonymiseResult] = field(default_factory=list)
    link: LinkResult | None = None
    exports: list[ExportResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    people_by_source_count: dict[int, int] = field(default_factory=dict)


def _progress(items: list, description: str) -> Any:
    """A progress bar on a terminal; nothing in batch logs."""
    import sys

    return tqdm(items, desc=description, unit="source", disable=not sys.stderr.isatty(), leave=False)


def run_ingest(config: PipelineConfig, run: Run, workspace: Workspace, report: RunReport, *,
               full: bool = False) -> None:
    """Ingest every source, carrying unchanged rows' standardised values forward from the current run unless
    ``full``."""
    sizes = [s.table.path.stat().st_size // BYTES_PER_ROW if s.table.path.is_file() else 0 for s in config.sources]
    current = None if full else workspace.current_run()
    tasks = [(source, run.ingest, config.reference_date, current.ingest / source.name if current else None)
             for source in config.sources]
    report.ingest.extend(for_each_source(ingest_source, tasks, "ingest", sizes, INGEST_BYTES_PER_RECORD))


#: A rough size of one extract row, to tell a source's records from its file size.
BYTES_PER_ROW = 120
#: Peak memory per record of a source, measured (ingest ~300 B, pseudonymise 4.3 kB at 3.9M records), with room.
INGEST_BYTES_PER_RECORD = 1_000
PSEUDONYMISE_BYTES_PER_RECORD = 5_000


def run_pseudonymise(config: PipelineConfig, run: Run, workspace: Workspace, report: RunReport, *,
                     full: bool = False) -> None:
    """Pseudonymise every source, carrying unchanged records forward from the current run unless ``full``."""
    # Opened once here (and created, if the workspace makes its own, before any worker reads it); each worker
    # process opens it once for all its sources. Forgotten when the stage ends.
    _linkage_keys[workspace.root] = workspace.resolve_key(config, "linkage")
    try:
        standardised = [run.ingest / s.name / "standardised.parquet" for s in config.sources]
        sizes = [pq.read_metadata(path).num_rows if path.is_file() else 0 for path in standardised]
        current = None if full else workspace.current_run()
        tasks = [(config, workspace.root, run, source.name, current) for source in config.sources]
        report.pseudonymise.extend(for_each_source(pseudonymise_configured, tasks, "pseudonymise", sizes,
                                                   PSEUDONYMISE_BYTES_PER_RECORD))
    finally:
        _linkage_keys.pop(workspace.root, None)


#: The linkage key opened in this process, by workspace, while a pseudonymise stage runs (scrypt costs ~0.2 s).
_linkage_keys: dict[Path, Key] = {}


def pseudonymise_configured(config: PipelineConfig, workspace_root: Path, run: Run, name: str,
                            previous: Run | None = None) -> PseudonymiseResult:
    """Pseudonymise the configured source ``name`` of ``run`` with the workspace's linkage key (opened in this
    process the first time it is needed), carrying unchanged records forward from the ``previous`` run."""
    source = next(s for s in config.sources if s.name == name)
    if workspace_root not in _linkage_keys:
        _linkage_keys[workspace_root] = Workspace(workspace_root).resolve_key(config, "linkage")
    return pseudonymise_source(
        run.ingest / name, run.pseudonymise / name, _linkage_keys[workspace_root],
        partnership=config.partnership, source_kind=source.kind, reference_date=config.reference_date,
        config_sha256=config.digest(), reversible=source.reversible, bloom_hardening=config.linkage.bloom_hardening,
        previous=PreviousDelivery.of(previous.ingest / name, previous.pseudonymise / name) if previous else None)


def run_link(config: PipelineConfig, run: Run, workspace: Workspace, report: RunReport, *, retrain: bool = False,
             full: bool = False) -> None:
    folders = [run.pseudonymise / source.name for source in config.sources]
    current = workspace.current_run()
    report.link = link(folders, run.link, workspace.state, config.linkage, run_id=run.run_id, retrain=retrain,
                       previous=current.link if current else None, incremental=not full,
                       config_digest=config.digest())


def run_export(config: PipelineConfig, run: Run, workspace: Workspace, report: RunReport) -> None:
    export_key = workspace.resolve_key(config, "export")
    report.exports.extend(export_all(config.exports, run.export, read_export_inputs(config, run), export_key=export_key,
                                     provenance=export_provenance(config, run), purposes=config.purpose_profiles(),
                                     progress=lambda targets: _progress(list(targets), "export"),
                                     id_store=RecipientIdStore(workspace.state / "recipient_ids")))
    if report.exports:  # counted from the people table every export starts from
        report.people_by_source_count = report.exports[0].people_by_source_count
    else:
        person_map = pl.read_parquet(run.link / "person_map.parquet", columns=["person_id", "source"])
        sources_per_person = person_map.group_by("person_id").agg(pl.col("source").n_unique().alias("n"))
        report.people_by_source_count = dict(sorted(sources_per_person.group_by("n").len().iter_rows()))


def read_export_inputs(config: PipelineConfig, run: Run) -> ExportInputs:
    """The run's registry, nodes, activity and edges made into what the exports share; the frames read here are let
    go when it returns, keeping only what the exports need."""
    person_map = pl.read_parquet(run.link / "person_map.parquet")
    nodes, _ = load_nodes([run.pseudonymise / s.name for s in config.sources],  # verified against manifests
                          columns=node_column_needed)
    check_reconciles(person_map, nodes)
    return export_inputs(
        person_map, nodes,
        activity={s.name: pl.read_parquet(run.pseudonymise / s.name / "activity.parquet") for s in config.sources},
        edges=pl.read_parquet(run.link / "edges.parquet", columns=EDGE_COLUMNS_EXPORTED_FROM),
        type1_sources=frozenset(s.name for s in config.sources if "type1_opt_out" in s.table.columns),
        consent_resolution=config.consent_resolution)


def export_provenance(config: PipelineConfig, run: Run) -> dict[str, Any]:
    """What every exported table and manifest says it was made from: partnership, linkage key ID, model hash."""
    link_meta = read_parquet_metadata(run.link / "edges.parquet")
    return {"partnership": config.partnership, "linkage_key_id": link_meta.get("linkage_key_id"),
            "model_sha256": link_meta.get("model_sha256")}


#: The edge columns the export reads (each person's link quality), of the fourteen the link stage writes.
EDGE_COLUMNS_EXPORTED_FROM = ["record_token_l", "record_token_r", "match_probability"]


def run_stage(stage: str, config: PipelineConfig, workspace: Workspace, run: Run, report: RunReport,
              *, retrain: bool = False, full: bool = False) -> None:
    """Run one stage inside ``run`` and record its time."""
    started = time.perf_counter()
    if stage == "ingest":
        run_ingest(config, run, workspace, report, full=full)
    elif stage == "pseudonymise":
        run_pseudonymise(config, run, workspace, report, full=full)
    elif stage == "link":
        run_link(config, run, workspace, report, retrain=retrain, full=full)
    elif stage == "export":
        run_export(config, run, workspace, report)
    report.timings[stage] = round(time.perf_counter() - started, 3)


def run_all(config: PipelineConfig, workspace: Workspace, *, retrain: bool = False, full: bool = False) -> RunReport:
    """Every stage in a new run; the run becomes current only when all of them passed.

    Linking is incremental against the current run unless ``full`` (or a new model) asks for a full rescoring.
    """
    with workspace.lock():
        run = workspace.new_run()
        report = RunReport(run)
        status = "failed"
        try:
            for stage in STAGES:
                run_stage(stage, config, workspace, run, report, retrain=retrain, full=full)
            audit(report)
            status = "succeeded"
        finally:
            write_manifest(config, report, status)
        workspace.publish(run)
        return report


def audit(report: RunReport) -> None:
    """Checks that must hold before a run is published."""
    for result in report.ingest:
        for counts in (result.records, result.activity):
            if counts is not None and not counts.reconciles():
                raise DataQualityError(f"{result.source}: rows do not reconcile")
    if not all(p.leak_scan_passed for p in report.pseudonymise):
        raise DataQualityError("a leak scan failed")
    if report.link is None or report.link.records != sum(r.records.rows_standardised for r in report.ingest):
        raise DataQualityError("link did not see every standardised record")


def write_manifest(config: PipelineConfig, report: RunReport, status: str) -> Path:
    """The run manifest: resolved config, versions, input checksums, key IDs, counts, timings, status."""
    import splink

    inputs = {}
    for source in config.sources:
        for spec in (source.table, source.activity):
            if spec is not None and spec.path.is_file():
                inputs[str(spec.path.relative_to(config.folder))] = file_sha256(spec.path)
    link = report.link
    manifest = {
        "run_id": report.run.run_id,
        "status": status,
        "carelink_version": __version__,
        "splink_version": splink.__version__,
        "python": platform.python_version(),
        "config": config.to_dict(),
        "config_sha256": config.digest(),
        "inputs_sha256": inputs,
        "linkage_key_id": link.linkage_key_id if link else None,
        "model_sha256": file_sha256(link.model_path) if link and link.model_path.is_file() else None,
        "counts": summary_counts(report),
        "timings_seconds": report.timings,
    }
    return write_json(manifest, report.run.folder / "manifest.json")


def summary_counts(report: RunReport) -> dict[str, Any]:
    """Counts per stage, as printed in the summary and stored in the manifest."""
    carried = {r.source: r.records_carried for r in report.pseudonymise}
    return {
        "sources": {r.source: {"rows_in": r.records.rows_in, "standardised": r.records.rows_standardised,
                               "quarantined": r.records.rows_quarantined, "carried_by_ingest": r.records_carried,
                               "carried_by_pseudonymise": carried.get(r.source, 0)} for r in report.ingest},
        "records_linked": report.link.records if report.link else None,
        "edges": report.link.edges if report.link else None,
        "people": report.link.people if report.link else None,
        "model_trained": report.link.trained if report.link else None,
        "clustering": asdict(report.link.cluster_stats) if report.link and report.link.cluster_stats else None,
        "people_by_source_count": {str(k): v for k, v in report.people_by_source_count.items()},
        "exports": {f"{e.recipient}/{e.purpose}": {"people": e.people, "withheld": e.people_withheld,
                                                  "activity_rows": e.activity_rows} for e in report.exports},
    }
