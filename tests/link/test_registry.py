"""Tests for carelink.link.registry: stable person IDs across runs, merges, splits and their history."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from carelink.link.clustering import CLUSTER_ROW
from carelink.link.registry import Registry, assign_person_ids, person_keys, rows_in


def clusters(groups: dict[str, list[str]]) -> pl.DataFrame:
    """``{cluster_id: [record_token, ...]}`` → the (record_token, cluster_id) frame the linker produces."""
    rows = [(token, cluster) for cluster, tokens in groups.items() for token in tokens]
    return pl.DataFrame(rows, schema={"record_token": pl.String, "cluster_id": pl.String}, orient="row")


def ids(registry: Registry) -> dict[str, str]:
    return dict(registry.records.select("record_token", "person_id").iter_rows())


def events(registry: Registry, run_id: str) -> list[tuple]:
    frame = registry.history.filter(pl.col("run_id") == run_id)
    return sorted(frame.select("event", "person_id", "related_person_id", "records").rows(), key=str)


@pytest.fixture()
def first() -> Registry:
    # Cluster labels are arbitrary; the order of IDs follows each cluster's smallest record token.
    return assign_person_ids(Registry.empty(), clusters({"z": ["t3", "t1"], "y": ["t2"], "x": ["t5", "t4"]}), "run1")


def test_first_assignment_numbers_clusters_in_record_token_order(first: Registry) -> None:
    assert ids(first) == {"t1": "P000000001", "t3": "P000000001", "t2": "P000000002",
                          "t4": "P000000003", "t5": "P000000003"}
    assert first.records.columns == ["record_token", "person_id", "first_run", "last_run"]
    assert first.records["record_token"].to_list() == ["t1", "t2", "t3", "t4", "t5"]
    assert set(first.records["first_run"]) == {"run1"} and set(first.records["last_run"]) == {"run1"}
    assert events(first, "run1") == [("created", "P000000001", None, 2), ("created", "P000000002", None, 1),
                                     ("created", "P000000003", None, 2)]
    assert first.next_number() == 4


def test_first_assignment_is_deterministic() -> None:
    a = assign_person_ids(Registry.empty(), clusters({"z": ["t3", "t1"], "y": ["t2"], "x": ["t5", "t4"]}), "r")
    b = assign_person_ids(Registry.empty(), clusters({"c2": ["t4", "t5"], "c0": ["t2"], "c1": ["t1", "t3"]}), "r")
    shuffled = clusters({"z": ["t3", "t1"], "y": ["t2"], "x": ["t5", "t4"]}).sample(fraction=1.0, shuffle=True, seed=3)
    c = assign_person_ids(Registry.empty(), shuffled, "r")
    assert ids(a) == ids(b) == ids(c)
    assert a.records.equals(c.records) and a.history.equals(c.history)


def test_unchanged_clusters_keep_ids_and_log_nothing(first: Registry) -> None:
    second = assign_person_ids(first, clusters({"a": ["t1", "t3"], "b": ["t2"], "c": ["t4", "t5"]}), "run2")
    assert ids(second) == ids(first)
    assert events(second, "run2") == []
    assert set(second.records["first_run"]) == {"run1"} and set(second.records["last_run"]) == {"run2"}


def test_new_record_joining_a_cluster_keeps_the_id(first: Registry) -> None:
    second = assign_person_ids(first, clusters({"a": ["t1", "t3", "t0"], "b": ["t2"], "c": ["t4", "t5"]}), "run2")
    assert ids(second)["t0"] == "P000000001"
    assert {t: p for t, p in ids(second).items() if t != "t0"} == ids(first)
    assert events(second, "run2") == []
    runs = dict(second.records.select("record_token", "first_run").iter_rows())
    assert runs["t0"] == "run2" and runs["t1"] == "run1"


def test_new_cluster_gets_the_next_number(first: Registry) -> None:
    second = assign_person_ids(first, clusters({"a": ["t1", "t3"], "b": ["t2"], "c": ["t4", "t5"], "d": ["t9"]}), "run2")
    assert ids(second)["t9"] == "P000000004"
    assert events(second, "run2") == [("created", "P000000004", None, 1)]


def test_merge_keeps_the_oldest_id_and_records_merged_into(first: Registry) -> None:
    # P000000003's records are the larger part and sort first in the new cluster: the older ID still survives.
    second = assign_person_ids(first, clusters({"m": ["t2", "t4", "t5"], "a": ["t1", "t3"]}), "run2")
    assert ids(second) == {"t1": "P000000001", "t3": "P000000001", "t2": "P000000002",
                           "t4": "P000000002", "t5": "P000000002"}
    assert events(second, "run2") == [("merged_into", "P000000003", "P000000002", 2)]
    assert second.next_number() == 4  # the retired ID is never reused
    third = assign_person_ids(second, clusters({"m": ["t2", "t4", "t5"], "a": ["t1", "t3"], "n": ["t7"]}), "run3")
    assert ids(third)["t7"] == "P000000004"


def test_three_way_merge(first: Registry) -> None:
    second = assign_person_ids(first, clusters({"all": ["t1", "t2", "t3", "t4", "t5"]}), "run2")
    assert set(ids(second).values()) == {"P000000001"}
    assert events(second, "run2") == [("merged_into", "P000000002", "P000000001", 1),
                                      ("merged_into", "P000000003", "P000000001", 2)]


def test_split_gives_the_larger_part_the_old_id(first: Registry) -> None:
    grown = assign_person_ids(first, clusters({"a": ["t1", "t3", "t6"], "b": ["t2"], "c": ["t4", "t5"]}), "run2")
    assert ids(grown)["t6"] == "P000000001"
    # t1 alone sorts first, but {t3, t6} holds more of P000000001's records, so it keeps the ID.
    split = assign_person_ids(grown, clusters({"s1": ["t1"], "s2": ["t3", "t6"], "b": ["t2"], "c": ["t4", "t5"]}), "run3")
    assert ids(split)["t3"] == ids(split)["t6"] == "P000000001"
    assert ids(split)["t1"] == "P000000004"
    assert events(split, "run3") == [("split_from", "P000000004", "P000000001", 1)]
    runs = dict(split.records.select("record_token", "first_run").iter_rows())
    assert runs["t1"] == "run1"  # the record is not new, only its person is


def test_split_tie_goes_to_the_earlier_cluster(first: Registry) -> None:
    split = assign_person_ids(first, clusters({"q": ["t5"], "p": ["t4"], "a": ["t1", "t3"], "b": ["t2"]}), "run2")
    assert ids(split)["t4"] == "P000000003"
    assert ids(split)["t5"] == "P000000004"
    assert events(split, "run2") == [("split_from", "P000000004", "P000000003", 1)]


def test_split_into_three(first: Registry) -> None:
    grown = assign_person_ids(first, clusters({"a": ["t1", "t3", "t6", "t7"], "b": ["t2"], "c": ["t4", "t5"]}), "r2")
    split = assign_person_ids(grown, clusters({"x": ["t1"], "y": ["t3"], "z": ["t6", "t7"], "b": ["t2"],
                                               "c": ["t4", "t5"]}), "r3")
    assert ids(split)["t6"] == ids(split)["t7"] == "P000000001"
    assert (ids(split)["t1"], ids(split)["t3"]) == ("P000000004", "P000000005")
    assert events(split, "r3") == [("split_from", "P000000004", "P000000001", 1),
                                   ("split_from", "P000000005", "P000000001", 1)]


def test_save_and_load_round_trip(first: Registry, tmp_path: Path) -> None:
    assert Registry.load(tmp_path).records.height == 0
    first.save(tmp_path)
    loaded = Registry.load(tmp_path)
    assert loaded.records.equals(first.records.sort("record_token"))
    assert loaded.history.equals(first.history)
    assert loaded.next_number() == 4


def test_history_is_deterministic_when_a_part_holds_two_old_ids() -> None:
    # Found while writing these tests: split_from named one of the two old IDs at random (unordered group_by).
    before = assign_person_ids(Registry.empty(), clusters({"a": ["t1", "t2"], "b": ["t3", "t4"]}), "run1")
    crossed = clusters({"x": ["t1", "t3"], "y": ["t2", "t4"]})
    results = [assign_person_ids(before, crossed, "run2") for _ in range(30)]
    assert len({repr(r.history.rows()) for r in results}) == 1
    # Both old IDs tie 1-1 between x and y, so both go to x (the earlier cluster): x keeps the older one.
    assert ids(results[0]) == {"t1": "P000000001", "t3": "P000000001", "t2": "P000000003", "t4": "P000000003"}
    assert events(results[0], "run2") == [("merged_into", "P000000002", "P000000001", 1),
                                          ("split_from", "P000000003", "P000000001", 2)]


def test_records_sorted_by_token_as_strings_would_sort_them() -> None:
    import secrets

    from carelink.link.registry import sorted_by_token

    hex_tokens = [secrets.token_hex(16) for _ in range(500)] + ["0" * 16 + secrets.token_hex(8) for _ in range(5)]
    for tokens in (hex_tokens, ["t10", "t9", "T1", "t1"], [t.upper() for t in hex_tokens]):
        frame = pl.DataFrame({"record_token": tokens, "n": range(len(tokens))})
        assert sorted_by_token(frame).equals(frame.sort("record_token"))


def _on_strings(registry: Registry, frame: pl.DataFrame, run_id: str) -> Registry:
    """The registry ``assign_person_ids`` makes when it works on the strings themselves."""
    from carelink.link.registry import _assign, _formatted

    assigned, made = _assign(registry.records, registry.next_number(), frame.select("record_token", "cluster_id"),
                             run_id, _formatted)
    return Registry(assigned, pl.concat([registry.history, made]))


def _random_nights(tokens: list[str], nights: int, seed: int) -> list[pl.DataFrame]:
    """Clusters over ``nights`` nights: records come and go, people merge and split; cluster IDs are the smallest
    token of each cluster, as the linker makes them."""
    import random

    rng = random.Random(seed)
    nights_clusters = []
    for _ in range(nights):
        present = [t for t in tokens if rng.random() < 0.8]
        person = {t: rng.randrange(len(tokens) // 3) for t in present}
        frame = pl.DataFrame({"record_token": present, "person": [person[t] for t in present]})
        nights_clusters.append(frame.with_columns(pl.col("record_token").min().over("person").alias("cluster_id"))
                               .select("record_token", "cluster_id").sample(fraction=1.0, shuffle=True, seed=seed))
    return nights_clusters


@pytest.mark.parametrize("kind", ["hex", "shared first half", "short"])
def test_numbers_for_tokens_give_the_registry_the_strings_give(kind: str) -> None:
    # 32-hex tokens are worked on as numbers; tokens sharing their first half, or of another form, on the strings
    import secrets

    tokens = [secrets.token_hex(16) for _ in range(600)]
    if kind == "shared first half":
        tokens[1] = tokens[0][:16] + secrets.token_hex(8)
    elif kind == "short":
        tokens = [f"t{i}" for i in range(600)]
    fast = slow = by_rows = Registry.empty()
    for night, frame in enumerate(_random_nights(tokens, 4, seed=7), start=1):
        fast = assign_person_ids(fast, frame, f"run{night}")
        slow = _on_strings(slow, frame, f"run{night}")
        assert fast.records.equals(slow.records)
        assert fast.history.equals(slow.history)
        # as clustering.cluster gives them: with the row of each cluster ID's token
        rows = frame.with_row_index(CLUSTER_ROW).select("record_token", pl.col(CLUSTER_ROW).cast(pl.Int64))
        with_rows = frame.join(rows.rename({"record_token": "cluster_id"}), on="cluster_id", maintain_order="left")
        by_rows = assign_person_ids(by_rows, with_rows, f"run{night}")
        assert by_rows.records.equals(slow.records) and by_rows.history.equals(slow.history)
    assert {"created", "merged_into", "split_from"} <= set(fast.history["event"])
    assert fast.records.schema == slow.records.schema and fast.history["person_id"].dtype == pl.String


def test_numbers_are_used_only_where_they_stand_for_one_string() -> None:
    import secrets

    from carelink.link.registry import _Numbered

    tokens = [secrets.token_hex(16) for _ in range(50)]
    frame = pl.DataFrame({"record_token": tokens, "cluster_id": tokens})
    first = assign_person_ids(Registry.empty(), frame, "run1")
    assert _Numbered.of(first, frame) is not None
    twin = tokens[0][:16] + secrets.token_hex(8)  # last night's token and tonight's share a first half
    tonight = pl.DataFrame({"record_token": [twin, *tokens[1:]], "cluster_id": [twin, *tokens[1:]]})
    assert _Numbered.of(first, tonight) is None
    elsewhere = frame.with_columns(pl.lit("f" * 32).alias("cluster_id"))  # a cluster ID that is no record's token
    assert _Numbered.of(first, elsewhere) is None
    wide = Registry(first.records.with_columns(pl.lit("P1234567890").alias("person_id")), first.history)
    assert _Numbered.of(wide, frame) is None


def test_cluster_rows_are_trusted_only_while_they_name_the_cluster_ids() -> None:
    import secrets

    from carelink.link.registry import _rows_name_cluster_ids

    tokens = sorted(secrets.token_hex(16) for _ in range(40))
    frame = pl.DataFrame({"record_token": tokens, "cluster_id": [tokens[i - i % 2] for i in range(40)],
                          CLUSTER_ROW: [i - i % 2 for i in range(40)]})
    assert _rows_name_cluster_ids(frame)
    assert not _rows_name_cluster_ids(frame.reverse())  # re-ordered since clustering
    assert not _rows_name_cluster_ids(frame.drop(CLUSTER_ROW))
    assert not _rows_name_cluster_ids(frame.with_columns(pl.lit(99).alias(CLUSTER_ROW)))  # no such row
    first = assign_person_ids(Registry.empty(), frame.reverse(), "run1")  # falls back to reading the IDs
    assert first.records.equals(assign_person_ids(Registry.empty(), frame.drop(CLUSTER_ROW), "run1").records)


def test_rows_in_finds_each_registry_token_among_the_nodes_or_says_it_cannot() -> None:
    import numpy as np

    rng = np.random.default_rng(3)
    halves = rng.integers(0, 2**63, (500, 2))
    tokens = pl.Series("record_token", [f"{high:016x}{low:016x}" for high, low in halves.tolist()]).unique()
    nodes = tokens.sample(fraction=1.0, shuffle=True, seed=1)
    registry = tokens.sort()
    rows = rows_in(nodes, registry)
    assert rows is not None and nodes.gather(rows).equals(registry)
    assert rows_in(nodes.slice(1), registry) is None  # not the same tokens
    assert rows_in(nodes.scatter(0, "z" * 32), registry) is None  # not carelink's tokens
    other = int(np.flatnonzero((nodes != registry[0]).to_numpy())[0])
    assert rows_in(nodes.scatter(other, registry[0][:16] + "0" * 16), registry) is None  # a shared first half


def test_person_keys_stand_for_ids_of_one_width_and_are_the_ids_otherwise() -> None:
    ids = pl.Series("person_id", ["P000000012", "P000000003", "P000000012"])
    keys = person_keys(ids)
    assert keys.to_list() == [12, 3, 12]
    mixed = pl.Series("person_id", ["P000000012", "P12"])
    assert person_keys(mixed).equals(mixed)
