"""Constrained clustering on hand-built scored pairs: NHS conflicts, a relative's number, ambiguous records."""

from __future__ import annotations

import math

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carelink.link.clustering import AMBIGUITY_BITS, CLUSTER_ROW, COMPONENT, EXCUSING, TALLIES, ClusterStats, cluster

NAME = {"given_name_token": 1, "family_name_token": 2, "dob_token": 3}


def _nodes(*rows: tuple[str, int | None, dict[str, int] | None]) -> pl.DataFrame:
    return pl.DataFrame([{"record_token": token, "nhs_number_token": nhs, **(names or NAME)} for token, nhs, names in rows],
                        schema={"record_token": pl.String, "nhs_number_token": pl.Int64, "given_name_token": pl.Int64,
                                "family_name_token": pl.Int64, "dob_token": pl.Int64})


def _edges(*pairs: tuple[str, str, float]) -> pl.DataFrame:
    return pl.DataFrame([{"record_token_l": a, "record_token_r": b, "match_weight": w,
                          "match_probability": 2**w / (1 + 2**w)} for a, b, w in pairs])


def _people(clusters: pl.DataFrame) -> set[frozenset[str]]:
    return {frozenset(group) for group in clusters.group_by("cluster_id").agg("record_token")["record_token"].to_list()}


def test_records_without_nhs_do_not_chain_two_numbers() -> None:
    other = {"given_name_token": 9, "family_name_token": 2, "dob_token": 3}
    nodes = _nodes(("a", 100, None), ("x", None, None), ("b", 200, other))
    clusters, stats = cluster(nodes, _edges(("a", "x", 25.0), ("x", "b", 10.0)), threshold=0.95)
    assert _people(clusters) == {frozenset({"a", "x"}), frozenset({"b"})}
    assert stats.unions_refused == 1 and stats.ambiguous_records_left_alone == 0


def test_two_numbers_with_other_names_never_link() -> None:
    other = {"given_name_token": 9, "family_name_token": 2, "dob_token": 3}
    clusters, stats = cluster(_nodes(("a", 100, None), ("b", 200, other)), _edges(("a", "b", 30.0)), threshold=0.95)
    assert _people(clusters) == {frozenset({"a"}), frozenset({"b"})}
    assert stats.edges_conflicting_nhs_dropped == 1


def test_a_relatives_number_on_an_otherwise_identical_record_joins_and_is_counted() -> None:
    husband = {"given_name_token": 7, "family_name_token": 2, "dob_token": 8}
    nodes = _nodes(("joan_gp", 100, None), ("joan_acute", 100, None), ("joan_social", 200, None), ("fred_gp", 200, husband))
    edges = _edges(("joan_gp", "joan_acute", 30.0), ("joan_gp", "joan_social", 25.0), ("joan_social", "fred_gp", 12.0))
    clusters, stats = cluster(nodes, edges, threshold=0.95)
    assert _people(clusters) == {frozenset({"joan_gp", "joan_acute", "joan_social"}), frozenset({"fred_gp"})}
    assert stats.people_with_a_second_nhs_number == 1
    assert stats.unions_refused == 1  # Joan's group keeps her own number: Fred cannot join through his


def test_a_record_linking_equally_to_two_numbers_is_left_alone() -> None:
    sister = {"given_name_token": 5, "family_name_token": 2, "dob_token": 3}
    nodes = _nodes(("sophia", 100, None), ("sophie", 200, sister), ("soph", None, None))
    clusters, stats = cluster(nodes, _edges(("soph", "sophia", 21.0), ("soph", "sophie", 19.0)), threshold=0.95)
    assert _people(clusters) == {frozenset({"sophia"}), frozenset({"sophie"}), frozenset({"soph"})}
    assert stats.ambiguous_records_left_alone == 1


def test_a_clearly_stronger_link_wins() -> None:
    sister = {"given_name_token": 5, "family_name_token": 2, "dob_token": 3}
    nodes = _nodes(("sophia", 100, None), ("sophie", 200, sister), ("soph", None, None))
    clusters, stats = cluster(nodes, _edges(("soph", "sophia", 30.0), ("soph", "sophie", 12.0)), threshold=0.95)
    assert _people(clusters) == {frozenset({"sophia", "soph"}), frozenset({"sophie"})}
    assert stats.ambiguous_records_left_alone == 0


