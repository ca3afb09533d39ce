"""Tests for carelink.link.evaluate: pairwise precision, recall and F1 against hand-computed figures."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from carelink.errors import InputFileError
from carelink.link.evaluate import assignment, pairwise_scores, read_truth


def assigned(rows: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"person_id": pl.String, "entity_id": pl.String}, orient="row")


def test_over_merged_cluster() -> None:
    # Truth: E1 = {a, b, c}, E2 = {d, e}, E3 = {f}.  Predicted: P1 = {a, b, c, d}, P2 = {e}, P3 = {f}.
    # True pairs: ab ac bc de = 4.  Predicted pairs: ab ac ad bc bd cd = 6.  Correct: ab ac bc = 3.
    scores = pairwise_scores(assigned([("P1", "E1"), ("P1", "E1"), ("P1", "E1"), ("P1", "E2"), ("P2", "E2"),
                                       ("P3", "E3")]))
    assert (scores["true_pairs"], scores["predicted_pairs"], scores["correct_pairs"]) == (4, 6, 3)
    assert (scores["false_links"], scores["missed_links"]) == (3, 1)
    assert scores["precision"] == pytest.approx(3 / 6)
    assert scores["recall"] == pytest.approx(3 / 4)
    assert scores["f1"] == pytest.approx(2 * 0.5 * 0.75 / 1.25)  # 0.6


def test_under_merged_cluster() -> None:
    # Truth: E1 = {a, b, c, d}.  Predicted: P1 = {a, b}, P2 = {c, d}.
    # True pairs 6; predicted pairs 2, both correct: precision 1, recall 1/3, F1 = 2·(1/3)/(4/3) = 0.5.
    scores = pairwise_scores(assigned([("P1", "E1"), ("P1", "E1"), ("P2", "E1"), ("P2", "E1")]))
    assert (scores["true_pairs"], scores["predicted_pairs"], scores["correct_pairs"]) == (6, 2, 2)
    assert scores["precision"] == 1.0
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(0.5)


def test_mixed_errors() -> None:
    # Truth: E1 = {a, b, c}, E2 = {d, e}.  Predicted: P1 = {a, b}, P2 = {c, d, e}.
    # True pairs 3 + 1 = 4; predicted 1 + 3 = 4; correct: ab, de = 2 → P = R = F1 = 0.5.
    scores = pairwise_scores(assigned([("P1", "E1"), ("P1", "E1"), ("P2", "E1"), ("P2", "E2"), ("P2", "E2")]))
    assert (scores["true_pairs"], scores["predicted_pairs"], scores["correct_pairs"]) == (4, 4, 2)
    assert scores["precision"] == scores["recall"] == scores["f1"] == pytest.approx(0.5)


def test_perfect_assignment() -> None:
    scores = pairwise_scores(assigned([("P1", "E1"), ("P1", "E1"), ("P2", "E2"), ("P3", "E3"), ("P3", "E3"),
                                       ("P3", "E3")]))
    assert (scores["precision"], scores["recall"], scores["f1"]) == (1.0, 1.0, 1.0)
    assert (scores["true_pairs"], scores["false_links"], scores["missed_links"]) == (4, 0, 0)


def test_all_singletons_predicted() -> None:
    # Nothing linked: precision is vacuously 1, recall 0, F1 0.
    scores = pairwise_scores(assigned([("P1", "E1"), ("P2", "E1"), ("P3", "E2")]))
    assert (scores["predicted_pairs"], scores["true_pairs"]) == (0, 1)
    assert (scores["precision"], scores["recall"], scores["f1"]) == (1.0, 0.0, 0.0)


def test_everything_wrongly_linked() -> None:
    scores = pairwise_scores(assigned([("P1", "E1"), ("P1", "E2"), ("P1", "E3")]))
    assert (scores["predicted_pairs"], scores["correct_pairs"], scores["true_pairs"]) == (3, 0, 0)
    assert (scores["precision"], scores["recall"], scores["f1"]) == (0.0, 1.0, 0.0)


def test_assignment_joins_truth_through_reid_maps_to_person_map() -> None:
    truth = pl.DataFrame({"source": ["gp", "gp", "la", "la"], "record_id": ["1", "2", "1", "9"],
                          "entity_id": ["E1", "E2", "E1", "E3"]})
    reid = {"gp": pl.DataFrame({"record_id": ["1", "2"], "record_token": ["ga", "gb"]}),
            "la": pl.DataFrame({"record_id": ["1"], "record_token": ["la"]})}
    person_map = pl.DataFrame({"record_token": ["ga", "gb", "la"], "person_id": ["P1", "P2", "P1"]})
    joined = assignment(reid, person_map, truth).sort("source", "record_id")
    assert joined.select("source", "record_id", "person_id", "entity_id").rows() == [
        ("gp", "1", "P1", "E1"), ("gp", "2", "P2", "E2"), ("la", "1", "P1", "E1")]
    assert pairwise_scores(joined)["f1"] == 1.0


def test_read_truth_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="truth file not found"):
        read_truth(tmp_path / "truth.csv")
    (tmp_path / "truth.csv").write_text("source,record_id\ngp,1\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"row 0: truth file lacks column\(s\) entity_id"):
        read_truth(tmp_path / "truth.csv")
    (tmp_path / "truth.csv").write_text("source,record_id,entity_id\ngp,007,E1\n", encoding="utf-8")
    assert read_truth(tmp_path / "truth.csv").row(0) == ("gp", "007", "E1")  # read as text: leading zeros kept
