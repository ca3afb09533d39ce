"""Risk figures of the pseudonymisation report, checked against hand-computed values."""

from __future__ import annotations

import polars as pl
import pytest

from carelink.pseudonymise.risk import frequency_attack, k_anonymity, token_exposure


def test_k_anonymity_hand_computed() -> None:
    nodes = pl.DataFrame({
        "age_band": ["80-84"] * 6 + ["85-89"] * 3 + ["90+"],
        "postcode_district": ["LS6"] * 6 + ["LS6"] * 3 + [None],
        "source_kind": ["health"] * 10,
    })
    result = k_anonymity(nodes, k=5)
    assert result["class_size_distribution"] == {"1": 1, "2-4": 3, "5-9": 6, "10+": 0}
    assert result["records_unique"] == 1
    assert result["records_below_k"] == 4
    assert result["share_below_k"] == pytest.approx(0.4)


def test_token_exposure_hand_computed() -> None:
    nodes = pl.DataFrame({"t": [1, 1, 1, 1, 1, 1, 2, 2, 3, None]})
    (row,) = token_exposure(nodes, ["t"], k=5)
    assert row == {"column": "t", "distinct": 3, "unique": 1, "rarer_than_k": 2, "top_share": pytest.approx(6 / 9)}


def test_frequency_attack_reidentifies_only_untied_frequencies() -> None:
    # SMITH ×4 and JONES ×3 have frequencies no other name shares: rank alignment re-identifies them (7 records).
    # KHAN ×1 and PATEL ×1 tie: the attacker cannot tell their tokens apart.
    values = pl.Series(["SMITH"] * 4 + ["JONES"] * 3 + ["KHAN", "PATEL"])
    tokens = pl.Series([10] * 4 + [20] * 3 + [30, 40])
    result = frequency_attack(values, tokens)
    assert result["distinct_values"] == 4
    assert result["values_reidentified"] == 2
    assert result["share_values"] == pytest.approx(0.5)
    assert result["share_records"] == pytest.approx(7 / 9)