def test_a_twins_number_under_the_other_twins_name_joins_neither() -> None:
    oliver = {"given_name_token": 11, "family_name_token": 2, "dob_token": 3}
    finley = {"given_name_token": 12, "family_name_token": 2, "dob_token": 3}
    nodes = _nodes(("oliver_gp", 704, oliver), ("finley_gp", 690, finley), ("finley_vol", 704, finley))
    edges = _edges(("finley_vol", "oliver_gp", 30.0), ("finley_vol", "finley_gp", 28.0))
    clusters, stats = cluster(nodes, edges, threshold=0.95)
    assert _people(clusters) == {frozenset({"oliver_gp"}), frozenset({"finley_gp"}), frozenset({"finley_vol"})}
    assert stats.ambiguous_records_left_alone == 1


# --- cluster() against the plain algorithm it replaced, on random small graphs ---------------------------------------

def _reference_with_conflicts(nodes: pl.DataFrame, edges: pl.DataFrame) -> pl.DataFrame:
    """Flag edges joining two different valid NHS numbers not excused by exact agreement on everything else."""
    columns = ["record_token", "nhs_number_token", *EXCUSING]
    left = nodes.select(columns).rename({c: f"{c}_l" for c in columns})
    right = nodes.select(columns).rename({c: f"{c}_r" for c in columns})
    joined = edges.select("record_token_l", "record_token_r", "match_weight", "match_probability").join(
        left, on="record_token_l").join(right, on="record_token_r")
    differ = (pl.col("nhs_number_token_l") != pl.col("nhs_number_token_r")).fill_null(False)  # null: one missing
    excused = pl.all_horizontal(pl.col(f"{c}_l") == pl.col(f"{c}_r") for c in EXCUSING).fill_null(False)
    return joined.with_columns((differ & ~excused).alias("nhs_conflict"), (differ & excused).alias("nhs_excused")).select(
        "record_token_l", "record_token_r", "match_weight", "nhs_conflict", "nhs_excused")


def _reference_ambiguous(nodes: pl.DataFrame, edges: pl.DataFrame) -> pl.Series:
    """Records that link about equally (within ``AMBIGUITY_BITS``) to two NHS numbers.

    A record without a number counts every NHS number it links to. A record with one counts the numbers it reaches
    through an excused edge (exact name and date of birth, another number) and its own number only where the record
    carrying it has another name or date of birth: the signature of a relative's number typed onto the record.
    """
    columns = ["record_token", "nhs_number_token", *EXCUSING]
    both_ways = pl.concat([
        edges.select(pl.col("record_token_l").alias("record"), pl.col("record_token_r").alias("other"), "match_weight"),
        edges.select(pl.col("record_token_r").alias("record"), pl.col("record_token_l").alias("other"), "match_weight"),
    ])
    linked = (both_ways
              .join(nodes.select(columns).rename({c: f"{c}_own" for c in columns}), left_on="record",
                    right_on="record_token_own")
              .join(nodes.select(columns).rename({c: f"{c}_theirs" for c in columns}), left_on="other",
                    right_on="record_token_theirs")
              .drop_nulls("nhs_number_token_theirs"))
    same_identity = pl.all_horizontal(pl.col(f"{c}_own") == pl.col(f"{c}_theirs") for c in EXCUSING).fill_null(False)
    counted = pl.col("nhs_number_token_own").is_null() | (
        pl.col("nhs_number_token_own") != pl.col("nhs_number_token_theirs")) | ~same_identity
    best = linked.filter(counted).group_by("record", "nhs_number_token_theirs").agg(pl.col("match_weight").max())
    ranked = best.sort("match_weight", descending=True).group_by("record", maintain_order=True).agg(
        pl.col("match_weight").head(2))
    close = ranked.filter(pl.col("match_weight").list.len() == 2).filter(
        pl.col("match_weight").list.first() - pl.col("match_weight").list.last() <= AMBIGUITY_BITS)
    return close["record"]


