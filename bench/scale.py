"""Scale (issue 7): carelink's seconds and peak memory per stage against bare Splink 5, at growing record counts.

Usage: ``python bench/scale.py [--records N ...] [--seed S] [--keep DIR] [--carelink-only] [--nights K]`` (default
sizes 100,000 and 1,000,000 records; a partnership has about 2.47 records per person). For each size it generates a
partnership, then runs, each in its own process so peaks do not mix: carelink end to end (seconds, RSS at the start
and peak RSS of every stage), and bare Splink (``bench/baseline.py``) on that run's standardised plaintext. It prints
both, the ratio of carelink's link-stage seconds to bare Splink's, edge and comparison counts and pairwise
precision / recall / F1.

With ``--nights K`` it generates K nightly deliveries instead (``carelink.synth.generate_nights``: about 1 % new,
0.5 % updated and 0.2 % deleted records a night) and runs carelink on each in turn in one workspace, so nights 2 to K
are incremental nights: it prints each night's figures as above (bare Splink is not run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    baseline_assigned,
    load_truth,
    read_standardised,
    rss_mb,
    run_carelink,
)

from carelink.link.evaluate import evaluate_run, pairwise_scores  # noqa: E402
from carelink.synth import generate_nights, generate_partnership, night_folder  # noqa: E402
from carelink.workspace import Workspace  # noqa: E402

RECORDS_PER_PERSON = 2.47


def worker_carelink(folder: Path, data: Path | None = None) -> dict[str, Any]:
    """Run carelink end to end over ``data`` (default ``folder/data``) into ``folder/workspace``; return its
    figures."""
    imported_mb = rss_mb()
    data = data or folder / "data"
    ours = run_carelink(data / "pipeline.yaml", folder / "workspace")
    scores = evaluate_run(ours.folder, data / "truth.csv")
    link = ours.report.link
    assert link is not None
    carried = sum(r.records_carried for r in ours.report.pseudonymise)
    return {"imported_mb": imported_mb, "seconds": ours.seconds, "timings": ours.report.timings,
            "records_rescored": link.records_rescored, "records_carried": carried,
            "records_with_people_carried": link.records_with_people_carried,
            "peak_mb": ours.peak_mb, "start_mb": ours.start_mb, "worker_peak_mb": ours.worker_peak_mb,
            "in_use_peak_mb": ours.in_use_peak_mb,
            "link_timings": link.timings,
            "records": link.records, "edges": link.edges, "people": link.people,
            "scores": {k: scores[k] for k in ("precision", "recall", "f1")}}


def worker_splink(folder: Path) -> dict[str, Any]:
    """Run bare Splink on the standardised records of carelink's run in ``folder``; return its figures."""
    from baseline import bare_splink

    imported_mb = rss_mb()
    started = time.perf_counter()
    standardised = read_standardised(Workspace(folder / "workspace").latest_run().folder)
    read_seconds = time.perf_counter() - started
    clusters, info = bare_splink(standardised, 0.95)
    scores = pairwise_scores(baseline_assigned(clusters, load_truth(folder / "data"), standardised))
    return {"imported_mb": imported_mb, "read_seconds": read_seconds, "timings": info["timings"],
            "train_steps": info["train_steps"], "peak_mb": info["peak_mb"], "comparisons": info["comparisons"], "edges": info["edges"],
            "scores": {k: scores[k] for k in ("precision", "recall", "f1")}}


