"""Bare Splink 5 on plaintext, set up the way its documentation suggests: the yardstick carelink is measured against.

``bare_splink(standardised, threshold)`` takes carelink's standardised records (the plaintext ingest writes to
``runs/<run>/ingest/<source>/standardised.parquet``, so both linkers see the same cleaned values) and returns each
record's cluster at ``threshold`` (``source, record_id, cluster_id``) plus timings, memory and counts.

The model is a textbook dedupe: ``NameComparison`` on forename and surname, ``DateOfBirthComparison``,
``PostcodeComparison``, exact match on NHS number and sex, term-frequency adjustments on surname and postcode;
prior from the deterministic rule NHS number + date of birth (recall 0.7, as in the Splink tutorials), u by random
sampling (2e6 pairs), m by EM on two blocks; connected-components clustering.

Usage: ``python bench/baseline.py RUN_FOLDER TRUTH_CSV [--threshold P] [--em-max-pairs N]`` scores a finished carelink run's
standardised records with bare Splink.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import baseline_assigned, peak_rss_mb, read_standardised, read_truth, reset_peak_rss, score  # noqa: E402

COLUMNS = ("source", "record_id", "nhs_number", "given_name", "family_name", "date_of_birth", "sex", "postcode")
EDGE_THRESHOLD = 0.5  # carelink keeps scored pairs at p >= 0.5 as edges; counted the same way here


def settings() -> Any:
    """The Splink settings of the bare model."""
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=[
            cl.ExactMatch("nhs_number"),
            cl.NameComparison("given_name"),
            cl.NameComparison("family_name").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=False),
            cl.PostcodeComparison("postcode").configure(term_frequency_adjustments=True),
            cl.ExactMatch("sex"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("nhs_number"),
            block_on("date_of_birth", "family_name"),
            block_on("date_of_birth", "given_name"),
            block_on("postcode", "given_name"),
            block_on("postcode", "family_name"),
            block_on("given_name", "family_name"),
        ],
        retain_intermediate_calculation_columns=False,
    )


def splink_input(standardised: pl.DataFrame) -> pl.DataFrame:
    """The columns the model reads, with ``unique_id = source:record_id``."""
    return standardised.select(
        (pl.col("source") + ":" + pl.col("record_id")).alias("unique_id"), *COLUMNS)


def bare_splink(standardised: pl.DataFrame, threshold: float = 0.95, other_thresholds: Sequence[float] = (),
                *, em_max_pairs: float | None = None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Train, predict and cluster with bare Splink; return ``source, record_id, cluster_id`` at ``threshold``.

    ``em_max_pairs`` caps the pairs each EM block trains on (Splink's ``max_pairs``; default: no cap, as the
    tutorials do — the date-of-birth block grows with the square of the records per birth date).

    The dict holds ``timings`` (seconds per step and ``total``), ``train_steps`` (seconds of each training call),
    ``peak_mb`` (peak RSS of the process during the call), ``comparisons`` (blocked pairs scored), ``edges`` (pairs
    at p >= 0.5) and ``assignments`` (one frame per threshold in ``other_thresholds``).
    """
    from splink import DuckDBAPI, Linker, block_on

    reset_peak_rss()
    timings: dict[str, float] = {}
    started = t0 = time.perf_counter()
    db_api = DuckDBAPI()
    table = db_api.register(splink_input(standardised).to_arrow(), dataset_display_name="records")
    linker = Linker(table, settings(), log_level=logging.ERROR)
    timings["load"] = time.perf_counter() - t0

    training = linker.training
    steps: dict[str, float] = {}
    t0 = time.perf_counter()
    training.estimate_probability_two_random_records_match([block_on("nhs_number", "date_of_birth")], recall=0.7)
    steps["prior"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    training.estimate_u_using_random_sampling(max_pairs=2e6, seed=1)
    steps["u"] = time.perf_counter() - t1
    for name, rule in (("em_names", block_on("given_name", "family_name")), ("em_dob", block_on("date_of_birth"))):
        t1 = time.perf_counter()
        training.estimate_parameters_using_expectation_maximisation(rule, max_pairs=em_max_pairs)
        steps[name] = time.perf_counter() - t1
    timings["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    predictions = linker.inference.predict(warning_mode="never")
    counts = predictions.query_sql(
        f"SELECT count(*) AS comparisons, count(*) FILTER (WHERE match_probability >= {EDGE_THRESHOLD}) AS edges "
        "FROM {this}").as_record_list()[0]
    timings["predict"] = time.perf_counter() - t0

    def clusters_at(p: float) -> pl.DataFrame:
        clustered = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, p)
        frame = pl.from_arrow(clustered.query_sql("SELECT unique_id, cluster_id FROM {this}").as_pyarrow_table())
        assert isinstance(frame, pl.DataFrame)
        return frame.select(
            pl.col("unique_id").str.split_exact(":", 1).struct.rename_fields(["source", "record_id"]).alias("id"),
            pl.col("cluster_id").cast(pl.String),
        ).unnest("id")

    t0 = time.perf_counter()
    main = clusters_at(threshold)
    timings["cluster"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    peak = peak_rss_mb()
    others = {p: clusters_at(p) for p in other_thresholds if p != threshold}
    return main, {"timings": timings, "train_steps": steps, "peak_mb": peak, "comparisons": int(counts["comparisons"]),
                  "edges": int(counts["edges"]), "assignments": others}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_folder", type=Path, help="a carelink run folder (WORKSPACE/runs/<run>)")
    parser.add_argument("truth", type=Path)
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--em-max-pairs", type=float, help="cap the pairs of each EM block (default: none)")
    args = parser.parse_args()
    standardised = read_standardised(args.run_folder)
    truth = read_truth(args.truth)
    clusters, info = bare_splink(standardised, args.threshold, (0.5, 0.9, 0.99), em_max_pairs=args.em_max_pairs)
    for p, frame in sorted({args.threshold: clusters, **info["assignments"]}.items()):
        s = score(baseline_assigned(frame, truth, standardised))
        print(f"bare Splink at {p}: precision {s['precision']:.4f}  recall {s['recall']:.4f}  F1 {s['f1']:.4f}")
    print("seconds: " + "  ".join(f"{k} {v:.1f}" for k, v in info["timings"].items())
          + "  (train: " + "  ".join(f"{k} {v:.1f}" for k, v in info["train_steps"].items()) + ")"
          + f"  peak {info['peak_mb']:.0f} MB  comparisons {info['comparisons']}  edges {info['edges']}")


if __name__ == "__main__":
    main()
