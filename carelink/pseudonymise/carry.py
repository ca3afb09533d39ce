"""Carry last night's node rows forward: a record whose standardised row has not changed since the previous run
keeps its node row, so a night pseudonymises afresh only its new and changed records.

A node row is a function of the record's standardised fields (``features.NODE_INPUTS`` and any sealed field), the
linkage key, the Bloom hardening, the source kind and the feature code; of those, only the age band depends on the
reference date, and it is recomputed for every record each night. Rows are carried only when all of that is
unchanged: the previous delivery passes its manifest check, its metadata (key ID, carelink version, feature
fingerprint, hardening, source, kind) equals tonight's, and its node columns are tonight's. A record is unchanged
when its standardised fields, compared value by value after a 64-bit row hash pairs it with its previous row, are
equal. The nodes come out in tonight's record order, the same bytes a full pseudonymisation writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from carelink.errors import IntegrityError
from carelink.tables import stacked_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreviousDelivery:
    """Where the previous run's records of a source are: its standardised records and its pseudonymised delivery."""

    standardised: Path
    delivery: Path

    @classmethod
    def of(cls, ingest_folder: Path, delivery_folder: Path) -> PreviousDelivery:
        return cls(ingest_folder / "standardised.parquet", delivery_folder)


@dataclass(frozen=True)
class Carried:
    """The nodes of tonight's records and which rows were pseudonymised afresh (None: all of them)."""

    nodes: pl.DataFrame
    fresh_rows: np.ndarray | None = None

    @property
    def carried(self) -> int:
        """How many rows were carried from the previous delivery."""
        return 0 if self.fresh_rows is None else self.nodes.height - self.fresh_rows.size


def unchanged_pairs(current: pl.DataFrame, previous: pl.DataFrame, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Row positions ``(tonight, previous)`` of the records whose ``columns`` are equal in both frames.

    Rows are paired by a hash of those columns (one previous row per hash: duplicates are not carried) and every
    pair is then checked value by value, so a hash collision cannot carry a changed row.
    """
    def hashed(frame: pl.DataFrame, index: str) -> pl.DataFrame:
        hashes = frame.select(columns).hash_rows()
        return pl.DataFrame({"hash": hashes}).with_row_index(index).filter(pl.col("hash").is_unique())

    pairs = hashed(current, "row").join(hashed(previous, "previous_row"), on="hash", how="inner")
    row, previous_row = pairs["row"], pairs["previous_row"]
    tonight, before = pl.collect_all([current.lazy().select(pl.col(columns).gather(row)),  # in parallel
                                      previous.lazy().select(pl.col(columns).gather(previous_row))])
    equal = pl.Series([True] * pairs.height, dtype=pl.Boolean)
    for column in columns:
        equal &= tonight[column].eq_missing(before[column])
    return row.filter(equal).to_numpy(), previous_row.filter(equal).to_numpy()


def carry_forward(standardised: pl.DataFrame, previous: PreviousDelivery | None, meta: dict, inputs: Sequence[str],
                  build: Callable[[pl.DataFrame], pl.DataFrame], recompute: Callable[[pl.DataFrame], list[pl.Series]],
                  verify: Callable[[Path], dict]) -> Carried:
    """Tonight's nodes: the previous delivery's rows for unchanged records, ``build`` for the rest.

    Args:
        standardised: Tonight's standardised records.
        previous: The previous run's records of this source, or None (first night, or not wanted).
        meta: Tonight's delivery metadata; the previous delivery's must be equal for rows to be carried.
        inputs: The standardised columns a node row is made from.
        build: Node rows of a frame of standardised records (the full pseudonymisation).
        recompute: Node columns recomputed for every record (those that depend on the reference date).
        verify: Checks a delivery folder against its manifest (raises ``IntegrityError``).
    """
    usable = previous is not None and _usable(previous, meta, verify)
    if not usable:
        return Carried(build(standardised))
    assert previous is not None
    before = pl.read_parquet(previous.standardised)
    if any(column not in before.columns or before.schema[column] != standardised.schema[column] for column in inputs):
        log.info("%s: standardised columns changed since the previous run; every record pseudonymised afresh",
                 previous.delivery)
        return Carried(build(standardised))
    rows, previous_rows = unchanged_pairs(standardised, before, inputs)
    del before
    fresh_rows = np.setdiff1d(np.arange(standardised.height), rows, assume_unique=True)
    fresh = build(standardised[fresh_rows])
    previous_nodes = pl.read_parquet(previous.delivery / "nodes.parquet")
    if previous_nodes.schema != fresh.schema:
        log.info("%s: node columns changed since the previous run; every record pseudonymised afresh",
                 previous.delivery)
        return Carried(build(standardised))
    # one gather from previous rows and fresh rows stacked, in tonight's record order
    source = np.empty(standardised.height, dtype=np.int64)
    source[rows] = previous_rows
    source[fresh_rows] = previous_nodes.height + np.arange(fresh_rows.size)
    nodes = stacked_rows([previous_nodes, fresh], source)
    return Carried(nodes.with_columns(recompute(standardised)), fresh_rows)


def _usable(previous: PreviousDelivery, meta: dict, verify: Callable[[Path], dict]) -> bool:
    """Whether the previous delivery may be carried from: present, intact and made the way tonight's is."""
    if not previous.standardised.is_file() or not (previous.delivery / "nodes.parquet").is_file():
        return False
    try:
        manifest = verify(previous.delivery)
    except IntegrityError as exc:
        log.warning("not carrying records forward: %s", exc)
        return False
    made = {name: manifest.get(name) for name in meta}
    if made != meta:
        changed = sorted(name for name in meta if made[name] != meta[name])
        log.info("%s: %s changed since the previous run; every record pseudonymised afresh", previous.delivery,
                 ", ".join(changed))
        return False
    return True
