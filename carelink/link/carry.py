"""Carry last night's people forward for the components of strong edges that no change touched.

A record's cluster is decided inside its component of the edges at or above the threshold
(``clustering.COMPONENT``), by the records and edges in it alone. Tonight's edges are last night's among records
unchanged since, plus freshly scored pairs, each with a new or changed record at one end. So a component of last
night keeps its clusters tonight when all its records are still there and unchanged, and it lost no strong edge (to
a record gone or changed) and gained none. The same records, edges and features give the same clusters, and a
cluster keeps the ID its records had, so its people are last night's. The rest is clustered and assigned afresh,
against the registry's rows of those records:
- new and changed records;
- the ends of fresh strong edges;
- every component of last night that one of those, or a lost edge, touches.

The registry, history and counts come out as clustering everyone would make them (``tests/link/test_carry.py``
compares the two). Where a check of that reasoning fails (the strong edges or registry rows do not add up), everyone
is clustered, with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl

from carelink.link.clustering import COMPONENT, TALLIES, ClusterStats, cluster
from carelink.link.registry import Registry, assign_person_ids, sorted_by_token

log = logging.getLogger(__name__)

#: How stored components were made, kept with them (with the threshold): components made another way are not
#: carried from.
CLUSTERING_FORMAT = "strong-components/1"


def clustering_made(threshold: float) -> dict[str, object]:
    """What stored components must have been made with to be carried from tonight."""
    return {"format": CLUSTERING_FORMAT, "threshold": threshold}


@dataclass(frozen=True)
class Since:
    """What changed since the last run, for carrying its people forward (arrays by tonight's record row)."""

    previous_row: np.ndarray  # the record's row in the last run's population; -1 where new or changed
    touched: np.ndarray  # new or changed, or at an end of a freshly scored strong edge
    lost_components: pl.Series  # the last run's ``COMPONENT`` of each strong edge lost (an end gone or changed)
    gone: pl.Series  # the last run's record tokens gone or changed since
    components: pl.DataFrame | None  # the last run's ``COMPONENT`` and ``TALLIES``, in its population's order

    @property
    def rescored(self) -> int:
        """Records new or changed since the last run."""
        return int((self.previous_row < 0).sum())


@dataclass(frozen=True)
class People:
    """Tonight's registry, what the clustering constraints did, each record's component and tallies (in the
    nodes' order, for ``population.parquet``), and how many records kept last night's person without clustering."""

    registry: Registry
    stats: ClusterStats
    components: pl.DataFrame
    carried: int = 0


def assign_people(nodes: pl.DataFrame, edges: pl.DataFrame, threshold: float, prior: Registry, run_id: str,
                  since: Since | None = None) -> People:
    """Cluster the records and give each cluster its person ID: the records no change touched keep last night's
    (``since``, where its components can be used), the rest are clustered and assigned afresh.

    ``nodes`` as ``clustering.cluster`` needs them; ``edges`` tonight's scored pairs; ``prior`` last night's registry.
    """
    if since is not None and since.components is not None:
        people = _carried(nodes, edges, threshold, prior, run_id, since, since.components)
        if people is not None:
            return people
    clusters, stats = cluster(nodes, edges, threshold)
    registry = assign_person_ids(prior, clusters, run_id)
    return People(registry, stats, clusters.select(COMPONENT, *TALLIES))


def _carried(nodes: pl.DataFrame, edges: pl.DataFrame, threshold: float, prior: Registry, run_id: str, since: Since,
             before: pl.DataFrame) -> People | None:
    """``assign_people`` clustering only the records a change reaches; None where the checks do not add up."""
    unchanged = since.previous_row >= 0
    previous_rows = since.previous_row[unchanged]
    label = np.zeros(nodes.height, dtype=np.uint64)
    label[unchanged] = before[COMPONENT].to_numpy()[previous_rows]
    hit = pl.concat([pl.Series(label[since.touched & unchanged]), since.lost_components.cast(pl.UInt64)]).unique()
    affected = ~unchanged | since.touched | pl.Series(label).is_in(hit.implode()).to_numpy()
    rows, kept = np.flatnonzero(affected), np.flatnonzero(~affected)
    part = nodes[rows]
    part_tokens = part["record_token"].implode()
    strong = edges.filter(pl.col("match_probability") >= threshold)
    part_edges = strong.filter(pl.col("record_token_l").is_in(part_tokens))
    clusters, part_stats = cluster(part, part_edges, threshold)
    carried = before.select(TALLIES)[since.previous_row[kept]]
    stats = ClusterStats(**{t: getattr(part_stats, t) + int(carried[t].sum()) for t in TALLIES})
    if stats.edges_above_threshold != strong.height:
        log.warning("link: %d strong edges where the carried components expect %d; clustering everyone",
                    strong.height, stats.edges_above_threshold)
        return None
    in_part = prior.records["record_token"].is_in(part_tokens)
    records = prior.records.filter(~in_part & ~pl.col("record_token").is_in(since.gone.implode()))
    if records.height != kept.size:
        log.warning("link: %d registry rows for %d records kept; clustering everyone", records.height, kept.size)
        return None
    within = prior.records.filter(in_part)
    assigned = assign_person_ids(Registry(within, prior.history), clusters, run_id, next_number=prior.next_number())
    merged = records.with_columns(pl.lit(run_id).alias("last_run")).merge_sorted(assigned.records, "record_token")
    if not merged["record_token"].is_sorted():  # tokens of another form than carelink's, sorted otherwise
        merged = sorted_by_token(merged)
    components = {}
    for column in (COMPONENT, *TALLIES):
        previous = before[column].to_numpy()
        values = np.empty(nodes.height, dtype=previous.dtype)
        values[rows] = clusters[column].to_numpy()
        values[kept] = previous[since.previous_row[kept]]
        components[column] = values
    log.info("link: %d records kept last night's people; %d clustered afresh", kept.size, rows.size)
    return People(Registry(merged, assigned.history), stats, pl.DataFrame(components).cast(before.schema),
                  carried=int(kept.size))
