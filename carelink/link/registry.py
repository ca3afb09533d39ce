"""The person registry: record token → person ID, stable from run to run.

Rules: a cluster keeps the ID its records already had; when clusters merge, the oldest ID survives and the others
are retired as aliases; when a cluster splits, the part holding most of the ID's records keeps it and the others
get new IDs. IDs are opaque sequence numbers (``P000000001``), assigned in a deterministic order, never derived
from identifiers. Every change is written to the history table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from carelink.link.clustering import CLUSTER_ROW
from carelink.tables import write_parquet_files

REGISTRY_SCHEMA = {"record_token": pl.String, "person_id": pl.String, "first_run": pl.String, "last_run": pl.String}
HISTORY_SCHEMA = {"run_id": pl.String, "event": pl.String, "person_id": pl.String, "related_person_id": pl.String,
                  "records": pl.Int64}
_PREFIX = "P"
_DIGITS = 9


@dataclass(frozen=True)
class Registry:
    """The registry table and its history."""

    records: pl.DataFrame
    history: pl.DataFrame

    @classmethod
    def empty(cls) -> Registry:
        return cls(pl.DataFrame(schema=REGISTRY_SCHEMA), pl.DataFrame(schema=HISTORY_SCHEMA))

    @classmethod
    def load(cls, folder: Path) -> Registry:
        """Load from ``folder`` (an empty registry when there is none yet)."""
        records, history = folder / "registry.parquet", folder / "history.parquet"
        if not records.is_file():
            return cls.empty()
        return cls(pl.read_parquet(records), pl.read_parquet(history))

    def save(self, folder: Path) -> None:
        """Write both tables atomically."""
        write_parquet_files(self.files(folder))

    def files(self, folder: Path) -> list[tuple[pl.DataFrame, Path, dict[str, str]]]:
        """The registry's tables as ``tables.write_parquet_files`` writes them into ``folder``."""
        return [(sorted_by_token(self.records), folder / "registry.parquet", {"table": "person registry"}),
                (self.history, folder / "history.parquet", {"table": "person registry history"})]

    def record_count(self, person_id: str) -> int:
        """How many records the person holds now."""
        return self.records.filter(pl.col("person_id") == person_id).height

    def next_number(self) -> int:
        ids = pl.concat([self.records["person_id"], self.history["person_id"]]).drop_nulls()
        numbers = _person_numbers(ids)  # read from the bytes, where every ID has one width
        if numbers is not None:
            return 1 + int(numbers.max(initial=0))
        return 1 + (int(ids.str.slice(len(_PREFIX)).cast(pl.Int64).max()) if ids.len() else 0)


