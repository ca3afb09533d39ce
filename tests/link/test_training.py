"""Model training pieces: u without sampled matches, level codes, the household decision."""

from __future__ import annotations

import pytest

from carelink.link import model
from carelink.link.households import level_code
from carelink.link.stage import settings_for_engine, u_without_matches


def _settings(prior: float, *levels: dict) -> dict:
    return {"probability_two_random_records_match": prior,
            "comparisons": [{"output_column_name": "x", "comparison_levels": [{"is_null_level": True}, *levels]}]}


def test_u_without_matches_solves_the_mixture() -> None:
    settings = _settings(0.01, {"m_probability": 0.9, "u_probability": 0.02},
                         {"m_probability": 0.1, "u_probability": 0.98})
    exact, other = u_without_matches(settings)["comparisons"][0]["comparison_levels"][1:]
    assert exact["u_probability"] == pytest.approx((0.02 - 0.01 * 0.9) / 0.99)
    assert other["u_probability"] == pytest.approx((0.98 - 0.01 * 0.1) / 0.99)
    assert exact["u_probability"] + other["u_probability"] == pytest.approx(1.0)


def test_u_without_matches_floors_and_leaves_fixed_levels_alone() -> None:
    settings = _settings(0.01, {"m_probability": 0.9, "u_probability": 0.004},
                         {"m_probability": 0.1, "u_probability": 0.996},
                         {"m_probability": 1e-6, "u_probability": 0.5, "fix_u_probability": True})
    exact, other, fixed = u_without_matches(settings)["comparisons"][0]["comparison_levels"][1:]
    assert exact["u_probability"] / other["u_probability"] == pytest.approx(0.25 * 0.004 / ((0.996 - 0.001) / 0.99))
    assert fixed["u_probability"] == 0.5
    assert settings["comparisons"][0]["comparison_levels"][1]["u_probability"] == 0.004  # input untouched


def test_level_codes_follow_level_order() -> None:
    given = {c["output_column_name"]: c for c in model.comparisons()}["given_name"]
    assert level_code(given, "exact") == -1
    assert level_code(given, "different") == -(len(given["comparison_levels"]) - 1)


@pytest.mark.parametrize("households", [True, False])
def test_models_with_and_without_household_levels_move_between_engines(households: bool) -> None:
    settings = model.settings("duckdb", households) | {"sql_dialect": "duckdb"}
    assert model.has_household_levels(settings) is households
    spark = settings_for_engine(settings, "spark")
    assert model.has_household_levels(spark) is households
    assert "arrays_overlap" in str(spark["comparisons"])


def test_sources_with_different_hardenings_are_refused(tmp_path) -> None:
    import polars as pl

    from carelink.errors import IntegrityError
    from carelink.link.stage import node_hardening
    from carelink.tables import write_parquet

    for name, hardening in (("gp", "salted"), ("acute", "none")):
        meta = {"bloom_hardening": hardening} if hardening != "none" else {}
        write_parquet(pl.DataFrame({"record_token": ["a"]}), tmp_path / name / "nodes.parquet", meta)
    assert node_hardening([tmp_path / "gp"]) == "salted"
    assert node_hardening([tmp_path / "acute"]) == "none"
    with pytest.raises(IntegrityError, match="acute=none, gp=salted"):
        node_hardening([tmp_path / "gp", tmp_path / "acute"])


def test_hardened_filters_change_the_dice_sql_length() -> None:
    plain = str(model.comparisons("duckdb", True, "none"))
    folded = str(model.comparisons("duckdb", True, "xor_fold"))
    assert "address_bf_l[16]" in plain and "address_bf_l[16]" not in folded and "address_bf_l[8]" in folded
