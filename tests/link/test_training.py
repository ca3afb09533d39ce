"""Model training pieces: u without sampled matches, level codes, the household decision and its sample."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from carelink.config import LinkageConfig, load_config
from carelink.link import households, model, stage
from carelink.link.households import level_code
from carelink.link.scoring import with_node_ids
from carelink.link.stage import settings_for_engine, u_without_matches
from carelink.pipeline import STAGES, RunReport, run_stage
from carelink.synth import generate_partnership
from carelink.workspace import Workspace


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


def _scoring_frame(tmp_path: Path, people: int, seed: int) -> pl.DataFrame:
    """The model input, with node ids, of a generated partnership ingested and pseudonymised in ``tmp_path``."""
    generate_partnership(tmp_path / "data", people=people, seed=seed)
    config, workspace = load_config(tmp_path / "data" / "pipeline.yaml"), Workspace(tmp_path / "workspace")
    run = workspace.new_run()
    for name in STAGES[:2]:
        run_stage(name, config, workspace, run, RunReport(run))
    nodes, _ = stage.load_nodes([run.pseudonymise / source.name for source in config.sources])
    return with_node_ids(stage.model_input(nodes))


def test_household_evidence_on_a_sample_of_surnames_is_that_of_the_whole_datas_blocks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sampling surnames before Splink sees the records gives the verdict that blocking all of them with the
    sample's condition gives."""
    frame = _scoring_frame(tmp_path, people=1500, seed=3)
    total = sum(block.pairs(frame) for block in households.HOUSEHOLD_BLOCKS)
    monkeypatch.setattr(households, "MAX_PAIRS", -(-total // 3))  # one surname in three
    opened: list[int] = []

    def over(settings: dict, records: pl.DataFrame):
        opened.append(records.height)
        _, table = stage._open_backend(records, LinkageConfig(), name=f"nodes_{len(opened)}")
        return stage._linker(table, {**settings, "unique_id_column_name": "node_id"})

    def whole_data_with_the_condition(settings: dict, records: pl.DataFrame):
        rules = [{"blocking_rule": rule["blocking_rule"] + " AND l.family_name_token % 3 = 0"}
                 for rule in settings["blocking_rules_to_generate_predictions"]]
        return over({**settings, "blocking_rules_to_generate_predictions": rules}, frame)

    sampled = households.household_evidence(over, frame, "duckdb")
    assert opened[0] == frame.filter(pl.col("family_name_token") % 3 == 0).height < frame.height / 2
    assert sampled.judged > 0
    assert sampled == households.household_evidence(whole_data_with_the_condition, frame, "duckdb")


def _trained_on(frame: pl.DataFrame, em_max_pairs: int) -> tuple[dict, dict]:
    """The settings and training record of a model trained on ``frame`` with EM capped at ``em_max_pairs``."""
    config = LinkageConfig(em_max_pairs=em_max_pairs)
    _, table = stage._open_backend(frame, config)
    linker = stage._linker(table, {**model.settings("duckdb", True), "unique_id_column_name": "node_id"})
    training = stage.train(linker, frame, config, stage._sample_linker(config))
    return linker.misc.save_model_to_json(None), training


def _weights(settings: dict) -> dict[tuple[str, str], float]:
    return {(c["output_column_name"], level["label_for_charts"]): math.log2(level["m_probability"] / level["u_probability"])
            for c in settings["comparisons"] for level in c["comparison_levels"]
            if level.get("m_probability") and not level.get("fix_m_probability")}


def test_em_on_a_sample_of_records_trains_what_em_on_every_record_trains(tmp_path: Path) -> None:
    """A block with more pairs than the cap is trained on about the cap's worth of its pairs, by a linker over a
    sample of the records, and what it learns joins the main model: the weights stay near those of EM on all."""
    frame = _scoring_frame(tmp_path, people=3000, seed=5)
    whole, whole_training = _trained_on(frame, 10**9)
    cap = 4000
    sampled, training = _trained_on(frame, cap)
    blocks = {b["block"]: b for b in training["em_blocks"]}
    capped = [b for b in blocks.values() if b["pairs"] > cap]
    assert capped and all(b["records_sampled"] < frame.height for b in capped)
    assert all(b["records_sampled"] == frame.height for b in blocks.values() if b["pairs"] <= cap)
    assert [b["block"] for b in whole_training["em_blocks"]] == list(blocks)
    # the same records sampled each time
    assert _trained_on(frame, cap)[1] == training
    theirs, ours = _weights(whole), _weights(sampled)
    # a level rare among the sample's matches (a birth year alone agreeing) may go unseen, as in Splink's own sample
    both = theirs.keys() & ours.keys()
    assert len(both) >= len(theirs) - 2, theirs.keys() ^ ours.keys()
    moved = {key: round(ours[key] - theirs[key], 2) for key in both if abs(ours[key] - theirs[key]) > 2.0}
    assert not moved, moved
    assert ours != theirs  # the sample did train: a merge that dropped its estimates would leave Splink's defaults
