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

The union-find only has work to do where a connected component of the usable links holds two or more different NHS
numbers: with at most one number no union can be refused and no edge can be excused (an excused edge joins two
different numbers), so the greedy result there is the component itself. Components are found vectorised and the
Python loop runs over the links of the few components with several numbers only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components


@dataclass(frozen=True)
class ClusterStats:
    """What the constraints did."""

    edges_above_threshold: int
    edges_conflicting_nhs_dropped: int
    unions_refused: int
    people_with_a_second_nhs_number: int = 0
    ambiguous_records_left_alone: int = 0

    @classmethod
    def of(cls, clusters: pl.DataFrame) -> ClusterStats:
        """The sums of ``cluster``'s per-record ``TALLIES`` (of any rows of its output)."""
        return cls(**{tally: int(clusters[tally].sum()) for tally in TALLIES})


#: ``cluster``'s per-record counts of what the constraints did, each named as the ``ClusterStats`` it sums to: an
#: edge is counted on its left end, a union on the left end of the edge that made or was refused it.
TALLIES = tuple(ClusterStats.__dataclass_fields__)
#: The column of ``cluster``'s output labelling each record's component of the edges at or above the threshold (all
#: of them, conflicting or not): the smallest 64-bit hash of a record token in it, the same whatever the row order.
#: Everything that decides a record's cluster, and the counts of what the constraints did, lies inside it.
COMPONENT = "component"


#: A record is ambiguous when its links to two different NHS numbers are within this many bits of each other.
AMBIGUITY_BITS = 10.0
#: The column of ``cluster``'s output giving the row of each record's cluster ID among the nodes.
CLUSTER_ROW = "cluster_row"
#: Identifiers that must all agree exactly for an edge between two different valid NHS numbers to stand.
EXCUSING = ("given_name_token", "family_name_token", "dob_token")


def _greedy(pairs: Iterable[tuple[int, int, bool]], nhs: list) -> tuple[list[int], list[int], list[int]]:
    """Union ``pairs`` (left index, right index, excused) in the order given, refusing unions that would give one
    cluster two different NHS numbers unless excused; return each record's root and the left index of every union
    refused and of every number excused."""
    parent = list(range(len(nhs)))
    size = [1] * len(nhs)
    nhs = list(nhs)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    refused: list[int] = []
    second_numbers: list[int] = []
    for left, right, excused in pairs:
        a, b = find(left), find(right)
        if a == b:
            continue
        if size[b] > size[a]:
            a, b = b, a
        if nhs[a] is not None and nhs[b] is not None and nhs[a] != nhs[b]:
            if not excused:
                refused.append(left)
                continue
            second_numbers.append(left)
        parent[b] = a
        size[a] += size[b]
        if nhs[a] is None:
            nhs[a] = nhs[b]
    return [find(i) for i in range(len(nhs))], refused, second_numbers


