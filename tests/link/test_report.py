"""The linkage report's figures, computed without sorting or re-joining every record."""

from __future__ import annotations

import numpy as np
import polars as pl

from carelink.link.report import _sample_links, link_rates, linked_records


def _edges(seed: int, n: int = 400) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    weight = rng.integers(-6, 7, n).astype(float)  # few distinct weights: many ties
    return pl.DataFrame({
        "record_token_l": [f"t{i:03d}" for i in rng.integers(0, 60, n)],
        "record_token_r": [f"u{i:03d}" for i in rng.integers(0, 60, n)],
        "match_weight": weight,
        "match_probability": 1 / (1 + 2.0 ** -weight),
    })


def test_sample_links_are_those_of_the_full_sort() -> None:
    for seed in range(20):
        edges = _edges(seed)
        ordered = edges.sort(["match_weight", "record_token_l", "record_token_r"], descending=[True, False, False])
        kept = ordered.filter(pl.col("match_probability") >= 0.9)
        rejected = ordered.filter(pl.col("match_probability") < 0.9)
        expected = [row for pick in (kept.head(1), kept.tail(1), rejected.head(1)) for row in pick.to_dicts()]
        assert _sample_links(edges, 0.9) == expected, seed


def test_link_rates_count_records_whose_person_holds_others() -> None:
    nodes = pl.DataFrame({"record_token": ["a", "b", "c", "d", "e"], "source": ["gp", "gp", "acute", "acute", "gp"]})
    person_map = pl.DataFrame({"record_token": ["e", "d", "c", "b", "a"], "person_id": ["P3", "P2", "P1", "P2", "P1"]})
    rows = {r["source"]: r for r in link_rates(nodes, person_map, "source")}
    assert rows["gp"]["records"] == 3 and abs(rows["gp"]["link_rate"] - 2 / 3) < 1e-12
    assert rows["acute"]["records"] == 2 and rows["acute"]["link_rate"] == 1.0
    assert linked_records(nodes, person_map, ["source"]).height == nodes.height


def test_a_person_map_carrying_the_nodes_columns_gives_what_the_join_gives() -> None:
    nodes = pl.DataFrame({"record_token": ["a", "b", "c", "d", "e"], "source": ["gp", "gp", "acute", "acute", "gp"]})
    person_map = pl.DataFrame({"record_token": ["e", "d", "c", "b", "a"],
                               "person_id": ["P000000003", "P000000002", "P000000001", "P000000002", "P000000001"]})
    carrying = person_map.join(nodes, on="record_token", maintain_order="left")
    joined = linked_records(nodes, person_map, ["source"])
    assert linked_records(nodes, carrying, ["source"]).sort("source", "linked").equals(joined.sort("source", "linked"))
    assert link_rates(nodes, carrying, "source") == link_rates(nodes, person_map, "source")
