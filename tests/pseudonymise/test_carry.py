"""Tests for carelink.pseudonymise.carry: unchanged records keep their node rows, and the delivery is the same."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path

import polars as pl
import pytest

from carelink.keys import Key
from carelink.pseudonymise import carry
from carelink.pseudonymise.carry import PreviousDelivery, unchanged_pairs
from carelink.pseudonymise.stage import pseudonymise_source
from carelink.tables import file_sha256

from . import test_stage
from .test_stage import KEY, REF

ingested, out = test_stage.ingested, test_stage.out  # the stage tests' fixtures: one small ingested source

DELIVERED = ("nodes.parquet", "activity.parquet", "reid_map.parquet")


def _pseudonymise(ingested: Path, folder: Path, *, key: Key = KEY, reference_date: dt.date = REF,
                  previous: PreviousDelivery | None = None):
    return pseudonymise_source(ingested, folder, key, partnership="test", source_kind="health",
                               reference_date=reference_date, previous=previous)


def _same_files(one: Path, other: Path) -> bool:
    return all(file_sha256(one / name) == file_sha256(other / name) for name in DELIVERED)


def test_an_unchanged_source_is_carried_whole_and_delivered_the_same(ingested: Path, out: Path, tmp_path: Path) -> None:
    result = _pseudonymise(ingested, tmp_path / "again", previous=PreviousDelivery.of(ingested, out))
    assert (result.records, result.records_carried) == (4, 4)
    assert _same_files(out, tmp_path / "again")


def test_age_bands_follow_tonights_reference_date(ingested: Path, out: Path, tmp_path: Path) -> None:
    later = dt.date(2031, 11, 1)  # five years on: every age band moves
    carried = _pseudonymise(ingested, tmp_path / "carried", reference_date=later,
                            previous=PreviousDelivery.of(ingested, out))
    _pseudonymise(ingested, tmp_path / "fresh", reference_date=later)
    assert carried.records_carried == 4
    assert _same_files(tmp_path / "carried", tmp_path / "fresh")
    bands = pl.read_parquet(tmp_path / "carried" / "nodes.parquet")["age_band"]
    assert not bands.equals(pl.read_parquet(out / "nodes.parquet")["age_band"])


def test_changed_and_new_records_are_pseudonymised_afresh(ingested: Path, out: Path, tmp_path: Path) -> None:
    tonight = tmp_path / "ingest" / "gp"  # written without metadata: the source is named by its folder
    shutil.copytree(ingested, tonight)
    records = pl.read_parquet(ingested / "standardised.parquet")
    changed = records.with_columns(pl.when(pl.col("record_id") == "GPX-1002").then(pl.lit("JOHN"))
                                   .otherwise(pl.col("given_name")).alias("given_name"))
    changed = pl.concat([changed, changed.tail(1).with_columns(pl.lit("GPX-2000").alias("record_id"))])
    changed.reverse().write_parquet(tonight / "standardised.parquet")  # a new order too
    result = _pseudonymise(tonight, tmp_path / "carried", previous=PreviousDelivery.of(ingested, out))
    _pseudonymise(tonight, tmp_path / "fresh")
    assert (result.records, result.records_carried) == (5, 3)
    assert _same_files(tmp_path / "carried", tmp_path / "fresh")


def test_nothing_is_carried_under_another_key(ingested: Path, out: Path, tmp_path: Path) -> None:
    other = Key.from_secret_for_tests("linkage", b"o" * 32)
    result = _pseudonymise(ingested, tmp_path / "other", key=other, previous=PreviousDelivery.of(ingested, out))
    assert result.records_carried == 0
    assert not _same_files(out, tmp_path / "other")


def test_an_altered_previous_delivery_is_not_carried_from(ingested: Path, out: Path, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    altered = tmp_path / "altered"
    shutil.copytree(out, altered)
    nodes = pl.read_parquet(altered / "nodes.parquet")
    nodes.with_columns(pl.col("dob_token") + 1).write_parquet(altered / "nodes.parquet")
    with caplog.at_level(logging.WARNING):
        result = _pseudonymise(ingested, tmp_path / "tonight", previous=PreviousDelivery.of(ingested, altered))
    assert result.records_carried == 0
    assert "checksum does not match" in caplog.text
    assert _same_files(out, tmp_path / "tonight")


def test_a_hash_collision_cannot_carry_a_changed_record(monkeypatch: pytest.MonkeyPatch) -> None:
    before = pl.DataFrame({"record_id": ["a", "b", "c"], "name": ["ANN", "BOB", None]})
    after = pl.DataFrame({"record_id": ["a", "b", "c"], "name": ["ANN", "ROB", None]})
    # every row hashes to its position: each pair is a collision unless its values really are equal
    monkeypatch.setattr(pl.DataFrame, "hash_rows", lambda self: pl.Series(range(self.height), dtype=pl.UInt64))
    rows, previous_rows = unchanged_pairs(after, before, ["record_id", "name"])
    assert rows.tolist() == [0, 2] and previous_rows.tolist() == [0, 2]


def test_pairs_follow_records_that_moved_in_the_extract() -> None:
    before = pl.DataFrame({"record_id": ["a", "b", "c"], "name": ["ANN", "BOB", "CAT"]})
    after = before.reverse()
    rows, previous_rows = carry.unchanged_pairs(after, before, ["record_id", "name"])
    assert sorted(zip(rows.tolist(), previous_rows.tolist(), strict=True)) == [(0, 2), (1, 1), (2, 0)]