def _reference_cluster(nodes: pl.DataFrame, edges: pl.DataFrame, threshold: float) -> tuple[pl.DataFrame, ClusterStats]:
    """The clustering as it was before components were found vectorised (verbatim), to hold ``cluster`` to."""
    strong = _reference_with_conflicts(nodes, edges.filter(pl.col("match_probability") >= threshold))
    conflicting = strong.filter("nhs_conflict")
    usable = strong.filter(~pl.col("nhs_conflict"))
    ambiguous = _reference_ambiguous(nodes, usable).implode()
    usable = usable.filter(~pl.col("record_token_l").is_in(ambiguous) & ~pl.col("record_token_r").is_in(ambiguous)).sort(
        ["match_weight", "record_token_l", "record_token_r"], descending=[True, False, False]
    )
    tokens = nodes["record_token"].to_list()
    index = {token: i for i, token in enumerate(tokens)}
    parent = list(range(len(tokens)))
    size = [1] * len(tokens)
    nhs: list[int | None] = nodes["nhs_number_token"].to_list()

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    refused = second_numbers = 0
    edges = zip(usable["record_token_l"].to_list(), usable["record_token_r"].to_list(), usable["nhs_excused"].to_list(),
                strict=True)
    for left, right, excused in edges:
        a, b = find(index[left]), find(index[right])
        if a == b:
            continue
        if size[b] > size[a]:
            a, b = b, a
        if nhs[a] is not None and nhs[b] is not None and nhs[a] != nhs[b]:
            if not excused:
                refused += 1
                continue
            second_numbers += 1
        parent[b] = a
        size[a] += size[b]
        if nhs[a] is None:
            nhs[a] = nhs[b]
    roots = [find(i) for i in range(len(tokens))]
    frame = pl.DataFrame({"record_token": tokens, "_root": roots})
    clusters = frame.with_columns(pl.col("record_token").min().over("_root").alias("cluster_id")).drop("_root")
    return clusters, ClusterStats(strong.height, conflicting.height, refused, second_numbers, ambiguous.list.len()[0])


_SCHEMA = {"record_token": pl.String, "nhs_number_token": pl.Int64, "given_name_token": pl.Int64,
           "family_name_token": pl.Int64, "dob_token": pl.Int64}
_EDGE_SCHEMA = {"record_token_l": pl.String, "record_token_r": pl.String, "match_weight": pl.Float64,
                "match_probability": pl.Float64}


def _mostly(usual: st.SearchStrategy, sometimes: st.SearchStrategy, rarely: st.SearchStrategy) -> st.SearchStrategy:
    return st.integers(0, 19).flatmap(lambda k: rarely if k == 0 else sometimes if k < 5 else usual)


