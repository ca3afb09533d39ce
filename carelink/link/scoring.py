"""Score candidate pairs with a trained model: carelink blocks, Splink scores.

Splink generates a model's candidate pairs itself, one blocking rule at a time, excluding the pairs of every earlier
rule with a growing chain of ``NOT (...)`` conditions, and joins records by their string record tokens. On DuckDB,
carelink instead numbers the records (``node_id``), joins each rule over integer ids and keeps every distinct pair
once, by sorting the pairs packed into integers (``candidate_pairs``; grouping them in SQL took 4 s instead of
Splink's 18 s at 1M records for the same 4.1M pairs, sorting halves that again at 10M), and has Splink
score exactly those pairs (``register_blocked_pairs_for_predict``), a bounded number at a time, so the scored pairs
of a ten-million-record population never have to be held at once. The same function serves an incremental night:
only pairs touching a new or changed record are generated.

The pairs are those Splink's own blocking would give (``tests/link/test_scoring.py`` checks it), and each carries
the index of the first rule that finds it, as Splink's ``match_key`` does. The Spark backend keeps Splink's blocking,
which runs on the cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from carelink.link.model import Block
from carelink.tables import cut_like

log = logging.getLogger(__name__)

#: Column numbering the records for scoring; Splink's unique id while scoring.
NODE_ID = "node_id"
#: Most candidate pairs scored at once (DuckDB's working set while scoring grows with it).
CHUNK_PAIRS = 2_000_000
_PAIR = "__pair"


def with_node_ids(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with ``node_id`` = its row number (32-bit), first, cut where ``frame``'s columns are."""
    return frame.select(cut_like(pl.Series(NODE_ID, np.arange(frame.height, dtype=np.int32)), frame), pl.all())


def _rule_joins_sql(table: str, rules: tuple[Block, ...], touching: str | None = None) -> str:
    """SQL: every pair (``a`` < ``b`` by ``node_id``) each rule blocks together, with the rule's index ``k``; a pair
    several rules find appears once per rule (a rule joining two columns may find it both ways round)."""
    selects = []
    either_way = f"SELECT least(l.{NODE_ID}, r.{NODE_ID}) AS a, greatest(l.{NODE_ID}, r.{NODE_ID}) AS b"
    for index, rule in enumerate(rules):
        on = " AND ".join(f"l.{a} = r.{b}" for a, b in zip(rule.left, rule.right_columns, strict=True))
        join = f"{index} AS k FROM {table} l JOIN {table} r ON {on} WHERE"
        if touching:
            # the touching side filtered before the join (a condition on either side could only filter after it):
            # the join then builds on the few records touched, not on everyone
            sides = ["l"] if rule.right is None else ["l", "r"]  # two columns: the touched record on either side
            selects += [f"{either_way}, {join} {side}.{touching} AND l.{NODE_ID} <> r.{NODE_ID}" for side in sides]
        elif rule.right is None:
            selects.append(f"SELECT l.{NODE_ID} AS a, r.{NODE_ID} AS b, {join} l.{NODE_ID} < r.{NODE_ID}")
        else:  # joins two different columns: a pair may be found either way round
            selects.append(f"{either_way}, {join} l.{NODE_ID} <> r.{NODE_ID}")
    return "\nUNION ALL\n".join(selects)


def candidate_pairs_sql(table: str, rules: tuple[Block, ...], touching: str | None = None) -> str:
    """SQL: each distinct pair of ``node_id`` that some rule blocks together, smaller id on the left, with the index
    of the first rule that finds it. With ``touching`` (a boolean column of ``table``), only pairs in which at least
    one record has it true."""
    return (f"SELECT a AS join_key_l, b AS join_key_r, CAST(min(k) AS VARCHAR) AS match_key "
            f"FROM ({_rule_joins_sql(table, rules, touching)}) GROUP BY a, b")


#: Bits of a packed pair (``candidate_pairs``): each node id, and the rule index below them.
_ID_BITS, _RULE_BITS = 29, 6
#: Packed pairs compared at once when the sorted pairs are de-duplicated (bounds the comparison's scratch memory).
_SLICE = 1 << 24