def _in_subprocess(kind: str, *folders: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--worker", kind, *map(str, folders)], stdout=subprocess.PIPE,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _scores(s: dict[str, float]) -> str:
    return f"precision {s['precision']:.4f}  recall {s['recall']:.4f}  F1 {s['f1']:.4f}"


def run_size(folder: Path, records: int, seed: int, with_splink: bool = True) -> None:
    """Generate one partnership of about ``records`` records, measure both linkers (carelink alone unless
    ``with_splink``), print the figures."""
    people = round(records / RECORDS_PER_PERSON)
    started = time.perf_counter()
    summary = generate_partnership(folder / "data", people, seed)
    generated = time.perf_counter() - started
    ours = _in_subprocess("carelink", folder)
    print(f"\n{summary.records:,} records ({people:,} people, seed {seed}; generated in {generated:.1f} s), "
          f"{ours['records']:,} standardised")
    _print_carelink(ours)
    if with_splink:
        _print_bare_splink(ours, _in_subprocess("splink", folder))


def run_nights(folder: Path, records: int, seed: int, nights: int) -> None:
    """Generate ``nights`` nightly deliveries of about ``records`` records; run carelink on each in turn in one
    workspace; print each night's figures."""
    people = round(records / RECORDS_PER_PERSON)
    started = time.perf_counter()
    summaries = generate_nights(folder / "data", people, seed, nights)
    print(f"\n{nights} nights of about {records:,} records ({people:,} people, seed {seed}; generated in "
          f"{time.perf_counter() - started:.1f} s)")
    for night, summary in enumerate(summaries, start=1):
        ours = _in_subprocess("carelink", folder, night_folder(folder / "data", night))
        print(f"  night {night}: {summary.records:,} records, {ours['records_carried']:,} carried by pseudonymise, "
              f"{ours['records_rescored']:,} rescored by link, {ours['records_with_people_carried']:,} kept their "
              "person without clustering")
        _print_carelink(ours)


def _print_carelink(ours: dict[str, Any]) -> None:
    print(f"  carelink end to end {ours['seconds']:.1f} s  ({_scores(ours['scores'])}; {ours['people']:,} people)")
    print(f"    {'stage':<14}{'seconds':>9}{'RSS at start MB':>17}{'peak RSS MB':>13}{'peak in use MB':>16}"
          f"{'largest worker MB':>19}")
    for stage, seconds in ours["timings"].items():
        worker = ours["worker_peak_mb"].get(stage)
        print(f"    {stage:<14}{seconds:>9.1f}{ours['start_mb'].get(stage, 0):>17.0f}{ours['peak_mb'].get(stage, 0):>13.0f}"
              f"{ours['in_use_peak_mb'].get(stage, 0):>16.0f}{'' if worker is None else f'{worker:.0f}':>19}")
    print("    link stage: " + "  ".join(f"{k} {v:.1f}" for k, v in ours["link_timings"].items())
          + f"   (process RSS after imports {ours['imported_mb']:.0f} MB)")


def _print_bare_splink(ours: dict[str, Any], bare: dict[str, Any]) -> None:
    link_seconds = ours["timings"]["link"]
    bare_seconds = bare["timings"]["total"]
    print(f"  bare Splink {bare_seconds:.1f} s  ({_scores(bare['scores'])}), peak RSS {bare['peak_mb']:.0f} MB "
          f"(after imports {bare['imported_mb']:.0f} MB; reading standardised parquet {bare['read_seconds']:.1f} s)")
    print("    " + "  ".join(f"{k} {v:.1f}" for k, v in bare["timings"].items())
          + "   (train: " + "  ".join(f"{k} {v:.1f}" for k, v in bare["train_steps"].items()) + ")")
    print(f"  link-stage seconds / bare-Splink seconds: {link_seconds / bare_seconds:.2f}  "
          f"({link_seconds:.1f} / {bare_seconds:.1f})")
    print(f"  link peak RSS / bare-Splink peak RSS: {ours['peak_mb']['link'] / bare['peak_mb']:.2f}")
    print(f"  edges (p >= 0.5): carelink {ours['edges']:,}  bare Splink {bare['edges']:,}  "
          f"(bare Splink scored {bare['comparisons']:,} blocked comparisons)")


def measure(folder: Path, records: int, args: argparse.Namespace) -> None:
    if args.nights:
        run_nights(folder, records, args.seed, args.nights)
    else:
        run_size(folder, records, args.seed, not args.carelink_only)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="write each size's data and workspace under this folder")
    parser.add_argument("--carelink-only", action="store_true",
                        help="skip bare Splink (at 10M records it needs more memory than this machine has)")
    parser.add_argument("--nights", type=int, help="K nightly deliveries per size, nights 2 to K incremental")
    parser.add_argument("--worker", choices=("carelink", "splink"), help=argparse.SUPPRESS)
    parser.add_argument("folder", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker_carelink(*args.folder) if args.worker == "carelink" else worker_splink(*args.folder)
        print(json.dumps(result))
        return
    for records in args.records:
        if args.keep:
            folder = args.keep / f"records_{records}"
            shutil.rmtree(folder / "workspace", ignore_errors=True)  # a stored model would skip training
            folder.mkdir(parents=True, exist_ok=True)
            measure(folder, records, args)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                measure(Path(tmp), records, args)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
