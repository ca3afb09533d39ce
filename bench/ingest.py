"""Ingest speed (issue 7): records per second and peak memory of ``carelink.ingest.stage.ingest_source``.

Usage: ``python bench/ingest.py [--records N] [--seed S] [--data DIR] [--profile FILE]`` (default 1,000,000 records;
a partnership has about 2.47 records per person). It generates a partnership into ``DIR`` (a temporary folder when
``--data`` is not given; an existing ``DIR`` holding a ``pipeline.yaml`` is reused, so repeated runs skip the
generation), then ingests every source of its ``pipeline.yaml`` in turn, timing each, and prints per-source rows in,
seconds and rows per second, the total records per second and the process's peak RSS. ``--profile FILE`` writes a
cProfile of the ingest to ``FILE`` and prints its top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import peak_rss_mb, reset_peak_rss, rss_mb  # noqa: E402

from carelink.config import load_config  # noqa: E402
from carelink.ingest.stage import IngestResult, ingest_source  # noqa: E402
from carelink.synth import generate_partnership  # noqa: E402

RECORDS_PER_PERSON = 2.47


def generate(folder: Path, records: int, seed: int) -> Path:
    """``folder/pipeline.yaml``, generating a partnership of about ``records`` records first if it is not there."""
    config = folder / "pipeline.yaml"
    if config.is_file():
        print(f"reusing {folder}")
        return config
    started = time.perf_counter()
    summary = generate_partnership(folder, people=max(1, round(records / RECORDS_PER_PERSON)), seed=seed)
    print(f"generated {sum(summary.records_per_source.values()):,} records in {time.perf_counter() - started:.1f}s")
    return config


def ingest_all(config_path: Path, out_dir: Path) -> tuple[list[tuple[IngestResult, float]], float]:
    """Ingest every source of the pipeline; each result with its seconds, and the total seconds."""
    config = load_config(config_path)
    results = []
    started = time.perf_counter()
    for source in config.sources:
        began = time.perf_counter()
        result = ingest_source(source, out_dir, config.reference_date)
        results.append((result, time.perf_counter() - began))
    return results, time.perf_counter() - started


def report(results: list[tuple[IngestResult, float]], total: float, peak: float, start: float) -> None:
    print(f"{'source':<14}{'records':>11}{'activity':>11}{'quarantined':>13}{'seconds':>9}{'rows/s':>11}")
    for result, seconds in results:
        activity = result.activity.rows_in if result.activity else 0
        quarantined = result.records.rows_quarantined + (result.activity.rows_quarantined if result.activity else 0)
        rows = result.records.rows_in + activity
        print(f"{result.source:<14}{result.records.rows_in:>11,}{activity:>11,}{quarantined:>13,}{seconds:>9.1f}"
              f"{rows / seconds:>11,.0f}")
    records = sum(r.records.rows_in for r, _ in results)
    activity = sum(r.activity.rows_in for r, _ in results if r.activity)
    print(f"total: {records:,} records (+ {activity:,} activity rows) in {total:.1f}s: "
          f"{records / total:,.0f} records/s, {(records + activity) / total:,.0f} rows/s; "
          f"RSS at start {start:,.0f} MB, peak {peak:,.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", type=Path, help="folder for the generated partnership (reused when present)")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the ingest here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="carelink-bench-ingest-") as tmp:
        config = generate(args.data or Path(tmp) / "data", args.records, args.seed)
        start = rss_mb()
        reset_peak_rss()
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        results, total = ingest_all(config, Path(tmp) / "out")
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        peak = peak_rss_mb()
        report(results, total, peak, start)
        if profiler:
            pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
