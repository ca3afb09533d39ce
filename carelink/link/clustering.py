"""Cluster scored pairs into people without merging people who have different NHS numbers.

Connected components (what Splink offers) chains records: twin A — record without NHS number — twin B becomes one
person. carelink instead clusters greedily, strongest edge first (Kruskal order), and refuses any union that would
give one person two different valid NHS numbers; such conflicts are resolved by leaving out the weakest links, and
counted. An edge between two records whose valid NHS numbers differ is dropped outright unless every other
identifier agrees exactly (a relative's number typed onto the person's own record). No library does this
constrained clustering, hence the hand-written union-find.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class ClusterStats:
    """What the constraints did."""

    edges_above_threshold: int
    edges_conflicting_nhs_dropped: int
    unions_refused: int


#: Identifiers that must all agree exactly for an edge between two different valid NHS numbers to stand.
_EXCUSING = ("given_name_token", "family_name_token", "dob_token")


def _with_conflicts(nodes: pl.DataFrame, edges: pl.DataFrame) -> pl.DataFrame:
    """Flag edges joining two different valid NHS numbers not excused by exact agreement on everything else."""
    columns = ["record_token", "nhs_number_token", *_EXCUSING]
    left = nodes.select(columns).rename({c: f"{c}_l" for c in columns})
    right = nodes.select(columns).rename({c: f"{c}_r" for c in columns})
    joined = edges.select("record_token_l", "record_token_r", "match_weight", "match_probability").join(
        left, on="record_token_l").join(right, on="record_token_r")
    differ = joined["nhs_number_token_l"] != joined["nhs_number_token_r"]  # null when either is missing
    excused = pl.all_horizontal(pl.col(f"{c}_l") == pl.col(f"{c}_r") for c in _EXCUSING).fill_null(False)
    return joined.with_columns((differ.fill_null(False) & ~excused).alias("nhs_conflict")).select(
        "record_token_l", "record_token_r", "match_weight", "nhs_conflict")


def cluster(nodes: pl.DataFrame, edges: pl.DataFrame, threshold: float) -> tuple[pl.DataFrame, ClusterStats]:
    """Return ``record_token, cluster_id`` for every node (cluster_id = the cluster's smallest record token).

    ``nodes`` needs ``record_token``, ``nhs_number_token`` and the tokens in ``_EXCUSING``.
    """
    strong = _with_conflicts(nodes, edges.filter(pl.col("match_probability") >= threshold))
    conflicting = strong.filter("nhs_conflict")
    usable = strong.filter(~pl.col("nhs_conflict")).sort(
        ["match_weight", "record_token_l", "record_token_r"], descending=[True, False, False]
    )
    tokens = nodes["record_token"].to_list()
    index = {token: i for i, token in enumerate(tokens)}
    parent = list(range(len(tokens)))
    nhs: list[int | None] = nodes["nhs_number_token"].to_list()

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    refused = 0
    for left, right in zip(usable["record_token_l"].to_list(), usable["record_token_r"].to_list(), strict=True):
        a, b = find(index[left]), find(index[right])
        if a == b:
            continue
        if nhs[a] is not None and nhs[b] is not None and nhs[a] != nhs[b]:
            refused += 1
            continue
        parent[b] = a
        if nhs[a] is None:
            nhs[a] = nhs[b]
    roots = [find(i) for i in range(len(tokens))]
    frame = pl.DataFrame({"record_token": tokens, "_root": roots})
    clusters = frame.with_columns(pl.col("record_token").min().over("_root").alias("cluster_id")).drop("_root")
    return clusters, ClusterStats(strong.height, conflicting.height, refused)
