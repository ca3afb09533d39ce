"""The hub's view of each linked person, before any purpose withholds anyone: the sources and records holding them,
their most often recorded age band and postcode district, their resolved consent and how weakly they are linked.

One table for every export of a run (:func:`people_table`); the purposes differ only in whom they withhold.

People are numbered densely (0 to P-1) once; the per-person figures are then arrays of P values filled by
scatters over records (numpy ``ufunc.at``), and consent is resolved per number, instead of group-bys and joins on
the ``person_id`` string.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from carelink.export.consent import CONSENT_COLUMNS, resolve_consent

#: Node columns the export reads (payload for the person table, consent for withholding).
NODE_COLUMNS = ("source", "age_band", "postcode_district", *CONSENT_COLUMNS)
#: Up to this many sources, a person's sources are gathered as the bits of an integer (beyond, as lists).
_SOURCE_BITS = 62
_NUMBER = "__person_number"


def people_table(person_map: pl.DataFrame, nodes: pl.DataFrame, edges: pl.DataFrame,
                 resolution: Mapping[str, str] | None = None) -> pl.DataFrame:
    """One row per person of the registry that holds a node: ``person_id``, ``sources``, ``records``, ``age_band``,
    ``postcode_district``, the resolved consent columns (``consent.resolve_consent``), ``link_probability`` and
    ``source_count``. Rows in no particular order.

    Args:
        person_map: The registry's record → person map (``record_token``, ``person_id``).
        nodes: Every source's pseudonymised records (``record_token`` and ``NODE_COLUMNS``).
        edges: Scored pairs (``record_token_l``, ``record_token_r``, ``match_probability``).
        resolution: How opt-outs resolve (``consent.DEFAULT_RESOLUTION`` where not given).
    """
    registry = person_map.select("record_token", "person_id")
    number, persons = _numbers(registry["person_id"])
    registry = registry.with_columns(pl.Series(_NUMBER, number))
    # the records in the order this join gives them: consent ties go to the later record (consent._last_where)
    records = registry.join(nodes.select("record_token", *NODE_COLUMNS), on="record_token", how="inner")
    person = records[_NUMBER].to_numpy()
    count = np.bincount(person, minlength=persons.len())
    table = pl.DataFrame({
        _NUMBER: np.arange(persons.len(), dtype=np.uint32),
        "person_id": persons,
        "sources": _sources(records, person, persons.len()),
        "records": count,
        "age_band": _most_frequent(records["age_band"], person, persons.len()),
        "postcode_district": _most_frequent(records["postcode_district"], person, persons.len()),
        "link_probability": _weakest_links(registry, number, edges, persons),
    }, schema_overrides={"records": pl.Int64}).filter(pl.Series(count > 0))
    consent = resolve_consent(records, resolution, by=_NUMBER)
    return (
        table.join(consent, on=_NUMBER)
        .select("person_id", "sources", "records", "age_band", "postcode_district", *consent.columns[1:],
                "link_probability", pl.col("sources").list.len().cast(pl.Int64).alias("source_count"))
    )


def _numbers(person_ids: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """Dense numbers (0 to P-1) of the values, and the P distinct values by number.

    Numbers are the dense rank of the values' 64-bit hashes where no two distinct values share a hash (checked),
    else the dense rank of the values themselves.
    """
    for key in (person_ids.hash(), person_ids):
        number = (key.rank("dense").cast(pl.UInt32) - 1).to_numpy() if key.len() else np.zeros(0, np.uint32)
        first = np.zeros(int(number.max()) + 1 if number.size else 0, dtype=np.int64)
        first[number[::-1]] = np.arange(number.size - 1, -1, -1)  # the first row of each number (last write wins)
        distinct = person_ids.gather(first)
        if distinct.gather(number).eq_missing(person_ids).all():
            break
    return number, distinct


def _sources(records: pl.DataFrame, person: np.ndarray, people: int) -> pl.Series:
    """Per person number, the sorted distinct sources holding it (empty where none).

    Each source is a bit; the bits of a person's records are OR-ed together and the few distinct sets turned back
    into lists.
    """
    names = records["source"].unique().sort()
    if names.null_count() or not 0 < names.len() <= _SOURCE_BITS:
        held = records.group_by(_NUMBER).agg(pl.col("source").unique().sort())
        lists = pl.DataFrame({_NUMBER: np.arange(people, dtype=np.uint32)}).join(held, on=_NUMBER, how="left",
                                                                                maintain_order="left")
        return lists["source"].alias("sources")
    bits = records["source"].replace_strict(names, [1 << i for i in range(names.len())], return_dtype=pl.Int64)
    mask = np.zeros(people, dtype=np.int64)
    np.bitwise_or.at(mask, person, bits.to_numpy())
    sets, which = np.unique(mask, return_inverse=True)
    named = list(enumerate(names))
    lists = pl.Series([[name for i, name in named if held >> i & 1] for held in sets.tolist()],
                      dtype=pl.List(pl.String))
    return lists.gather(which).alias("sources")


def _most_frequent(values: pl.Series, person: np.ndarray, people: int) -> pl.Series:
    """Per person number, the most frequent non-null value among its records, the smallest on ties (none: null).

    Values are coded by their sorted order; a (person, value) count and the code are packed into one score whose
    maximum per person is the answer.
    """
    known = values.is_not_null().to_numpy()
    distinct = values.drop_nulls().unique().sort()
    size = distinct.len()
    if size == 0:
        return pl.Series(values.name, [None] * people, dtype=values.dtype)
    code = values.filter(pl.Series(known)).replace_strict(distinct, pl.Series(np.arange(size)), return_dtype=pl.Int64)
    pairs, counts = np.unique(person[known].astype(np.int64) * size + code.to_numpy(), return_counts=True)
    score = counts.astype(np.int64) * size + (size - 1 - pairs % size)  # more records first, then the smaller value
    best = np.full(people, -1, dtype=np.int64)
    np.maximum.at(best, pairs // size, score)
    chosen = pl.Series(np.where(best >= 0, size - 1 - best % size, 0)).scatter(np.flatnonzero(best < 0), None)
    return distinct.gather(chosen).alias(values.name)


def _weakest_links(registry: pl.DataFrame, number: np.ndarray, edges: pl.DataFrame, persons: pl.Series) -> pl.Series:
    """Per person number, how weakly its least-attached record is held: min over its records of the record's best
    edge inside the person (null: no such edge).

    Both ends of every edge are looked up in the registry at once (``_rows_of``); each record's best edge and each
    person's weakest record are then scatters (max, then min) over the registry's rows.
    """
    pairs = edges.select("record_token_l", "record_token_r", "match_probability")
    rows = _rows_of(pl.concat([pairs["record_token_l"], pairs["record_token_r"]]), registry["record_token"])
    if rows is None:  # a record token twice in the registry
        weakest = _weakest_links_by_token(registry, pairs)
        return (persons.to_frame().join(weakest, on="person_id", how="left", maintain_order="left")
                ["link_probability"])
    found = rows.is_not_null().to_numpy()
    record = rows.fill_null(0).to_numpy().astype(np.int64)
    left, right = record[:pairs.height], record[pairs.height:]
    inside = found[:pairs.height] & found[pairs.height:] & (number[left] == number[right])
    probability = pairs["match_probability"].cast(pl.Float64).to_numpy()[inside]
    best = np.full(registry.height, np.nan)
    np.fmax.at(best, left[inside], probability)
    np.fmax.at(best, right[inside], probability)
    weakest = np.full(persons.len(), np.nan)
    held = ~np.isnan(best)
    np.fmin.at(weakest, number[held], best[held])
    return pl.Series("link_probability", weakest, nan_to_null=True)


def _rows_of(tokens: pl.Series, registry_tokens: pl.Series) -> pl.Series | None:
    """Each token's row in ``registry_tokens`` (null: not there), or None where the registry holds a token twice.

    The lookup joins on 64-bit hashes, half the time of joining the strings (6 s against 13 s for 19.7M edge ends
    in a registry of ten million); where the registry's hashes are not all distinct it joins on the tokens. A row
    found is confirmed by a second, independent hash of both tokens, so only a 128-bit coincidence could misplace an
    end."""
    hashes = registry_tokens.hash(seed=0)
    if hashes.n_unique() == hashes.len():
        rows = (tokens.hash(seed=0).alias("hash").to_frame()
                .join(hashes.alias("hash").to_frame().with_row_index("row"), on="hash", how="left",
                      maintain_order="left")["row"])
        confirmed = registry_tokens.hash(seed=1).gather(rows.fill_null(0)) == tokens.hash(seed=1)
        return rows.set(~confirmed, None)
    rows = (tokens.alias("token").to_frame()
            .join(registry_tokens.alias("token").to_frame().with_row_index("row"), on="token", how="left",
                  maintain_order="left")["row"])
    return rows if rows.len() == tokens.len() else None


def _weakest_links_by_token(registry: pl.DataFrame, pairs: pl.DataFrame) -> pl.DataFrame:
    """Per ``person_id``, its ``link_probability``, by joins on the record token: for a registry that holds a token
    more than once."""
    ids = registry.select("record_token", "person_id")
    inside = (
        pairs.join(ids.rename({"record_token": "record_token_l"}), on="record_token_l")
        .join(ids.rename({"record_token": "record_token_r", "person_id": "person_id_r"}), on="record_token_r")
        .filter(pl.col("person_id") == pl.col("person_id_r"))
    )
    ends = pl.concat([
        inside.select("person_id", pl.col("record_token_l").alias("record_token"), "match_probability"),
        inside.select("person_id", pl.col("record_token_r").alias("record_token"), "match_probability"),
    ])
    best = ends.group_by("person_id", "record_token").agg(pl.col("match_probability").max())
    return best.group_by("person_id").agg(pl.col("match_probability").min().alias("link_probability"))