def cluster(nodes: pl.DataFrame, edges: pl.DataFrame, threshold: float) -> tuple[pl.DataFrame, ClusterStats]:
    """Return ``record_token, cluster_id`` for every node, in the nodes' order (cluster_id = the cluster's smallest
    record token), and ``CLUSTER_ROW``: the nodes' row of that token (for work on row numbers, as the registry's).

    ``nodes`` needs unique ``record_token`` values, ``nhs_number_token`` and the tokens in ``EXCUSING``. Records are
    worked on by row number. Inside a connected component of the usable edges that holds at most one NHS number no
    union can be refused, so the greedy loop runs only over the components holding two or more (a small minority):
    the same clusters as running it over every edge, about five times faster at 1M records (``bench/cluster.py``).
    """
    if nodes.height == 0:
        empty = pl.DataFrame(schema={"record_token": pl.String, "cluster_id": pl.String, CLUSTER_ROW: pl.Int64,
                                     COMPONENT: pl.UInt64, **dict.fromkeys(TALLIES, pl.UInt32)})
        return empty, ClusterStats(0, 0, 0)
    columns = ["nhs_number_token", *EXCUSING]
    strong = edges.lazy().select("record_token_l", "record_token_r", "match_weight", "match_probability").filter(
        pl.col("match_probability") >= threshold).drop("match_probability").with_row_index("_edge").collect()
    # both ends' node row numbers in one join, in edge order: left ends, then right ends
    ends = pl.concat([strong["record_token_l"], strong["record_token_r"]]).alias("record_token").to_frame().join(
        nodes.select("record_token").with_row_index("_row"), on="record_token", how="left", maintain_order="left")
    if ends.height != 2 * strong.height:
        raise ValueError("record tokens must be unique to be clustered")
    pairs = strong.select("_edge", "match_weight").with_columns(
        ends["_row"][:strong.height].alias("_l"), ends["_row"][strong.height:].alias("_r")).drop_nulls(["_l", "_r"])
    attributes = nodes.select(columns)
    pairs = pl.concat([pairs, attributes[pairs["_l"]].rename({c: f"{c}_l" for c in columns}),
                       attributes[pairs["_r"]].rename({c: f"{c}_r" for c in columns})], how="horizontal")
    differ = (pl.col("nhs_number_token_l") != pl.col("nhs_number_token_r")).fill_null(False)
    excused = pl.all_horizontal(pl.col(f"{c}_l") == pl.col(f"{c}_r") for c in EXCUSING).fill_null(False)
    pairs = pairs.with_columns((differ & ~excused).alias("nhs_conflict"), (differ & excused).alias("nhs_excused"))
    usable = pairs.filter(~pl.col("nhs_conflict"))

    # _ambiguous, on row numbers; each direction's attributes are already on the pair
    def direction(own: str, theirs: str) -> pl.LazyFrame:
        return usable.lazy().select(pl.col(f"_{own}").alias("record"), "match_weight",
                             *(pl.col(f"{c}_{own}").alias(f"{c}_own") for c in columns),
                             *(pl.col(f"{c}_{theirs}").alias(f"{c}_theirs") for c in columns))

    same_identity = pl.all_horizontal(pl.col(f"{c}_own") == pl.col(f"{c}_theirs") for c in EXCUSING).fill_null(False)
    counted = pl.col("nhs_number_token_own").is_null() | (
        pl.col("nhs_number_token_own") != pl.col("nhs_number_token_theirs")) | ~same_identity
    linked = pl.concat([direction("l", "r"), direction("r", "l")]).drop_nulls("nhs_number_token_theirs")
    best = (linked.filter(counted).group_by("record", "nhs_number_token_theirs").agg(pl.col("match_weight").max())
            .filter(pl.len().over("record") >= 2))  # a record reaching one number cannot be ambiguous
    ranked = best.sort("match_weight", descending=True).group_by("record", maintain_order=True).agg(
        pl.col("match_weight").head(2))
    ambiguous = ranked.filter(pl.col("match_weight").list.len() == 2).filter(
        pl.col("match_weight").list.first() - pl.col("match_weight").list.last() <= AMBIGUITY_BITS
    ).select("record").collect()["record"]
    usable = usable.filter(~pl.col("_l").is_in(ambiguous.implode()) & ~pl.col("_r").is_in(ambiguous.implode()))

    # connected components; only those holding two or more numbers need the greedy loop
    left, right = usable["_l"].to_numpy(), usable["_r"].to_numpy()
    graph = coo_array((np.ones(len(left), dtype=np.int8), (left, right)), shape=(nodes.height, nodes.height))
    n_components, component = connected_components(graph.tocsr(), directed=False)
    nhs = nodes["nhs_number_token"]
    numbered = np.flatnonzero(nhs.is_not_null().to_numpy())
    # a component holds several numbers where some record's number differs from that of one record in it
    one = np.empty(n_components, dtype=np.int64)
    one[component[numbered]] = numbered  # whichever record of the component is written last
    differs = (nhs.gather(numbered) != nhs.gather(one[component[numbered]])).to_numpy()
    in_several = np.zeros(n_components, dtype=bool)
    in_several[component[numbered[differs]]] = True
    knotted = np.flatnonzero(in_several[component])  # records in components with several numbers
    local = np.full(nodes.height, -1, dtype=np.int64)
    local[knotted] = np.arange(len(knotted))
    knots = usable.filter(in_several[component[left]]).select("_l", "_r", "nhs_excused", "match_weight", "_edge")
    knots = knots.with_columns(strong["record_token_l"].gather(knots["_edge"]),
                               strong["record_token_r"].gather(knots["_edge"])).sort(
        ["match_weight", "record_token_l", "record_token_r"], descending=[True, False, False])
    ordered = zip(local[knots["_l"].to_numpy()].tolist(), local[knots["_r"].to_numpy()].tolist(),
                  knots["nhs_excused"].to_list(), strict=True)
    roots, refused, second_numbers = _greedy(ordered, nhs.gather(knotted).to_list())
    tallies = {"edges_above_threshold": pairs["_l"], "edges_conflicting_nhs_dropped": pairs.filter("nhs_conflict")["_l"],
               "unions_refused": knotted[refused], "people_with_a_second_nhs_number": knotted[second_numbers],
               "ambiguous_records_left_alone": ambiguous}
    group = component.astype(np.int64)
    group[knotted] = n_components + np.asarray(roots, dtype=np.int64)
    tokens = nodes["record_token"]
    # cluster_id = the smallest token of each group, taken over the groups laid out one after another
    order = np.argsort(group, kind="stable")
    laid_out = group[order]
    segment = np.concatenate(([0], np.cumsum(laid_out[1:] != laid_out[:-1])))
    laid = pl.DataFrame({"segment": segment, "token": tokens.gather(order), "row": order})
    smallest = laid.with_columns(pl.col("segment").set_sorted()).group_by("segment", maintain_order=True).agg(
        pl.col("row").get(pl.col("token").arg_min()))["row"]
    of_record = np.empty_like(segment)
    of_record[order] = segment
    rows = smallest.gather(of_record)
    clusters = pl.DataFrame({"record_token": tokens, "cluster_id": tokens.gather(rows), CLUSTER_ROW: rows,
                             COMPONENT: _components(pairs["_l"].to_numpy(), pairs["_r"].to_numpy(), tokens)})
    clusters = clusters.with_columns(
        pl.Series(tally, np.bincount(np.asarray(rows_counted, dtype=np.int64), minlength=nodes.height),
                  dtype=pl.UInt32) for tally, rows_counted in tallies.items())
    return clusters, ClusterStats.of(clusters)


def _components(left: np.ndarray, right: np.ndarray, tokens: pl.Series) -> pl.Series:
    """``COMPONENT`` of every record, from the node rows at the ends of every edge at or above the threshold."""
    graph = coo_array((np.ones(len(left), dtype=np.int8), (left, right)), shape=(tokens.len(), tokens.len()))
    _, component = connected_components(graph.tocsr(), directed=False)
    hashes = pl.DataFrame({"component": component, "hash": tokens.hash(seed=0)})
    return hashes.select(pl.col("hash").min().over("component"))["hash"].alias(COMPONENT)
