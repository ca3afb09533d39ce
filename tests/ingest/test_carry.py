"""Ingest carries unchanged rows' standardised values from the previous run; the output is a full ingest's."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from carelink.config import load_config
from carelink.ingest import stage
from carelink.ingest.carry import FINGERPRINTS
from carelink.ingest.readers import read_table
from carelink.ingest.stage import ingest_source
from carelink.tables import file_sha256

HEADER = "id,nhs,given,family,dob,sex,postcode,ndop,ndop_date\n"
NIGHT_1 = HEADER + (
    "A1,943 476 5919,Ann,Smith,1950-02-03,F,LS1 4AP,Y,2026-10-01\n"
    "A2,,Bob,Jones,2026-11-02,M,LS2 9JT,,\n"          # a birth date one day after night 1's reference date
    "A3,,Cy,Brown,1960-05-06,X,ZZ,N,2026-11-02\n"     # a statement dated the day after night 1's reference date
    "A4,,Di,Green,1970-07-08,F,LS6 2AA,,\n"
    ",,No,Id,1980-01-01,F,LS1 1AA,,\n"               # quarantined: no record id
    "A5,,Ed,White,1990-01-01,M,LS7 3BB,maybe,\n"     # a code the source maps in its settings
)


def _night(folder: Path, rows: str, reference_date: str, date_formats: tuple[str, ...] = ("%Y-%m-%d",)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "people.csv").write_text(rows, encoding="utf-8")
    source = {"name": "gp", "kind": "health", "path": "people.csv", "date_format": list(date_formats),
              "columns": {"record_id": "id", "nhs_number": "nhs", "given_name": "given", "family_name": "family",
                          "date_of_birth": "dob", "sex": "sex", "postcode": "postcode", "ndop_opt_out": "ndop",
                          "ndop_opt_out_date": "ndop_date"},
              "consent_values": {"ndop_opt_out": {"maybe": True}}}
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"partnership": "t", "reference_date": reference_date, "sources": [source]}))
    return path


def _ingest(config_path: Path, out: Path, previous: Path | None = None) -> stage.IngestResult:
    config = load_config(config_path)
    return ingest_source(config.sources[0], out, config.reference_date, previous)


def _same_files(ours: Path, theirs: Path) -> None:
    for name in ("standardised.parquet", "quarantine.parquet", FINGERPRINTS, "validation.json"):
        assert file_sha256(ours / name) == file_sha256(theirs / name), name


@pytest.fixture
def first_night(tmp_path: Path) -> Path:
    return _ingest(_night(tmp_path / "n1", NIGHT_1, "2026-11-01"), tmp_path / "run1").folder


def test_unchanged_rows_are_carried_and_the_output_is_a_full_ingests(tmp_path: Path, first_night: Path) -> None:
    night_2 = HEADER + (
        "A4,,Di,Green,1970-07-08,F,LS6 2AA,,\n"       # moved up
        "A1,943 476 5919,Ann,Smyth,1950-02-03,F,LS1 4AP,Y,2026-10-01\n"  # changed name
        "A2,,Bob,Jones,2026-11-02,M,LS2 9JT,,\n"
        "A3,,Cy,Brown,1960-05-06,X,ZZ,N,2026-11-02\n"
        "A6,,Fi,Black,2000-01-01,F,LS8 1CC,,\n"       # new; A5 and the row with no id have gone
    )
    config = _night(tmp_path / "n2", night_2, "2026-11-02")
    carried = _ingest(config, tmp_path / "run2", first_night)
    full = _ingest(config, tmp_path / "full2")
    assert carried.records_carried == 3 and full.records_carried == 0
    _same_files(carried.folder, full.folder)
    records = pl.read_parquet(carried.folder / "standardised.parquet")
    assert records["record_id"].to_list() == ["A4", "A1", "A2", "A3", "A6"]
    assert records["family_name"].to_list()[1] == "SMYTH"
    by_id = {r["record_id"]: r for r in records.iter_rows(named=True)}
    # dates are judged against tonight's reference date, carried rows or not
    assert by_id["A2"]["date_of_birth_status"] == "valid" and str(by_id["A2"]["date_of_birth"]) == "2026-11-02"
    assert str(by_id["A3"]["ndop_opt_out_date"]) == "2026-11-02"
    before = pl.read_parquet(first_night / "standardised.parquet")
    assert before.filter(pl.col("record_id") == "A2")["date_of_birth_status"].item() == "out_of_range"
    assert before.filter(pl.col("record_id") == "A3")["ndop_opt_out_date"].item() is None


def test_a_previous_run_that_was_altered_is_not_carried_from(tmp_path: Path, first_night: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    standardised = first_night / "standardised.parquet"
    altered = pl.read_parquet(standardised).with_columns(pl.lit("EVE").alias("given_name"))
    altered.write_parquet(standardised)
    config = _night(tmp_path / "n2", NIGHT_1, "2026-11-01")
    with caplog.at_level(logging.WARNING):
        result = _ingest(config, tmp_path / "run2", first_night)
    assert result.records_carried == 0
    assert "differs from the file its fingerprints were made for" in caplog.text
    assert "EVE" not in pl.read_parquet(result.folder / "standardised.parquet")["given_name"].to_list()


def test_other_settings_carry_nothing(tmp_path: Path, first_night: Path) -> None:
    config = _night(tmp_path / "n2", NIGHT_1, "2026-11-01", ("%Y-%m-%d", "%d/%m/%Y"))
    assert _ingest(config, tmp_path / "run2", first_night).records_carried == 0
    same = _night(tmp_path / "n3", NIGHT_1, "2026-11-01")
    assert _ingest(same, tmp_path / "run3", first_night).records_carried == 5


def test_duplicates_across_chunks_are_found_as_in_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = HEADER + "".join(f"B{i % 4},,Al,Ng,1950-01-0{1 + i % 9},F,LS1 4AP,,\n" for i in range(11))
    config = _night(tmp_path / "n1", rows + ",,No,Id,1980-01-01,F,LS1 1AA,,\n", "2026-11-01")
    whole = _ingest(config, tmp_path / "whole")
    monkeypatch.setattr(stage, "read_table", functools.partial(read_table, chunk_rows=3))
    chunked = _ingest(config, tmp_path / "chunked")
    _same_files(whole.folder, chunked.folder)
    quarantine = pl.read_parquet(chunked.folder / "quarantine.parquet")
    assert quarantine.height == 8 and chunked.records.rows_standardised == 4
    assert quarantine["reasons"][0] == "duplicate record_id (first seen at row 1)"
    assert '"id":"B0"' in quarantine["raw_record"][0]  # the original row, as read
    assert_frame_equal(pl.read_parquet(whole.folder / "standardised.parquet"),
                       pl.read_parquet(chunked.folder / "standardised.parquet"))
