"""Export speed: seconds per export and peak memory of the export stage over a finished run.

Usage: ``python bench/export.py RUN_FOLDER CONFIG [--out FOLDER] [--profile FILE]``, e.g.
``python bench/export.py /tmp/scale1m/records_1000000/workspace/runs/<run_id> /tmp/scale1m/records_1000000/data/pipeline.yaml``.

Does what ``carelink.pipeline.run_export`` does (``read_export_inputs``: person map, edges, nodes and activity read,
reconciliation checked, the work every export shares done once; then each configured export) but writes into
``--out`` (default: a temporary folder) instead of the run.
CPU seconds (all threads of the process) are printed beside wall seconds: they say more on a busy machine.
The export key comes from the run's workspace (``RUN_FOLDER/../..``, or ``--workspace``). ``--profile FILE`` runs
it under cProfile, saves the profile and prints the top 25 functions by cumulative time.
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
from bench.common import peak_rss_mb, reset_peak_rss, rss_mb  # noqa: E402
from carelink.config import load_config  # noqa: E402
from carelink.export.stage import export_all  # noqa: E402
from carelink.pipeline import export_provenance, read_export_inputs  # noqa: E402
from carelink.workspace import Run, Workspace  # noqa: E402


def run_exports(run_folder: Path, config_path: Path, out: Path, workspace: Path) -> None:
    """Load the run's inputs as ``run_export`` does, then time each export into ``out``; print the figures."""
    config = load_config(config_path)
    run = Run(run_folder.name, run_folder)
    reset_peak_rss()
    started, cpu_started = time.perf_counter(), time.process_time()
    export_key = Workspace(workspace).resolve_key(config, "export")
    inputs = read_export_inputs(config, run)
    provenance = export_provenance(config, run)
    loaded, cpu_loaded = time.perf_counter(), time.process_time()
    print(f"load and shared work: {loaded - started:.2f} s, {cpu_loaded - cpu_started:.2f} s CPU "
          f"({inputs.person_map.height:,} records, {inputs.people.height:,} people, "
          f"{inputs.activity.height:,} activity rows); RSS {rss_mb():,.0f} MB")
    for target in config.exports:
        begun, cpu_begun = time.perf_counter(), time.process_time()
        [result] = export_all([target], out, inputs, export_key=export_key, provenance=provenance,
                              purposes=config.purpose_profiles())
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
    args = parser.parse_args()
    run_folder = args.run_folder.resolve()
    workspace = args.workspace or run_folder.parent.parent
    with tempfile.TemporaryDirectory(prefix="carelink-export-bench-") as tmp:
        out = args.out or Path(tmp)
        if args.profile is None:
            run_exports(run_folder, args.config, out, workspace)
            return
        profiler = cProfile.Profile()
        profiler.runcall(run_exports, run_folder, args.config, out, workspace)
        profiler.dump_stats(args.profile)
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
