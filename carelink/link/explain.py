"""Explain a link: the agreement on each feature, its match weight and the total — for a pair or for a person.

Records are named by record token (what the hub sees) or, where the partner's re-identification map is in the same
workspace, as ``source:record_id``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import polars as pl

from carelink.errors import ConfigError
from carelink.link.stage import load_nodes, model_input
from carelink.tables import read_json


def resolve_record(run_folder: Path, name: str) -> str:
    """A record token from a token or from ``source:record_id`` (through the partner's re-identification map)."""
    if ":" not in name:
        return name
    source, record_id = name.split(":", 1)
    reid_path = run_folder / "pseudonymise" / source / "reid_map.parquet"
    if not reid_path.is_file():
        raise ConfigError(None, None, f"{name}: no re-identification map for source {source!r} in this workspace")
    match = pl.read_parquet(reid_path).filter(pl.col("record_id") == record_id)
    if match.height == 0:
        raise ConfigError(None, None, f"{name}: no such record in source {source!r}")
    return match["record_token"][0]


def _level_label(comparison: dict[str, Any], weight: float | None) -> str:
    """The level whose weight log2(m/u) equals the scored weight (without term-frequency adjustment)."""
    if weight is None or weight == 0:
        return "null (no evidence)"
    best, label = math.inf, "?"
    for level in comparison["comparison_levels"]:
        m, u = level.get("m_probability"), level.get("u_probability")
        if level.get("is_null_level") or not m or not u:
            continue
        gap = abs(math.log2(m / u) - weight)
        if gap < best:
            best, label = gap, level.get("label_for_charts", "?")
    return label


def explain_pair(run_folder: Path, left: str, right: str) -> dict[str, Any]:
    """Score one pair with the run's model and break the total down by comparison."""
    from splink import DuckDBAPI, Linker

    model = read_json(run_folder / "link" / "model.json")
    folders = sorted(p.parent for p in (run_folder / "pseudonymise").glob("*/nodes.parquet"))
    nodes, _ = load_nodes(folders)
    frame = model_input(nodes)
    tokens = [resolve_record(run_folder, left), resolve_record(run_folder, right)]
    records = frame.filter(pl.col("record_token").is_in(tokens))
    if records.height != 2:
        missing = set(tokens) - set(records["record_token"])
        raise ConfigError(None, None, f"record(s) not in this run: {', '.join(sorted(missing))}")
    api = DuckDBAPI()
    linker = Linker(api.register(frame.to_arrow(), dataset_display_name="nodes"), model["splink"],
                    log_level=logging.ERROR)
    # Typed one-row tables rather than dicts: a missing Bloom filter must stay a typed null list.
    left_record, right_record = (api.register(records.filter(pl.col("record_token") == token).to_arrow(),
                                              dataset_display_name=f"record_{i}") for i, token in enumerate(tokens))
    scored = linker.inference.score_pair(left_record, right_record).as_record_list()[0]
    comparisons = []
    for comparison in model["splink"]["comparisons"]:
        name = comparison["output_column_name"]
        weight = scored.get(f"mw_{name}")
        tf = scored.get(f"mw_tf_adj_{name}")
        comparisons.append({"comparison": name, "level": _level_label(comparison, weight), "match_weight": weight,
                            "term_frequency_adjustment": tf})
    return {"left": tokens[0], "right": tokens[1], "match_weight": scored["match_weight"],
            "match_probability": scored["match_probability"],
            "prior_weight": math.log2(_prior_odds(model["splink"]["probability_two_random_records_match"])),
            "comparisons": comparisons}


def _prior_odds(probability: float) -> float:
    return probability / (1 - probability)


def explain_person(run_folder: Path, person_id: str) -> dict[str, Any]:
    """The person's records and the scored links among them, strongest first."""
    person_map = pl.read_parquet(run_folder / "link" / "person_map.parquet")
    records = person_map.filter(pl.col("person_id") == person_id).select("record_token", "source").sort("source")
    if records.height == 0:
        raise ConfigError(None, None, f"{person_id} is not in run {run_folder.name}")
    tokens = records["record_token"].implode()
    edges = pl.read_parquet(run_folder / "link" / "edges.parquet").filter(
        pl.col("record_token_l").is_in(tokens) & pl.col("record_token_r").is_in(tokens)
    ).sort("match_weight", descending=True)
    return {"person_id": person_id, "records": records.to_dicts(),
            "links": edges.select("record_token_l", "record_token_r", "match_weight", "match_probability").to_dicts()}
