"""Pseudonymisation speed: records per second and peak memory for the default field set.

Usage: ``python bench/pseudonymise.py --records 1000000``. Generates a partnership of about that many records,
ingests it (not timed), then times pseudonymisation (tokens, Bloom filters, leak scan, risk, report) twice: source
after source in this process, and as ``carelink run`` runs the stage (sources in worker processes, see
``carelink.parallel``; worker start-up included).
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carelink import pipeline  # noqa: E402
from carelink.config import load_config  # noqa: E402
from carelink.ingest.stage import ingest_source  # noqa: E402
from carelink.keys import Key  # noqa: E402
from carelink.parallel import worker_count  # noqa: E402
from carelink.pseudonymise.stage import pseudonymise_source  # noqa: E402
from carelink.synth import generate_partnership  # noqa: E402
from carelink.workspace import Workspace  # noqa: E402

RECORDS_PER_PERSON = 2.47  # what carelink synth produces on average


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=250_000)
    args = parser.parse_args()
    key = Key.from_secret_for_tests("linkage", b"bench-linkage-key-0123456789abcd")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate_partnership(folder / "data", people=max(1, round(args.records / RECORDS_PER_PERSON)), seed=1)
        config = load_config(folder / "data" / "pipeline.yaml")
        for source in config.sources:
            ingest_source(source, folder / "ingest", config.reference_date)
        records = 0
        started, cpu_started = time.perf_counter(), time.process_time()
        for source in config.sources:
            result = pseudonymise_source(folder / "ingest" / source.name, folder / "out" / source.name, key,
                                         partnership="bench", source_kind=source.kind,
                                         reference_date=dt.date(2026, 11, 1))
            records += result.records
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"pseudonymise, source after source: {records:,} records in {elapsed:.1f} s wall ({cpu:.1f} s CPU): "
              f"{records / elapsed:,.0f} records/s; peak RSS of the process {peak_mb:,.0f} MB")
        workspace = Workspace(folder / "workspace")
        run = workspace.new_run()
        for source in config.sources:
            ingest_source(source, run.ingest, config.reference_date)
        report = pipeline.RunReport(run)
        started = time.perf_counter()
        pipeline.run_pseudonymise(config, run, workspace, report)
        elapsed = time.perf_counter() - started
        records = sum(result.records for result in report.pseudonymise)
        workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        count = worker_count([r.records for r in report.pseudonymise], pipeline.PSEUDONYMISE_BYTES_PER_RECORD)
        print(f"pseudonymise stage as carelink run runs it ({count} workers): {records:,} records in {elapsed:.1f} s wall: "
              f"{records / elapsed:,.0f} records/s; largest worker's peak RSS {workers:,.0f} MB")


if __name__ == "__main__":
    main()
