"""Cluster scored pairs into people without merging people who have different NHS numbers.

Connected components (what Splink offers) chains records: twin A — record without NHS number — twin B becomes one
person. carelink instead clusters greedily, strongest edge first (Kruskal order), and refuses any union that would
give one person two different valid NHS numbers; such conflicts are resolved by leaving out the weakest links, and
counted. An edge between two records whose valid NHS numbers differ is dropped outright unless every other
identifier agrees exactly (a relative's number typed onto the person's own record); such an excused edge may join
the two groups, which keep the number of the larger group for later checks, and is counted so the linkage report
names the people holding a second number. A record without an NHS number that links about as strongly to records
of two different NHS numbers (a nickname two siblings could share, a twin's record with no number) belongs to
neither, and so does a record carrying one twin's number under the other twin's name: it is left on its own and
counted. No library does this constrained clustering, hence the hand-written
union-find.
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
    people_with_a_second_nhs_number: int = 0
    ambiguous_records_left_alone: int = 0


#: A record is ambiguous when its links to two different NHS numbers are within this many bits of each other.
AMBIGUITY_BITS = 10.0
#: Identifiers that must all agree exactly for an edge between two different valid NHS numbers to stand.
_EXCUSING = ("given_name_token", "family_name_token", "dob_token")


def _with_conflicts(nodes: pl.DataFrame, edges: pl.DataFrame) -> pl.DataFrame:
    """Flag edges joining two different valid NHS numbers not excused by exact agreement on everything else."""
    columns = ["record_token", "nhs_number_token", *_EXCUSING]
    left = nodes.select(columns).rename({c: f"{c}_l" for c in columns})
    right = nodes.select(columns).rename({c: f"{c}_r" for c in columns})
    joined = edges.select("record_token_l", "record_token_r", "match_weight", "match_probability").join(
        left, on="record_token_l").join(right, on="record_token_r")
    differ = (pl.col("nhs_number_token_l") != pl.col("nhs_number_token_r")).fill_null(False)  # null: one missing
    excused = pl.all_horizontal(pl.col(f"{c}_l") == pl.col(f"{c}_r") for c in _EXCUSING).fill_null(False)
    return joined.with_columns((differ & ~excused).alias("nhs_conflict"), (differ & excused).alias("nhs_excused")).select(
        "record_token_l", "record_token_r", "match_weight", "nhs_conflict", "nhs_excused")


def _ambiguous(nodes: pl.DataFrame, edges: pl.DataFrame) -> pl.Series:
    """Records that link about equally (within ``AMBIGUITY_BITS``) to two NHS numbers.

    A record without a number counts every NHS number it links to. A record with one counts the numbers it reaches
    through an excused edge (exact name and date of birth, another number) and its own number only where the record
    carrying it has another name or date of birth: the signature of a relative's number typed onto the record.
    """
    columns = ["record_token", "nhs_number_token", *_EXCUSING]
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
    same_identity = pl.all_horizontal(pl.col(f"{c}_own") == pl.col(f"{c}_theirs") for c in _EXCUSING).fill_null(False)
    counted = pl.col("nhs_number_token_own").is_null() | (
        pl.col("nhs_number_token_own") != pl.col("nhs_number_token_theirs")) | ~same_identity
    best = linked.filter(counted).group_by("record", "nhs_number_token_theirs").agg(pl.col("match_weight").max())
    ranked = best.sort("match_weight", descending=True).group_by("record", maintain_order=True).agg(
        pl.col("match_weight").head(2))
    close = ranked.filter(pl.col("match_weight").list.len() == 2).filter(
        pl.col("match_weight").list.first() - pl.col("match_weight").list.last() <= AMBIGUITY_BITS)
    return close["record"]


def cluster(nodes: pl.DataFrame, edges: pl.DataFrame, threshold: float) -> tuple[pl.DataFrame, ClusterStats]:
    """Return ``record_token, cluster_id`` for every node (cluster_id = the cluster's smallest record token).

    ``nodes`` needs ``record_token``, ``nhs_number_token`` and the tokens in ``_EXCUSING``.
    """
    strong = _with_conflicts(nodes, edges.filter(pl.col("match_probability") >= threshold))
    conflicting = strong.filter("nhs_conflict")
    usable = strong.filter(~pl.col("nhs_conflict"))
    ambiguous = _ambiguous(nodes, usable).implode()
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