def candidate_pairs(connection: Any, table: str, rules: tuple[Block, ...], records: int, into: str,
                    touching: str | None = None, comparisons: int = 0) -> None:
    """Create the temporary table ``into`` holding the pairs ``candidate_pairs_sql`` describes (``join_key_l``,
    ``join_key_r``, ``match_key``), from a DuckDB ``table`` of ``records`` records.

    Over a whole population the pairs are de-duplicated by sorting, not grouping: each pair the rules' joins stream
    out is packed into one 64-bit integer (both node ids, then the rule index), and in the sorted integers the first
    of each pair holds its first rule. At ten million records the joins give 251M pairs for 45.7M distinct; DuckDB's
    grouping took 164-180 s within its memory limit, this 93 s. The packed pairs go into one buffer of
    ``comparisons`` (the rules' counted pairs, at least as many as the joins give; grown if not) and are sorted in
    place, so they are held once (2 GB at 10M). Pairs touching a few records are few: they are grouped in SQL.
    """
    if touching or records >= 1 << _ID_BITS or len(rules) >= 1 << _RULE_BITS:
        connection.execute(f"CREATE OR REPLACE TEMP TABLE {into} AS {candidate_pairs_sql(table, rules, touching)}")
        return
    rule_bits = np.uint64(_RULE_BITS)
    packed = (f"SELECT (a::UBIGINT << {_ID_BITS + _RULE_BITS}) | (b::UBIGINT << {_RULE_BITS}) | k::UBIGINT AS pair "
              f"FROM ({_rule_joins_sql(table, rules)})")
    ordered = np.empty(max(comparisons, 1), dtype=np.uint64)
    filled = 0
    for batch in connection.sql(packed).to_arrow_reader():
        values = batch.column("pair").to_numpy()
        if filled + values.size > ordered.size:
            ordered = np.resize(ordered, max(2 * ordered.size, filled + values.size))
        ordered[filled:filled + values.size] = values
        filled += values.size
    ordered = ordered[:filled]
    ordered.sort()
    first = np.empty(ordered.size, dtype=bool)
    first[:1] = True
    for start in range(1, ordered.size, _SLICE):  # a pair's first packed value differs from the one before above the rule
        stop = min(start + _SLICE, ordered.size)
        first[start:stop] = (ordered[start:stop] ^ ordered[start - 1:stop - 1]) >> rule_bits != 0
    kept = ordered[first]
    del ordered, first
    ids = kept >> rule_bits
    found = pa.table({"a": (ids >> np.uint64(_ID_BITS)).astype(np.int32),
                      "b": (ids & np.uint64((1 << _ID_BITS) - 1)).astype(np.int32),
                      "k": (kept & np.uint64((1 << _RULE_BITS) - 1)).astype(np.int8)})
    connection.register(view := f"{into}_sorted", found)
    connection.execute(f"CREATE OR REPLACE TEMP TABLE {into} AS SELECT a AS join_key_l, b AS join_key_r, "
                       f"CAST(k AS VARCHAR) AS match_key FROM {view}")
    connection.unregister(view)


