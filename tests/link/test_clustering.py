"""Constrained clustering on hand-built scored pairs: NHS conflicts, a relative's number, ambiguous records."""

from __future__ import annotations

import polars as pl

from carelink.link.clustering import cluster

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