def sorted_by_token(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` in ``record_token`` order.

    Record tokens are 32 lower-case hex digits (``NodeRecord``), so their first 16 digits read as a 64-bit number
    sort as the tokens do: sorting by that number first is about three times faster than comparing ten million
    strings. Tokens of any other form are sorted as strings.
    """
    tokens = frame["record_token"]
    if tokens.is_sorted():
        return frame
    if tokens.dtype.is_integer():  # numbers standing for tokens, in their order (_Numbered)
        return frame.sort("record_token")
    if tokens.len() and not tokens.str.contains("^[0-9a-f]{32}$").not_().any():
        prefix = tokens.str.slice(0, 16).str.to_integer(base=16, dtype=pl.UInt64)
        return frame.with_columns(prefix.alias("_prefix")).sort("_prefix", "record_token").drop("_prefix")
    return frame.sort("record_token")


def _format(number: int) -> str:
    return f"{_PREFIX}{number:0{_DIGITS}d}"


def assign_person_ids(registry: Registry, clusters: pl.DataFrame, run_id: str, next_number: int = 1) -> Registry:
    """Give every cluster (``record_token``, ``cluster_id``) a stable person ID and record what changed.

    New people are numbered from ``next_number`` or past the registry's own IDs, whichever is higher: a part of the
    population assigned on its own (``link.carry``) must not reuse the numbers of the people outside it.

    Where the tokens, cluster IDs and person IDs are as carelink makes them, the work is done on 64-bit numbers that
    stand for them and sort as they do (``_Numbered``): joins, group-bys and sorts of ten million numbers rather than
    of ten million strings. Otherwise on the strings themselves. The same registry either way.
    """
    numbered = _Numbered.of(registry, clusters, next_number)
    if numbered is None:
        assigned, events = _assign(registry.records, max(registry.next_number(), next_number),
                                   clusters.select("record_token", "cluster_id"), run_id, _formatted)
    else:
        assigned, events = _assign(numbered.records, numbered.next_number, numbered.clusters, run_id, _numbers_from)
        assigned, events = numbered.as_strings(assigned, events)
    return Registry(assigned, pl.concat([registry.history, events]))


def _formatted(start: int, count: int) -> pl.Series:
    return pl.Series("person_id", [_format(start + i) for i in range(count)], dtype=pl.String)


def _numbers_from(start: int, count: int) -> pl.Series:
    return pl.Series("person_id", range(start, start + count), dtype=pl.UInt64)


def _assign(previous: pl.DataFrame, next_number: int, clusters: pl.DataFrame, run_id: str,
            new_ids: Callable[[int, int], pl.Series]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The registry's records (in token order) and this run's events, from the previous records (``record_token``,
    ``person_id``, ``first_run``) and the clusters, on columns of strings or of numbers that sort as they do;
    ``new_ids(start, n)`` gives the IDs of ``n`` new people from number ``start``."""
    previous = previous.select("record_token", "person_id", "first_run")
    joined = clusters.join(previous, on="record_token", how="left")
    cluster_order = joined.group_by("cluster_id").agg(pl.col("record_token").min().alias("_order"))
    claims = (
        joined.filter(pl.col("person_id").is_not_null())
        .group_by("cluster_id", "person_id")
        .len("records")
        .join(cluster_order, on="cluster_id")
    )
    # For each old ID, the cluster holding most of its records wins it (ties: the earlier cluster).
    winners = claims.sort(["person_id", "records", "_order"], descending=[False, True, False]).unique(
        "person_id", keep="first", maintain_order=True
    )
    # A cluster that won several old IDs keeps the oldest (lowest number); the rest are retired into it.
    kept = winners.sort(["cluster_id", "person_id"]).unique("cluster_id", keep="first", maintain_order=True)
    kept = kept.select("cluster_id", "person_id")
    retired = winners.join(kept.rename({"person_id": "kept_id"}), on="cluster_id").filter(
        pl.col("person_id") != pl.col("kept_id")
    )
    fresh = cluster_order.join(kept, on="cluster_id", how="anti").sort("_order")
    fresh = fresh.with_columns(new_ids(next_number, fresh.height)).select("cluster_id", "person_id")
    ids = pl.concat([kept, fresh])
    assigned = joined.drop("person_id").join(ids, on="cluster_id").select(
        "record_token",
        "person_id",
        pl.col("first_run").fill_null(run_id),
        pl.lit(run_id).alias("last_run"),
    )
    person = previous.schema["person_id"]
    schema = HISTORY_SCHEMA | {"person_id": person, "related_person_id": person}
    return sorted_by_token(assigned), _events(claims, kept, retired, fresh, assigned, run_id, schema)


#: Byte values of the lower-case hex digits (record tokens), as their value; 255 for every other byte.
_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789", dtype=np.uint8)] = np.arange(10)
_HEX[np.frombuffer(b"abcdef", dtype=np.uint8)] = np.arange(10, 16)
#: Byte values of the decimal digits (person IDs), as their value; 255 for every other byte.
_DECIMAL = np.full(256, 255, dtype=np.uint8)
_DECIMAL[np.frombuffer(b"0123456789", dtype=np.uint8)] = np.arange(10)


def _spelled(values: pl.Series, width: int, digits: slice, table: np.ndarray) -> np.ndarray | None:
    """The digits (``table`` gives each byte's) of characters ``digits`` of each value, one row per value, when every
    value is ``width`` bytes and those characters are digits; else None. Read from the Arrow bytes: slicing and
    parsing ten million strings in polars takes about four seconds."""
    if values.null_count():
        return None
    if not values.len():
        return np.zeros((0, len(range(width)[digits])), dtype=np.uint8)
    arrow = values.to_arrow(compat_level=pl.CompatLevel.oldest())  # large_string: offsets and one data buffer
    offsets = np.frombuffer(arrow.buffers()[1], dtype=np.int64)[arrow.offset:arrow.offset + len(arrow) + 1]
    if (np.diff(offsets) != width).any():
        return None
    data = np.frombuffer(arrow.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]].reshape(-1, width)
    spelled = table[data[:, digits]]
    return None if spelled.max() == 255 else spelled


def _number(spelled: np.ndarray, base: int) -> np.ndarray:
    number = np.zeros(spelled.shape[0], dtype=np.uint64)
    for column in range(spelled.shape[1]):
        number = number * np.uint64(base) + spelled[:, column]
    return number


def _token_numbers(tokens: pl.Series) -> pl.DataFrame | None:
    """Record tokens (32 lower-case hex digits, ``NodeRecord``) as two 64-bit numbers, ``record_token`` of the first
    16 digits (which sorts as the tokens do wherever no two tokens share it) and ``_low`` of the last 16."""
    spelled = _spelled(tokens, 32, slice(0, 32), _HEX)
    if spelled is None:
        return None
    halves = np.ascontiguousarray((spelled[:, 0::2] << 4) | spelled[:, 1::2]).view(">u8").astype(np.uint64)
    return pl.DataFrame({"record_token": halves[:, 0], "_low": halves[:, 1]})


def _person_numbers(person_ids: pl.Series) -> np.ndarray | None:
    """A person ID's number, where every ID has ``_DIGITS`` digits after ``_PREFIX`` (so numbers sort as the IDs do)."""
    if person_ids.len() and not person_ids.str.starts_with(_PREFIX).all():
        return None
    spelled = _spelled(person_ids, len(_PREFIX) + _DIGITS, slice(len(_PREFIX), None), _DECIMAL)
    return None if spelled is None else _number(spelled, 10)


def person_keys(person_ids: pl.Series) -> pl.Series:
    """One 64-bit number per person ID, standing for it alone (its digits), where every ID has the registry's width;
    else the IDs themselves (and numbers as they are): group-bys on ten million IDs then work on numbers."""
    if person_ids.dtype.is_integer():
        return person_ids
    numbers = _person_numbers(person_ids)
    return person_ids if numbers is None else pl.Series(person_ids.name, numbers)


def rows_in(tokens: pl.Series, registry_tokens: pl.Series) -> np.ndarray | None:
    """The row of ``tokens`` holding each of ``registry_tokens`` (a registry's, in token order), found by sorting
    the tokens' numbers (``_token_numbers``) instead of joining ten million strings. None where the tokens are not
    carelink's, or the two do not hold the same tokens once each."""
    mine, theirs = _token_numbers(tokens), _token_numbers(registry_tokens)
    if mine is None or theirs is None or mine.height != theirs.height:
        return None
    order = mine["record_token"].arg_sort()
    high = mine["record_token"].gather(order)
    if not (_strictly_increasing(high) and high.equals(theirs["record_token"])
            and mine["_low"].gather(order).equals(theirs["_low"])):
        return None
    return order.to_numpy()


def _strictly_increasing(numbers: pl.Series) -> bool:
    return numbers.len() < 2 or bool((numbers.slice(1) > numbers.slice(0, numbers.len() - 1)).all())


@dataclass(frozen=True)
class _Numbered:
    """The previous records and tonight's clusters with numbers for strings, in the strings' order: a record token's
    first 16 hex digits (no two tokens sharing them), a cluster ID's token number (cluster IDs being record tokens,
    as ``clustering.cluster`` makes them; taken from the row it names in ``CLUSTER_ROW`` where given, else read from
    the string and checked to be one of tonight's) and a person ID's digits (IDs of one width)."""

    records: pl.DataFrame
    next_number: int
    clusters: pl.DataFrame
    tokens: pl.Series  # tonight's record tokens, in token order

    @classmethod
    def of(cls, registry: Registry, clusters: pl.DataFrame, next_number: int = 1) -> _Numbered | None:
        """The numbered records and clusters, or None where some string has no number that stands for it alone."""
        tonight, before = _token_numbers(clusters["record_token"]), _token_numbers(registry.records["record_token"])
        by_row = tonight is not None and _rows_name_cluster_ids(clusters)
        cluster_ids = tonight.gather(clusters[CLUSTER_ROW]) if by_row else _token_numbers(clusters["cluster_id"])
        person_numbers = _person_numbers(registry.records["person_id"])
        historic = _person_numbers(registry.history["person_id"].drop_nulls())
        if tonight is None or before is None or cluster_ids is None or person_numbers is None or historic is None:
            return None
        order = tonight["record_token"].arg_sort()
        before_sorted = before["record_token"]
        if not before_sorted.is_sorted():
            before_sorted = before_sorted.sort()
        if not (_strictly_increasing(tonight["record_token"].gather(order)) and _strictly_increasing(before_sorted)):
            return None
        # one first half, one token: across the two tables, and each cluster ID one of tonight's tokens
        paired = tonight.join(before, on="record_token")
        if not (paired["_low"] == paired["_low_right"]).all():
            return None
        if not by_row and cluster_ids.join(tonight, on=["record_token", "_low"], how="anti").height:
            return None
        highest = max(int(person_numbers.max(initial=0)), int(historic.max(initial=0)), next_number - 1)
        if highest + clusters.height >= 10**_DIGITS:  # new IDs would be wider, and sort otherwise than their numbers
            return None
        records = pl.DataFrame({"record_token": before["record_token"], "person_id": person_numbers,
                                "first_run": registry.records["first_run"]})
        numbered = pl.DataFrame({"record_token": tonight["record_token"], "cluster_id": cluster_ids["record_token"]})
        return cls(records, highest + 1, numbered, clusters["record_token"].gather(order))

    def as_strings(self, assigned: pl.DataFrame, events: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """``_assign``'s records (in token order) and events with the strings back."""
        records = assigned.with_columns(self.tokens.alias("record_token"), _person_ids("person_id"))
        events = events.with_columns(_person_ids("person_id"), _person_ids("related_person_id"))
        return records.cast(REGISTRY_SCHEMA), events.cast(HISTORY_SCHEMA)


def _rows_name_cluster_ids(clusters: pl.DataFrame, checked: int = 1000) -> bool:
    """Whether ``clusters`` carries ``CLUSTER_ROW`` as ``clustering.cluster`` makes it, in its own row order: each
    row's cluster ID is the token of the row it names (checked on ``checked`` rows spread over the frame, which
    catches a frame re-ordered or filtered since)."""
    if CLUSTER_ROW not in clusters.columns or clusters[CLUSTER_ROW].null_count():
        return False
    rows = clusters[CLUSTER_ROW]
    if clusters.height and not 0 <= int(rows.min()) <= int(rows.max()) < clusters.height:  # type: ignore[arg-type]
        return False
    sample = np.linspace(0, clusters.height - 1, num=min(checked, clusters.height), dtype=np.int64)
    named = clusters["record_token"].gather(rows.gather(sample))
    return bool(named.equals(clusters["cluster_id"].gather(sample), check_names=False))


def _person_ids(column: str) -> pl.Expr:
    return (pl.lit(_PREFIX) + pl.col(column).cast(pl.String).str.zfill(_DIGITS)).alias(column)


def _events(claims: pl.DataFrame, kept: pl.DataFrame, retired: pl.DataFrame, fresh: pl.DataFrame,
            assigned: pl.DataFrame, run_id: str, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    sizes = assigned.group_by("person_id").len("records")
    lost = claims.join(kept, on=["cluster_id", "person_id"], how="anti").join(
        retired.select("cluster_id", "person_id"), on=["cluster_id", "person_id"], how="anti"
    )
    split_ids = fresh.join(lost.select("cluster_id", pl.col("person_id").alias("origin")), on="cluster_id", how="inner")
    new_ids = fresh.join(lost.select("cluster_id"), on="cluster_id", how="anti")
    frames = [
        new_ids.join(sizes, on="person_id").select(
            pl.lit(run_id).alias("run_id"), pl.lit("created").alias("event"), "person_id",
            pl.lit(None, dtype=pl.String).alias("related_person_id"), "records"),
        retired.select(
            pl.lit(run_id).alias("run_id"), pl.lit("merged_into").alias("event"), "person_id",
            pl.col("kept_id").alias("related_person_id"), "records"),
        split_ids.sort("person_id", "origin").unique(["person_id"], keep="first", maintain_order=True)
        .join(sizes, on="person_id").select(
            pl.lit(run_id).alias("run_id"), pl.lit("split_from").alias("event"), "person_id",
            pl.col("origin").alias("related_person_id"), "records"),
    ]
    return pl.concat([f.cast(dict(schema)) for f in frames]).sort("event", "person_id")


def person_history(registry: Registry, person_id: str) -> pl.DataFrame:
    """Every event naming ``person_id`` (as the person or the related one), oldest first."""
    named = (pl.col("person_id") == person_id) | (pl.col("related_person_id") == person_id)
    return registry.history.with_row_index("_order").filter(named).sort("_order").drop("_order")
