"""Households (issue 10): carelink against bare Splink on twins, Jr/Sr pairs and care homes, on one generated partnership.

Usage: ``python bench/households.py [--people N] [--seed S] [--threshold P] [--keep DIR]``. Generates a partnership,
runs carelink end to end and bare Splink 5 on carelink's standardised plaintext (``bench/baseline.py``), and prints
side by side: pairwise precision / recall / F1, precision among twins, Jr/Sr and care-home residents, people holding
two different valid NHS numbers, the largest cluster, seconds, and false / missed links by case label.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline import bare_splink  # noqa: E402
from common import (  # noqa: E402
    CASE_LABELS,
    baseline_assigned,
    carelink_assigned,
    largest,
    load_truth,
    people_with_two_nhs_numbers,
    read_standardised,
    run_carelink,
    score,
)

from carelink.link.evaluate import evaluate_run  # noqa: E402
from carelink.synth import generate_partnership  # noqa: E402

OTHER_THRESHOLDS = (0.5, 0.9, 0.99)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _row(label: str, left: Any, right: Any) -> str:
    return f"  {label:<44}{_fmt(left):>14}{_fmt(right):>14}"


def run(folder: Path, people: int, seed: int, threshold: float) -> None:
    """Generate, link both ways and print the comparison."""
    started = time.perf_counter()
    summary = generate_partnership(folder / "data", people, seed)
    generated = time.perf_counter() - started
    config = folder / "data" / "pipeline.yaml"
    truth = load_truth(folder / "data")

    ours = run_carelink(config, folder / "workspace")
    official = evaluate_run(ours.folder, folder / "data" / "truth.csv")
    standardised = read_standardised(ours.folder)
    c_assigned = carelink_assigned(ours.folder, truth, standardised)
    c = score(c_assigned)
    assert abs(c["f1"] - official["f1"]) < 1e-12, "bench scoring disagrees with carelink.link.evaluate"

    clusters, info = bare_splink(standardised, threshold, OTHER_THRESHOLDS)
    b = score(baseline_assigned(clusters, truth, standardised))

    records = summary.records
    print(f"Households bench: {people:,} people, {records:,} records (seed {seed}, generated in {generated:.1f} s), "
          f"{standardised.height:,} standardised; threshold {threshold}")
    print(f"  {'':<44}{'carelink':>14}{'bare Splink':>14}")
    for key in ("precision", "recall", "f1", "false_links", "missed_links", "predicted_pairs", "people"):
        print(_row(f"pairwise {key.replace('_', ' ')}" if key in ("precision", "recall") else key.replace("_", " "),
                   c[key], b[key]))
    print(_row("  true pairs", c["true_pairs"], ""))
    print(_row("  true entities", c_assigned["entity_id"].n_unique(), ""))
    for label in CASE_LABELS:
        print(_row(f"pairwise precision among {label}", c["precision_among"][label], b["precision_among"][label]))
    print(_row("people with two different valid NHS numbers", c["people_with_two_nhs"], b["people_with_two_nhs"]))
    print(_row("  (true entities with two: relative_nhs typos)", people_with_two_nhs_numbers(c_assigned, "entity_id"),
               ""))
    print(_row("largest cluster (records)", c["largest_cluster"], b["largest_cluster"]))
    print(_row("  largest true entity (records)", largest(c_assigned, "entity_id"), ""))
    print(_row("seconds: link stage / bare Splink", f"{ours.report.timings['link']:.1f}",
               f"{info['timings']['total']:.1f}"))
    print(_row("seconds: carelink end to end", f"{ours.seconds:.1f}", ""))
    print(_row("edges (scored pairs at p >= 0.5)", ours.report.link.edges if ours.report.link else None, info["edges"]))
    print(_row("comparisons scored (bare Splink)", "", info["comparisons"]))
    print("  carelink seconds per stage: " + "  ".join(f"{k} {v:.1f}" for k, v in ours.report.timings.items()))
    if ours.report.link:
        print("  carelink link stage: " + "  ".join(f"{k} {v:.1f}" for k, v in ours.report.link.timings.items()))
    print("  bare Splink: " + "  ".join(f"{k} {v:.1f}" for k, v in info["timings"].items())
          + "   (train: " + "  ".join(f"{k} {v:.1f}" for k, v in info["train_steps"].items()) + ")")
    for p, frame in sorted(info["assignments"].items()):
        s = score(baseline_assigned(frame, truth, standardised))
        print(f"  bare Splink at {p}: precision {s['precision']:.4f}  recall {s['recall']:.4f}  F1 {s['f1']:.4f}  "
              f"twin {_fmt(s['precision_among']['twin'])}  jr_sr {_fmt(s['precision_among']['jr_sr'])}  "
              f"care_home {_fmt(s['precision_among']['care_home'])}  two NHS {s['people_with_two_nhs']}  "
              f"largest {s['largest_cluster']}")

    print("\n  errors by case (pairs; a pair counts for each label of either record)")
    print(f"  {'case':<20}{'carelink false':>16}{'missed':>10}{'bare false':>14}{'missed':>10}")
    labels = sorted(set(c["errors_by_case"]) | set(b["errors_by_case"]),
                    key=lambda k: (k != "(all)", -max(sum(c["errors_by_case"].get(k, {}).values()),
                                                      sum(b["errors_by_case"].get(k, {}).values()))))
    for label in labels:
        ce = c["errors_by_case"].get(label, {})
        be = b["errors_by_case"].get(label, {})
        print(f"  {label:<20}{ce.get('false_links', 0):>16,}{ce.get('missed_links', 0):>10,}"
              f"{be.get('false_links', 0):>14,}{be.get('missed_links', 0):>10,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threshold", type=float, default=0.95, help="bare Splink's clustering threshold")
    parser.add_argument("--keep", type=Path, help="write data and workspace here instead of a temporary folder")
    args = parser.parse_args()
    if args.keep:
        shutil.rmtree(args.keep / "workspace", ignore_errors=True)  # a stored model would skip training
        args.keep.mkdir(parents=True, exist_ok=True)
        run(args.keep, args.people, args.seed, args.threshold)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(Path(tmp), args.people, args.seed, args.threshold)


if __name__ == "__main__":
    main()