class PairScorer:
    """A trained model over one population on DuckDB: candidate pairs generated by carelink, scored by Splink."""

    def __init__(self, db_api: Any, table: Any, frame: pl.DataFrame, settings: dict[str, Any]):
        from splink import Linker

        self._db_api = db_api
        self._connection = db_api.duckdb_con
        self._table = table.physical_name
        self._tokens = frame["record_token"]
        self._linker = Linker(table, {**settings, "unique_id_column_name": NODE_ID}, log_level=logging.ERROR)

    def score(self, rules: tuple[Block, ...], *, touching: str | None = None, threshold: float = 0.5,
              chunk_pairs: int = CHUNK_PAIRS, comparisons: int = 0) -> NodePairs:
        """Score every candidate pair (only those touching a record with ``touching`` set, when given); return the
        pairs at or above ``threshold`` by node id, to be turned into edges (``NodePairs.edges``) once the records
        are no longer needed. ``comparisons``, the rules' counted pairs, sizes the buffer they are sorted in."""
        pairs, keys = "carelink_candidate_pairs", "carelink_blocking_keys"
        # the joins read a native table of the blocking columns alone (not the registered records, lists and all)
        columns = sorted({c for rule in rules for c in (*rule.left, *rule.right_columns)} | ({touching} - {None}))
        self._connection.execute(f"CREATE OR REPLACE TEMP TABLE {keys} AS SELECT {NODE_ID}, {', '.join(columns)} "
                                 f"FROM {self._table}")
        candidate_pairs(self._connection, keys, rules, self._tokens.len(), pairs, touching, comparisons)
        self._connection.execute(f"DROP TABLE {keys}")
        try:
            total = self._connection.execute(f"SELECT count(*) FROM {pairs}").fetchone()[0]
            log.info("link: %s candidate pairs", f"{total:,}")
            frames = list(self._score_chunks(pairs, total, threshold, chunk_pairs))
        finally:
            self._connection.execute(f"DROP TABLE IF EXISTS {pairs}")
        return NodePairs(pl.concat(frames, how="vertical_relaxed"), self._tokens)

    def _score_chunks(self, pairs: str, total: int, threshold: float, chunk_pairs: int) -> Iterator[pl.DataFrame]:
        chunks = max(1, -(-total // chunk_pairs))
        for chunk in range(chunks):
            name = f"{pairs}_chunk"
            where = f"WHERE join_key_l % {chunks} = {chunk}" if chunks > 1 else ""
            self._connection.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {pairs} {where}")
            try:
                registered = self._db_api.register(self._connection.table(name))
                self._linker.table_management.register_blocked_pairs_for_predict(registered)
                scored = self._linker.inference.predict(threshold_match_probability=threshold, warning_mode="never")
                frame = pl.from_arrow(scored.as_pyarrow_table())
                scored.drop_table_from_database_and_remove_from_cache()
            finally:
                self._connection.execute(f"DROP TABLE IF EXISTS {name}")
            assert isinstance(frame, pl.DataFrame)
            if chunks > 1:
                log.info("link: scored chunk %d of %d", chunk + 1, chunks)
            yield frame


@dataclass(frozen=True)
class NodePairs:
    """Scored pairs by node id (``node_id_l``, ``node_id_r``, match weight and probability, weight per comparison),
    and the record token of each node id."""

    scored: pl.DataFrame
    tokens: pl.Series

    def edges(self) -> pl.DataFrame:
        """Predictions by node id → edges by record token (smaller token on the left), sorted.

        Each node id is replaced by its token's rank, so the pairs sort as one 64-bit integer (the ranks of both
        ends) and the tokens are looked up once, in order: sorting by the two token strings took 2.5 GB beside the
        scored pairs at 9.8M pairs, this takes 1.6 GB in the same time."""
        scored = self.scored
        weights = [c for c in scored.columns if c.startswith("mw_")]
        left, right = scored[f"{NODE_ID}_l"].to_numpy(), scored[f"{NODE_ID}_r"].to_numpy()
        # only the nodes in a pair are ranked: an incremental night's few pairs do not sort ten million tokens
        present = np.zeros(self.tokens.len(), dtype=bool)
        present[left] = present[right] = True
        ids = np.flatnonzero(present)  # the nodes in a pair, by node id
        by_rank = ids[self.tokens.gather(ids).arg_sort().to_numpy()]  # their node ids in token order
        rank = np.empty(self.tokens.len(), dtype=np.int64)
        rank[by_rank] = np.arange(by_rank.size)
        left, right = rank[left], rank[right]
        pair = pl.Series(np.minimum(left, right) << 32 | np.maximum(left, right))
        del left, right, rank
        ranked = scored.select("match_weight", "match_probability", *weights).with_columns(pair.alias(_PAIR)).sort(_PAIR)
        del pair
        ends = ranked[_PAIR].to_numpy()
        tokens = [self.tokens.gather(by_rank[end]).alias(name)
                  for name, end in (("record_token_l", ends >> 32), ("record_token_r", ends & 0xFFFFFFFF))]
        return ranked.drop(_PAIR).insert_column(0, tokens[1]).insert_column(0, tokens[0])
