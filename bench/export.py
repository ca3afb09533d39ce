"""Export speed: seconds per export and peak memory of the export stage over a finished run.

Usage: ``python bench/export.py RUN_FOLDER CONFIG [--out FOLDER] [--profile FILE] [--export-all]``, e.g.
``python bench/export.py /tmp/scale1m/records_1000000/workspace/runs/<run_id> /tmp/scale1m/records_1000000/data/pipeline.yaml``.

Does what ``carelink.pipeline.run_export`` does (load person map, edges, nodes and activity; check reconciliation;
one ``export`` per configured export) but writes into ``--out`` (default: a temporary folder) instead of the run.
CPU seconds (all threads of the process) are printed beside wall seconds: they say more on a busy machine.
The export key comes from the run's workspace (``RUN_FOLDER/../..``, or ``--workspace``). ``--profile FILE`` runs
it under cProfile, saves the profile and prints the top 25 functions by cumulative time. ``--export-all`` makes the
exports through ``export_all``, which does the work they share once.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import carelink  # noqa: E402, F401  (before polars: carelink.ALLOCATOR_SETTINGS apply only then)

# isort: split
import polars as pl  # noqa: E402

from bench.common import peak_rss_mb, reset_peak_rss, rss_mb  # noqa: E402
from carelink.config import load_config  # noqa: E402
from carelink.export.stage import check_reconciles, export, export_all, node_column_needed  # noqa: E402
from carelink.link.stage import load_nodes  # noqa: E402
from carelink.tables import read_parquet_metadata  # noqa: E402
from carelink.workspace import Run, Workspace  # noqa: E402


def run_exports(run_folder: Path, config_path: Path, out: Path, workspace: Path, shared: bool = False) -> None:
    """Load the run's inputs as ``run_export`` does, then time each export into ``out`` (or all of them through
    ``export_all`` where ``shared``); print the figures."""
    config = load_config(config_path)
    run = Run(run_folder.name, run_folder)
    reset_peak_rss()
    started, cpu_started = time.perf_counter(), time.process_time()
    export_key = Workspace(workspace).resolve_key(config, "export")
    person_map = pl.read_parquet(run.link / "person_map.parquet")
    edges = pl.read_parquet(run.link / "edges.parquet")
    nodes, _ = load_nodes([run.pseudonymise / s.name for s in config.sources], columns=node_column_needed)
    check_reconciles(person_map, nodes)
    activity = {s.name: pl.read_parquet(run.pseudonymise / s.name / "activity.parquet") for s in config.sources}
    type1_sources = frozenset(s.name for s in config.sources if "type1_opt_out" in s.table.columns)
    link_meta = read_parquet_metadata(run.link / "edges.parquet")
    provenance = {"partnership": config.partnership, "linkage_key_id": link_meta.get("linkage_key_id"),
                  "model_sha256": link_meta.get("model_sha256")}
    purposes = config.purpose_profiles()
    loaded, cpu_loaded = time.perf_counter(), time.process_time()
    print(f"load: {loaded - started:.2f} s, {cpu_loaded - cpu_started:.2f} s CPU ({person_map.height:,} records, "
          f"{edges.height:,} edges, {sum(a.height for a in activity.values()):,} activity rows); RSS {rss_mb():,.0f} MB")
    inputs = {"person_map": person_map, "nodes": nodes, "activity": activity, "edges": edges, "export_key": export_key,
              "provenance": provenance, "type1_sources": type1_sources, "purposes": purposes,
              "consent_resolution": config.consent_resolution}
    if shared:
        for result in export_all(config.exports, out, **inputs):
            print(f"export {result.recipient}/{result.purpose}: {result.people:,} people, "
                  f"{result.activity_rows:,} activity rows")
    else:
        for target in config.exports:
            begun, cpu_begun = time.perf_counter(), time.process_time()
            result = export(target, out, **inputs)
            print(f"export {target.recipient}/{target.purpose}: {time.perf_counter() - begun:.2f} s, "
                  f"{time.process_time() - cpu_begun:.2f} s CPU ({result.people:,} people, "
                  f"{result.activity_rows:,} activity rows)")
    finished, cpu_finished = time.perf_counter(), time.process_time()
    print(f"exports: {finished - loaded:.2f} s ({cpu_finished - cpu_loaded:.2f} s CPU); stage total (load + exports): "
          f"{finished - started:.2f} s ({cpu_finished - cpu_started:.2f} s CPU); peak RSS {peak_rss_mb():,.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_folder", type=Path, help="a finished run: WORKSPACE/runs/<run_id>")
    parser.add_argument("config", type=Path, help="the pipeline file the run was made with")
    parser.add_argument("--workspace", type=Path, help="the workspace holding the keys (default: RUN_FOLDER/../..)")
    parser.add_argument("--out", type=Path, help="write the exports here (default: a temporary folder, removed)")
    parser.add_argument("--profile", type=Path, metavar="FILE", help="profile with cProfile into FILE")
    parser.add_argument("--export-all", action="store_true",
                        help="make the exports with export_all (shared work done once) instead of one export() each")
    args = parser.parse_args()
    run_folder = args.run_folder.resolve()
    workspace = args.workspace or run_folder.parent.parent
    with tempfile.TemporaryDirectory(prefix="carelink-export-bench-") as tmp:
        out = args.out or Path(tmp)
        if args.profile is None:
            run_exports(run_folder, args.config, out, workspace, args.export_all)
            return
        profiler = cProfile.Profile()
        profiler.runcall(run_exports, run_folder, args.config, out, workspace, args.export_all)
        profiler.dump_stats(args.profile)
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