@st.composite
def _graphs(draw: st.DrawFn) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Records with NHS numbers from a small pool (often missing) and names / dates of birth from small pools, so that
    conflicts, excused edges and ambiguous records all happen; weights with ties; probabilities about 0.95."""
    tokens = draw(st.lists(st.text("abcdefgh", min_size=1, max_size=3), min_size=2, max_size=16, unique=True))
    tokens = list(tokens)
    small = st.one_of(st.sampled_from([1, 2]), st.none() if draw(st.booleans()) else st.just(1))
    nodes = pl.DataFrame([{"record_token": token, "nhs_number_token": draw(st.sampled_from([None, None, 100, 200, 300])),
                           "given_name_token": draw(small), "family_name_token": draw(st.sampled_from([7, 7, 8])),
                           "dob_token": draw(small)} for token in tokens], schema=_SCHEMA)
    endpoint = st.sampled_from(tokens)
    if draw(st.integers(0, 9)) == 0:  # edges to records not among the nodes, or to no record
        endpoint = st.one_of(endpoint, st.sampled_from(["zz", None]))
    weight = _mostly(st.sampled_from([0.0, 5.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0]), st.floats(-5, 40, allow_nan=False),
                     st.sampled_from([math.nan, None]))
    probability = _mostly(st.sampled_from([0.95, 0.951, 0.99, 1.0, 0.949, 0.9]), st.floats(0.94, 1.0), st.none())
    rows = draw(st.lists(st.tuples(endpoint, endpoint, weight, probability), min_size=len(tokens) // 2,
                        max_size=3 * len(tokens)))
    if rows and draw(st.booleans()):  # the same pair scored again, either way round
        a, b, w, p = draw(st.sampled_from(rows))
        rows.append((b, a, w, p) if draw(st.booleans()) else (a, b, w, p))
    edges = pl.DataFrame([dict(zip(_EDGE_SCHEMA, row, strict=True)) for row in rows], schema=_EDGE_SCHEMA)
    return nodes, edges


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_graphs())
def test_cluster_matches_the_plain_algorithm(graph: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    nodes, edges = graph
    expected, expected_stats = _reference_cluster(nodes, edges, 0.95)
    got, stats = cluster(nodes, edges, 0.95)
    assert got.select("record_token", "cluster_id").equals(expected), (got, expected)
    assert got["cluster_id"].equals(nodes["record_token"].gather(got[CLUSTER_ROW]), check_names=False)
    assert stats == expected_stats
    _assert_components_decide_alone(nodes, edges, got)


def _strong_components(nodes: pl.DataFrame, edges: pl.DataFrame, threshold: float) -> set[frozenset[str]]:
    """The records joined by edges at or above ``threshold`` (between two of the nodes), by a plain union-find."""
    tokens = nodes["record_token"].to_list()
    root = {token: token for token in tokens}

    def find(token: str) -> str:
        while root[token] != token:
            token = root[token]
        return token

    for left, right, probability in edges.select("record_token_l", "record_token_r", "match_probability").iter_rows():
        if left in root and right in root and probability is not None and probability >= threshold:
            root[find(left)] = find(right)
    groups: dict[str, set[str]] = {}
    for token in tokens:
        groups.setdefault(find(token), set()).add(token)
    return {frozenset(group) for group in groups.values()}


def _assert_components_decide_alone(nodes: pl.DataFrame, edges: pl.DataFrame, got: pl.DataFrame) -> None:
    """``COMPONENT`` labels the components of the strong edges, and each component clustered on its own (its records
    and the edges from them) gives the clusters and tallies it has among everyone: what lets a night carry the
    people of components no change touched."""
    labelled = {frozenset(group) for group in got.group_by(COMPONENT).agg("record_token")["record_token"].to_list()}
    assert labelled == _strong_components(nodes, edges, 0.95)
    columns = ["record_token", "cluster_id", *TALLIES]
    for label in got[COMPONENT].unique().to_list():
        part = got[COMPONENT] == label
        alone, _ = cluster(nodes.filter(part), edges.filter(pl.col("record_token_l").is_in(
            nodes["record_token"].filter(part).implode())), 0.95)
        assert alone.select(columns).equals(got.filter(part).select(columns)), label


def test_cluster_matches_the_plain_algorithm_on_a_chain_of_numbers() -> None:
    """Many records, several numbers per component and records without one between them."""
    import random

    rng = random.Random(7)
    count = 400
    nodes = pl.DataFrame([{"record_token": f"r{rng.randrange(10**9):09d}{i}", "nhs_number_token": rng.choice([None, 1, 2, 3, 4]),
                           "given_name_token": rng.choice([1, 2]), "family_name_token": 7, "dob_token": rng.choice([1, 2])}
                          for i in range(count)], schema=_SCHEMA)
    tokens = nodes["record_token"].to_list()
    rows = [(tokens[i], tokens[rng.randrange(count)], float(rng.choice(range(0, 40, 3))), rng.choice([0.9, 0.96, 1.0]))
            for i in range(count) for _ in range(2)]
    edges = pl.DataFrame([dict(zip(_EDGE_SCHEMA, row, strict=True)) for row in rows], schema=_EDGE_SCHEMA)
    expected, expected_stats = _reference_cluster(nodes, edges, 0.95)
    got, stats = cluster(nodes, edges, 0.95)
    assert got.select("record_token", "cluster_id").equals(expected)
    assert got["cluster_id"].equals(nodes["record_token"].gather(got[CLUSTER_ROW]), check_names=False)
    assert stats == expected_stats
    assert stats.unions_refused and stats.people_with_a_second_nhs_number  # the greedy loop had work to do
    _assert_components_decide_alone(nodes, edges, got)


def test_record_tokens_must_be_unique() -> None:
    nodes = _nodes(("a", 100, None), ("a", None, None))
    with pytest.raises(ValueError, match="unique"):
        cluster(nodes, _edges(("a", "a", 25.0)), threshold=0.95)


def test_clusters_come_in_the_nodes_order() -> None:
    # the link stage adds each record's source by position, not by a join on the tokens
    nodes = _nodes(("m", 100, None), ("c", None, None), ("z", 200, None), ("a", 100, None), ("k", None, None))
    clusters, _ = cluster(nodes, _edges(("a", "m", 25.0), ("c", "z", 20.0)), threshold=0.95)
    assert clusters["record_token"].to_list() == ["m", "c", "z", "a", "k"]
    assert clusters["cluster_id"].to_list() == ["a", "c", "c", "a", "k"]
    assert clusters[CLUSTER_ROW].to_list() == [3, 1, 1, 3, 4]  # the rows of those tokens
