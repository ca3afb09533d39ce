"""Constrained clustering: the plain union-find over every edge against the component-first ``cluster``.

Usage: ``python bench/cluster.py [--run RUN_FOLDER | --records N] [--threshold P] [--repeat N]``. Without ``--run``
it generates a partnership of about ``--records`` records (default 1,000,000) and runs carelink over it. Loads that run's nodes
(``stage.load_nodes``) and edges, times the plain algorithm (``_reference_cluster`` in
``tests/link/test_clustering.py``, the code before the change) and ``carelink.link.clustering.cluster`` (best of
``--repeat`` runs each), and prints seconds and whether clusters and ClusterStats are identical.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import carelink  # noqa: E402, F401  (before polars: carelink.ALLOCATOR_SETTINGS apply only then)

# isort: split
import polars as pl  # noqa: E402

from carelink.link.clustering import cluster  # noqa: E402
from carelink.link.stage import load_nodes  # noqa: E402


def _reference():
    spec = importlib.util.spec_from_file_location("_clustering_reference", ROOT / "tests" / "link" / "test_clustering.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._reference_cluster


def _generated_run(records: int, folder: Path) -> Path:
    from carelink.config import load_config
    from carelink.pipeline import run_all
    from carelink.synth import generate_partnership
    from carelink.workspace import Workspace

    generate_partnership(folder / "data", people=round(records / 2.47), seed=1)
    return run_all(load_config(folder / "data" / "pipeline.yaml"), Workspace(folder / "workspace")).run.folder


def _timed(function, nodes: pl.DataFrame, edges: pl.DataFrame, threshold: float, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        result = None
        gc.collect()
        start = time.perf_counter()
        result = function(nodes, edges, threshold)
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run folder holding pseudonymise/ and link/edges.parquet")
    parser.add_argument("--records", type=int, default=1_000_000, help="records to generate when no --run is given")
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--repeat", type=int, default=1, help="time each this many times, report the best")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure(args.run or _generated_run(args.records, Path(tmp)), args.threshold, args.repeat)


def measure(run: Path, threshold: float, repeat: int) -> None:
    """Time both algorithms on one run's nodes and edges and print the figures."""
    nodes, _ = load_nodes(sorted((run / "pseudonymise").iterdir()))
    edges = pl.read_parquet(run / "link" / "edges.parquet")
    print(f"run {run}: {nodes.height:,} records, {edges.height:,} edges, threshold {threshold}")
    old_seconds, (old_clusters, old_stats) = _timed(_reference(), nodes, edges, threshold, repeat)
    new_seconds, (new_clusters, new_stats) = _timed(cluster, nodes, edges, threshold, repeat)
    print(f"old (plain union-find over every edge): {old_seconds:7.2f} s")
    print(f"new (components first, greedy loop where needed): {new_seconds:7.2f} s")
    print(f"speed-up: {old_seconds / new_seconds:.1f}x")
    print(f"clusters identical: {new_clusters.equals(old_clusters)}")
    print(f"stats identical: {new_stats == old_stats}  {new_stats}")


if __name__ == "__main__":
    main()
