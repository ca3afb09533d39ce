"""carelink's candidate pairs are exactly the pairs Splink's own blocking gives, and score the same."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carelink.config import LinkageConfig, load_config
from carelink.link import model, stage
from carelink.link.blocking import choose_rules
from carelink.link.carry import clustering_made
from carelink.link.model import Block
from carelink.link.scoring import NODE_ID, PairScorer, candidate_pairs, candidate_pairs_sql, with_node_ids
from carelink.pipeline import run_all
from carelink.synth import generate_partnership
from carelink.workspace import Workspace

RULES = (Block(("a",)), Block(("a", "b")), Block(("b",), ("c",)), Block(("c",), ("b",)), Block(("c",)))
values = st.one_of(st.none(), st.integers(0, 3))


def _brute_force(rows: list[dict], rules: tuple[Block, ...], touching: list[bool] | None) -> dict[tuple[int, int], int]:
    """Every pair some rule blocks (either way round for rules joining two columns), with its first rule."""
    found: dict[tuple[int, int], int] = {}
    for i, j in itertools.combinations(range(len(rows)), 2):
        if touching is not None and not (touching[i] or touching[j]):
            continue
        for k, rule in enumerate(rules):
            def joins(x: dict, y: dict, rule: Block = rule) -> bool:
                return all(x[a] is not None and x[a] == y[b] for a, b in zip(rule.left, rule.right_columns, strict=True))
            if joins(rows[i], rows[j]) or (rule.right is not None and joins(rows[j], rows[i])):
                found[(i, j)] = k
                break
    return found


@settings(max_examples=150, deadline=None)
@given(st.lists(st.fixed_dictionaries({"a": values, "b": values, "c": values, "touch": st.booleans()}),
                min_size=0, max_size=14), st.sampled_from(["sorted", "grouped", "touching"]))
def test_candidate_pairs_are_every_blocked_pair_once_with_its_first_rule(rows: list[dict], way: str) -> None:
    """Whole populations' pairs de-duplicated by sorting packed pairs, or by grouping in SQL (the way for pairs
    touching some records, and for populations too large to pack), are the brute-force pairs."""
    frame = with_node_ids(pl.DataFrame(rows, schema={"a": pl.Int64, "b": pl.Int64, "c": pl.Int64, "touch": pl.Boolean}))
    connection = duckdb.connect()
    connection.register("nodes", frame.to_arrow())
    touching = "touch" if way == "touching" else None
    if way == "grouped":
        found = connection.execute(candidate_pairs_sql("nodes", RULES)).fetchall()
    else:
        # a one-pair buffer: the sorted way grows it as the joins' pairs arrive
        candidate_pairs(connection, "nodes", RULES, frame.height, "pairs", touching, comparisons=1)
        found = connection.execute("SELECT join_key_l, join_key_r, match_key FROM pairs").fetchall()
    got = {(a, b): int(k) for a, b, k in found}
    assert len(found) == len(got)  # each pair once
    assert got == _brute_force(rows, RULES, [r["touch"] for r in rows] if touching else None)


@pytest.fixture(scope="module")
def linked_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scoring")
    generate_partnership(root / "data", people=600, seed=5)
    return run_all(load_config(root / "data" / "pipeline.yaml"), Workspace(root / "workspace")).run.folder


def test_scores_equal_splinks_own_blocking_and_scoring(linked_run: Path) -> None:
    nodes, _ = stage.load_nodes(sorted((linked_run / "pseudonymise").iterdir()))
    frame = stage.model_input(nodes)
    rules = choose_rules(frame, model.BLOCKING_RULES)
    settings = model.with_blocking(json.loads((linked_run / "link" / "model.json").read_text())["splink"], rules)
    config = LinkageConfig()
    db_api, table = stage._open_backend(frame, config)
    theirs = stage._tidy_edges(stage._as_polars(stage._linker(table, settings).inference.predict(
        threshold_match_probability=0.01, warning_mode="never")))
    scoring = with_node_ids(frame)
    db_api, table = stage._open_backend(scoring, config)
    ours = PairScorer(db_api, table, scoring, settings).score(rules, threshold=0.01, chunk_pairs=500).edges()  # chunks
    assert ours.height > 1000
    assert ours.columns == theirs.columns
    assert ours.select("record_token_l", "record_token_r").equals(theirs.select("record_token_l", "record_token_r"))
    for column in ours.columns[2:]:
        assert (ours[column] - theirs[column]).abs().max() < 1e-9, column


def test_the_scoring_frame_keeps_the_sources_pieces_so_duckdb_gets_it_without_a_copy(linked_run: Path) -> None:
    folders = sorted((linked_run / "pseudonymise").iterdir())
    nodes, _ = stage.load_nodes(folders)
    pieces = [pl.read_parquet(folder / "nodes.parquet").height for folder in folders]
    assert len(pieces) > 1 and {tuple(nodes[name].chunk_lengths()) for name in nodes.columns} == {tuple(pieces)}
    frame = stage.with_row_hash(stage.model_input(nodes))  # as link() makes it, then _score
    changed = pl.Series("changed", [i % 7 == 0 for i in range(frame.height)])
    scoring = with_node_ids(frame.drop("row_hash").with_columns(stage.cut_like(changed, frame)))
    assert {tuple(scoring[name].chunk_lengths()) for name in scoring.columns} == {tuple(pieces)}
    assert scoring[NODE_ID].to_list() == list(range(frame.height))
    arrow = scoring.to_arrow(compat_level=pl.CompatLevel.newest())
    assert [batch.num_rows for batch in arrow.to_batches()] == pieces  # not gathered into one piece


def test_pairs_touching_changed_records_are_those_with_one_of_them(linked_run: Path) -> None:
    nodes, _ = stage.load_nodes(sorted((linked_run / "pseudonymise").iterdir()))
    frame = stage.model_input(nodes)
    rules = choose_rules(frame, model.BLOCKING_RULES)
    settings = model.with_blocking(json.loads((linked_run / "link" / "model.json").read_text())["splink"], rules)
    changed = pl.Series("changed", [i % 7 == 0 for i in range(frame.height)])
    scoring = with_node_ids(frame.with_columns(changed))
    db_api, table = stage._open_backend(scoring, LinkageConfig())
    scorer = PairScorer(db_api, table, scoring, settings)
    everything, touching = scorer.score(rules).edges(), scorer.score(rules, touching="changed").edges()
    marked = frame.filter(changed)["record_token"].implode()
    expected = everything.filter(pl.col("record_token_l").is_in(marked) | pl.col("record_token_r").is_in(marked))
    assert touching.equals(expected)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 2)),
       st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 2)))
def test_changes_since_last_run_are_the_new_and_changed_records_and_the_gone_ones(before: dict, now: dict) -> None:
    def population(rows: dict) -> pl.DataFrame:
        return pl.DataFrame({"record_token": list(rows), "row_hash": list(rows.values())},
                            schema={"record_token": pl.String, "row_hash": pl.UInt64})

    previous_row, gone = stage._changes(population(now), population(before))
    assert (previous_row < 0).tolist() == [before.get(token) != value for token, value in now.items()]
    earlier = list(before)
    assert all(earlier[row] == token for token, row in zip(now, previous_row.tolist(), strict=True) if row >= 0)
    assert sorted(gone) == sorted(token for token, value in before.items() if now.get(token) != value)


def test_row_hashes_see_a_change_inside_a_list_and_between_null_and_empty() -> None:
    frame = pl.DataFrame({"record_token": ["a", "b", "c", "d"], "words": [[1, 2], [1, 3], None, []], "n": [1, 1, 1, 1]})
    hashes = stage.with_row_hash(frame)["row_hash"]
    assert hashes.n_unique() == 4
    assert stage.with_row_hash(frame)["row_hash"].equals(hashes)  # the same features, the same hash


def test_last_runs_scores_are_used_only_when_made_with_this_model_and_this_row_hash(tmp_path: Path) -> None:
    from carelink.tables import write_parquet

    population = pl.DataFrame({"record_token": ["a"], "row_hash": [1]}, schema={"record_token": pl.String,
                                                                                "row_hash": pl.UInt64})
    edges = pl.DataFrame({"record_token_l": ["a"], "record_token_r": ["b"], "match_probability": [0.99]})
    write_parquet(edges, tmp_path / "edges.parquet", {"model_sha256": "m1"})
    write_parquet(population, tmp_path / "population.parquet", {"model_sha256": "m1"})  # an earlier version's
    assert stage._previous_scores(tmp_path, "m1", 0.95) is None
    write_parquet(population, tmp_path / "population.parquet", {"row_hash_format": stage.ROW_HASH_FORMAT})
    kept = stage._previous_scores(tmp_path, "m1", 0.95)
    assert kept is not None and kept[0].equals(population)
    assert stage._previous_scores(tmp_path, "m2", 0.95) is None  # another model
    components = population.with_columns(pl.lit(7, dtype=pl.UInt64).alias("component"))
    made = {"row_hash_format": stage.ROW_HASH_FORMAT, "clustering": clustering_made(0.95)}
    write_parquet(components, tmp_path / "population.parquet", made)
    assert stage._previous_scores(tmp_path, "m1", 0.95)[0].equals(components)  # type: ignore[index]
    # components made at another threshold are not carried from; the scores still are
    assert stage._previous_scores(tmp_path, "m1", 0.9)[0].equals(population)  # type: ignore[index]
