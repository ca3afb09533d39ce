"""Tests for carelink.pseudonymise.stage and its leak scan: nodes, activity, re-identification map and report."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from pathlib import Path

import numpy as np
import pandera.errors
import polars as pl
import pytest
import yaml

from carelink.config import load_config
from carelink.errors import DataQualityError, InputFileError
from carelink.ingest.stage import ingest_source
from carelink.keys import Key
from carelink.pseudonymise import leakscan
from carelink.pseudonymise import stage as pseudonymise_stage
from carelink.pseudonymise.features import FEATURES
from carelink.pseudonymise.report import render_html
from carelink.pseudonymise.schema import NodeRecord
from carelink.pseudonymise.stage import pseudonymise_source
from carelink.tables import file_sha256, read_parquet_metadata

REF = dt.date(2026, 11, 1)
KEY = Key.from_secret_for_tests("linkage", b"k" * 32)

PEOPLE = [
    "id,nhs,forename,surname,dob,gender,postcode,address,council_id",
    'GPX-1001,943 476 5919,Catherine,Whitfield,05/06/1950,F,ls6 1ab,"12 Hyde Park Road, Leeds",LA-77812',
    "GPX-1002,4010232137,Jonathan,Okonkwo,17/09/1984,M,LS2 9JT,Flat 3 Moorview Heights,",
    "GPX-1003,,Margaret,Pemberton,01/01/1900,F,XYZ,7 Manor Court,LA-99123",
    "GPX-1004,9434765918,Peggy,Pemberton,23/11/1931,female,LS6 1AB,,",
    ",9449304130,Quentin,Quarantined,14/03/1972,M,LS1 4DY,,",  # no record id: never reaches pseudonymise
]
ACTIVITY = [
    "id,when,what",
    "GPX-1001,01/02/2024,GP appointment",
    "GPX-1001,03/02/2024,Prescription",
    "GPX-1002,04/03/2024,Home visit",
    "NOPE-9,05/03/2024,Orphan",
]
COLUMNS = {"record_id": "id", "nhs_number": "nhs", "given_name": "forename", "family_name": "surname",
           "date_of_birth": "dob", "sex": "gender", "postcode": "postcode", "address": "address",
           "shared_id": "council_id"}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("partner")
    (folder / "people.csv").write_text("\n".join(PEOPLE) + "\n", encoding="utf-8")
    (folder / "contacts.csv").write_text("\n".join(ACTIVITY) + "\n", encoding="utf-8")
    data = {"partnership": "test", "reference_date": "2026-11-01", "sources": [{
        "name": "gp", "kind": "health", "path": "people.csv", "date_format": "%d/%m/%Y", "columns": COLUMNS,
        "activity": {"path": "contacts.csv",
                     "columns": {"record_id": "id", "activity_date": "when", "activity_type": "what"}},
    }]}
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    config = load_config(folder / "pipeline.yaml")
    result = ingest_source(config.sources[0], folder / "ingest", config.reference_date)
    assert (result.records.rows_standardised, result.records.rows_quarantined) == (4, 1)
    return result.folder


@pytest.fixture(scope="module")
def out(ingested: Path) -> Path:
    out = ingested.parent.parent / "pseudonymise" / "gp"
    result = pseudonymise_source(ingested, out, KEY, partnership="test", source_kind="health", reference_date=REF)
    assert (result.source, result.records, result.activity_rows, result.leak_scan_passed) == ("gp", 4, 3, True)
    return out


def token(field: str, value: str) -> int:
    digest = hmac.new(KEY.field_key(field), value.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def record_token(record_id: str) -> str:
    return hmac.new(KEY.field_key("record_id"), f"gp\x1f{record_id}".encode(), hashlib.sha256).digest()[:16].hex()


def test_writes_nodes_activity_reid_map_and_report(out: Path) -> None:
    for name in ("nodes.parquet", "activity.parquet", "reid_map.parquet", "pseudonymisation_report.json"):
        assert (out / name).is_file(), name
    meta = read_parquet_metadata(out / "nodes.parquet")
    assert meta["source"] == "gp" and meta["linkage_key_id"] == KEY.key_id == "clk-cd93baabd96b2754"
    assert read_parquet_metadata(out / "reid_map.parquet")["stays_at_partner"] is True
    NodeRecord.validate(pl.read_parquet(out / "nodes.parquet"))


def test_reid_map_links_record_ids_to_record_tokens(out: Path) -> None:
    reid = pl.read_parquet(out / "reid_map.parquet")
    assert reid.columns == ["record_id", "record_token"]
    assert dict(reid.iter_rows()) == {r: record_token(r) for r in ("GPX-1001", "GPX-1002", "GPX-1003", "GPX-1004")}
    nodes = pl.read_parquet(out / "nodes.parquet")
    assert sorted(nodes["record_token"]) == sorted(reid["record_token"])


def test_node_tokens_are_the_keyed_tokens_of_the_standardised_values(out: Path) -> None:
    nodes = {r["record_token"]: r for r in pl.read_parquet(out / "nodes.parquet").iter_rows(named=True)}
    cath, jon, marg, peggy = (nodes[record_token(f"GPX-100{i}")] for i in range(1, 5))
    assert cath["nhs_number_token"] == token("nhs_number", "9434765919")
    assert jon["nhs_number_token"] == token("nhs_number", "4010232137")
    assert marg["nhs_number_token"] is None and peggy["nhs_number_token"] is None  # missing; failed check digit
    assert (marg["nhs_number_status"], peggy["nhs_number_status"]) == ("missing", "failed_check_digit")
    assert cath["family_name_token"] == token("family_name", "WHITFIELD")
    assert cath["dob_token"] == token("date_of_birth", "1950-06-05")
    assert cath["dob_swapped_token"] == token("date_of_birth", "1950-05-06")
    assert jon["dob_swapped_token"] is None  # day 17 cannot be a month
    assert cath["postcode_unit_token"] == token("postcode_unit", "LS6 1AB")
    assert cath["postcode_sector_token"] == token("postcode_sector", "LS6 1")
    assert cath["shared_id_token"] == token("shared_id", "LA77812")
    assert marg["family_name_token"] == peggy["family_name_token"]
    assert marg["given_name_token"] != peggy["given_name_token"]
    assert marg["given_canonical_token"] == peggy["given_canonical_token"]  # PEGGY → MARGARET
    assert marg["dob_token"] is None  # 1900-01-01 is a placeholder
    assert cath["postcode_unit_token"] == peggy["postcode_unit_token"] and marg["postcode_unit_token"] is None
    assert [n["age_band"] for n in (cath, jon, marg, peggy)] == ["75-79", "40-44", None, "90+"]
    assert [n["postcode_district"] for n in (cath, jon, marg, peggy)] == ["LS6", "LS2", None, "LS6"]
    assert {n["source"] for n in nodes.values()} == {"gp"} and {n["source_kind"] for n in nodes.values()} == {"health"}


def test_activity_carries_tokens_not_record_ids(out: Path) -> None:
    activity = pl.read_parquet(out / "activity.parquet")
    assert activity.columns == ["record_token", "source", "activity_date", "activity_type"]
    assert sorted(activity.select("record_token", "activity_date").rows()) == sorted([
        (record_token("GPX-1001"), dt.date(2024, 2, 1)), (record_token("GPX-1001"), dt.date(2024, 2, 3)),
        (record_token("GPX-1002"), dt.date(2024, 3, 4))])


def _plaintext(ingested: Path) -> set[str]:
    """Every identifier value of the input, in raw and standardised spellings (upper case)."""
    values: set[str] = set()
    for line in PEOPLE[1:]:
        record_id, nhs, forename, surname, dob, _sex, postcode, *rest = line.replace('"', "").split(",")
        address = ",".join(rest[:-1])
        day, month, year = dob.split("/")
        values |= {record_id, nhs, nhs.replace(" ", ""), forename, surname, dob, f"{year}-{month}-{day}",
                   f"{year}{month}{day}", f"{day}{month}{year}", postcode, postcode.replace(" ", ""), rest[-1],
                   rest[-1].replace("-", ""), address}
        values |= set(address.replace(",", " ").split())
    standardised = pl.read_parquet(ingested / "standardised.parquet")
    for column in ("record_id", "nhs_number", "shared_id", "given_name", "family_name", "address", "postcode"):
        values |= set(standardised[column].drop_nulls().to_list())
    values |= set(standardised["date_of_birth"].drop_nulls().cast(pl.String).to_list())
    words = {v.upper() for v in values if v}
    # Short pieces (house numbers, "F", "LS6") are not identifying and collide with anything.
    return {w for w in words if len(w) >= 5 and not w.isdigit() or w.isdigit() and len(w) >= 8}


def _cells(frame: pl.DataFrame) -> list[tuple[str, str]]:
    cells = []
    for column in frame.columns:
        series = frame[column]
        if isinstance(series.dtype, pl.List):
            series = series.explode()
        cells += [(column, str(v).upper()) for v in series.drop_nulls().to_list()]
    return cells


@pytest.mark.parametrize("table", ["nodes.parquet", "activity.parquet"])
def test_no_plaintext_identifier_in_what_goes_to_the_hub(ingested: Path, out: Path, table: str) -> None:
    plaintext = _plaintext(ingested)
    assert {"9434765919", "WHITFIELD", "CATHERINE", "LS61AB", "GPX-1001", "1950-06-05", "LA77812"} <= plaintext
    cells = _cells(pl.read_parquet(out / table))
    assert cells
    found = [(column, cell, word) for column, cell in cells for word in plaintext
             if (word in cell if not cell.lstrip("-").isdigit() else word == cell.lstrip("-"))]
    assert found == []


def test_report_counts_equal_hand_computed_values(ingested: Path, out: Path) -> None:
    report = json.loads((out / "pseudonymisation_report.json").read_text(encoding="utf-8"))
    assert report["counts"] == {"records_in": 4, "records_out": 4, "activity_rows_out": 3, "records_carried": 0}
    assert report["nhs_number_status"] == {"failed_check_digit": 1, "missing": 1, "valid": 2}
    assert report["nhs_number_test_range"] == 0  # 9434765919 and 4010232137 are outside 999
    assert report["inputs_sha256"] == {
        "people.csv": file_sha256(ingested.parent.parent / "people.csv"),
        "standardised.parquet": file_sha256(ingested / "standardised.parquet"),
        "activity.parquet": file_sha256(ingested / "activity.parquet"),
    }
    assert (report["source"], report["source_kind"], report["partnership"]) == ("gp", "health", "test")
    assert report["linkage_key_id"] == KEY.key_id
    assert report["leak_scan"]["passed"] is True and report["leak_scan"]["leaks"] == []
    assert report["leak_scan"]["columns_scanned"] > 0
    for field in ("given_name", "family_name", "date_of_birth", "nhs_number", "shared_id", "postcode", "address",
                  "record_id"):
        assert field in report["dropped_plaintext_fields"]
    non_null = {f["column"]: f["non_null_out"] for f in report["fields"]}
    assert non_null["record_token"] == 4
    assert non_null["nhs_number_token"] == 2     # two valid NHS numbers
    assert non_null["shared_id_token"] == 2
    assert non_null["given_name_token"] == 4
    assert non_null["dob_token"] == 3            # 01/01/1900 is a placeholder
    assert non_null["dob_swapped_token"] == 1    # only 05/06/1950 has a day that can be a month
    assert non_null["postcode_unit_token"] == 3  # XYZ is not a postcode
    assert non_null["address_bf"] == 3
    assert non_null["age_band"] == 3
    assert non_null["ndop_opt_out"] == 0
    assert {f["column"] for f in report["fields"]} >= {f.column for f in FEATURES}
    methods = {f["column"]: (f["method"], f["key_id"]) for f in report["fields"]}
    assert methods["nhs_number_token"] == ("keyed token", KEY.key_id)
    assert methods["age_band"] == ("generalised", None)


def test_same_input_and_key_give_identical_nodes(ingested: Path, out: Path, tmp_path: Path) -> None:
    pseudonymise_source(ingested, tmp_path, KEY, partnership="test", source_kind="health", reference_date=REF)
    assert pl.read_parquet(tmp_path / "nodes.parquet").equals(pl.read_parquet(out / "nodes.parquet"))


def test_another_key_gives_unrelated_tokens(ingested: Path, out: Path, tmp_path: Path) -> None:
    other = Key.from_secret_for_tests("linkage", b"z" * 32)
    pseudonymise_source(ingested, tmp_path, other, partnership="test", source_kind="health", reference_date=REF)
    mine, theirs = pl.read_parquet(out / "nodes.parquet"), pl.read_parquet(tmp_path / "nodes.parquet")
    assert not set(mine["record_token"]) & set(theirs["record_token"])
    assert not set(mine["nhs_number_token"].drop_nulls()) & set(theirs["nhs_number_token"].drop_nulls())


def test_missing_ingest_output(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found: run ingest first"):
        pseudonymise_source(tmp_path, tmp_path / "out", KEY, partnership="t", source_kind="health", reference_date=REF)


def test_planted_leak_in_nodes_stops_the_stage(ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_build = pseudonymise_stage.build_nodes

    def leaky_build(frame: pl.DataFrame, *args, **kwargs) -> pl.DataFrame:
        nodes = real_build(frame, *args, **kwargs)
        return nodes.with_columns(frame["nhs_number"].cast(pl.Int64).alias("nhs_number_token"))

    monkeypatch.setattr(pseudonymise_stage, "build_nodes", leaky_build)
    with pytest.raises(DataQualityError, match=r"leak scan found identifier values in nodes\.nhs_number_token") as info:
        pseudonymise_source(ingested, tmp_path, KEY, partnership="test", source_kind="health", reference_date=REF)
    assert info.value.exit_code == 1
    assert not (tmp_path / "nodes.parquet").exists() and not (tmp_path / "reid_map.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pseudonymisation_report.html",
                                                         "pseudonymisation_report.json"]
    assert [p.name for p in tmp_path.parent.iterdir() if ".staging-" in p.name] == []  # no staged file left
    report = json.loads((tmp_path / "pseudonymisation_report.json").read_text(encoding="utf-8"))
    assert report["leak_scan"]["passed"] is False
    assert report["leak_scan"]["leaks"] == [{"table": "nodes", "column": "nhs_number_token", "cells": 2}]


# ----------------------------------------------------------------------------------------- leak scan


@pytest.fixture(scope="module")
def standardised(ingested: Path) -> pl.DataFrame:
    return pl.read_parquet(ingested / "standardised.parquet")


@pytest.mark.parametrize(
    "column",
    [
        pl.Series("leak", [1, 9434765919, 3]),                       # NHS number as an integer
        pl.Series("leak", ["a", "9434765919"]),                        # ... as text
        pl.Series("leak", ["943 476 5919"]),                           # ... spaced
        pl.Series("leak", ["seen 943 476 5919 on Tuesday"]),          # ... inside free text
        pl.Series("leak", ["WHITFIELD"]),                              # surname
        pl.Series("leak", ["whitfield"]),                              # ... lower case
        pl.Series("leak", ["Catherine"]),                              # forename
        pl.Series("leak", ["LS6 1AB"]),                                # postcode
        pl.Series("leak", ["moved to LS6 1AB last year"]),            # ... inside free text
        pl.Series("leak", ["1950-06-05"]),                             # date of birth as text
        pl.Series("leak", ["05/06/1950"]),
        pl.Series("leak", ["GPX-1001"]),                               # record id
        pl.Series("leak", ["LA77812"]),                                # shared id
        pl.Series("leak", [[7, 4010232137]]),                          # inside a list column
    ],
)
def test_leak_scan_catches_a_planted_leak(standardised: pl.DataFrame, column: pl.Series) -> None:
    result = leakscan.scan({"nodes": pl.DataFrame([column])}, standardised)
    assert result.passed is False
    assert result.leaks[0]["table"] == "nodes" and result.leaks[0]["column"] == "leak"
    assert result.to_dict()["passed"] is False


def test_leak_scan_counts_cells(standardised: pl.DataFrame) -> None:
    frame = pl.DataFrame({"clean": ["LS6", "75-79"], "dirty": ["PEMBERTON", "OKONKWO"]})
    result = leakscan.scan({"nodes": frame}, standardised)
    assert result.leaks == [{"table": "nodes", "column": "dirty", "cells": 2}]
    assert (result.columns_scanned, result.cells_scanned) == (2, 4)


def test_leak_scan_aligned_numeric_column_catches_the_records_own_value(standardised: pl.DataFrame) -> None:
    leaked = standardised["nhs_number"].cast(pl.Int64).alias("nhs_number_token")
    result = leakscan.scan({"nodes": pl.DataFrame([leaked])}, standardised, aligned=("nodes",))
    assert result.passed is False
    assert result.leaks == [{"table": "nodes", "column": "nhs_number_token", "cells": 2}]


def _volunteers(count: int) -> pl.DataFrame:
    """Standardised records VOL-262146, VOL-262147, ... (ids of six digits; no other identifier)."""
    return pl.DataFrame({"record_id": [f"VOL-{262146 + i}" for i in range(count)],
                         "nhs_number": pl.Series([None] * count, dtype=pl.String),
                         "date_of_birth": pl.Series([None] * count, dtype=pl.Date)})


def test_a_sparse_bloom_word_equal_to_its_records_id_by_chance_is_not_a_leak() -> None:
    # Found at ten million records: record VOL-262146's address word was 2^18 + 2 = 262146, two bits set, as a
    # sparse Bloom-filter word often is; one such coincidence is what chance gives, not a leak.
    records = _volunteers(1000)
    rng = np.random.default_rng(7)
    words = [[int(w) for w in rng.integers(-2**63, 2**63 - 1, 8)] for _ in range(records.height)]
    words[0][3] = 2**18 + 2
    result = leakscan.scan({"nodes": pl.DataFrame({"address_bf": words})}, records, aligned=("nodes",))
    assert result.passed is True
    [found] = result.coincidences
    assert (found["column"], found["cells"]) == ("address_bf", 1) and 0 < found["expected_by_chance"] < 0.01
    assert result.to_dict()["coincidences"] == [found]


def test_the_report_names_chance_coincidences(out: Path) -> None:
    report = json.loads((out / "pseudonymisation_report.json").read_text())
    report["leak_scan"]["coincidences"] = [{"table": "nodes", "column": "address_bf", "cells": 1,
                                            "expected_by_chance": 0.021}]
    page = render_html(report)
    assert "Leak scan passed" in page and "Chance, not leaks" in page and "nodes.address_bf: 1 record, 0.021 expected" in page
    assert "Chance, not leaks" not in render_html(json.loads((out / "pseudonymisation_report.json").read_text()))


def test_record_ids_written_into_bloom_words_are_a_leak_however_sparse() -> None:
    records = _volunteers(3)
    words = [[2**18 + 2 + i] for i in range(3)]  # every record's own id: far more often than chance
    result = leakscan.scan({"nodes": pl.DataFrame({"address_bf": words})}, records, aligned=("nodes",))
    assert result.leaks == [{"table": "nodes", "column": "address_bf", "cells": 3}] and not result.coincidences


def test_leak_scan_categorical_columns_are_listed_not_scanned(standardised: pl.DataFrame) -> None:
    frame = pl.DataFrame({"band": ["WHITFIELD"], "flag": [True]})
    result = leakscan.scan({"nodes": frame}, standardised, categorical=("band",))
    assert result.passed is True
    assert result.not_scanned == ["nodes.band", "nodes.flag"]


def test_leak_scan_passes_on_the_real_outputs(standardised: pl.DataFrame, out: Path) -> None:
    outputs = {"nodes": pl.read_parquet(out / "nodes.parquet"), "activity": pl.read_parquet(out / "activity.parquet")}
    assert leakscan.scan(outputs, standardised, pseudonymise_stage.CATEGORICAL, aligned=("nodes",)).passed is True
    assert leakscan.scan(outputs, standardised, pseudonymise_stage.CATEGORICAL).passed is True


def test_leak_scan_aligned_date_column_catches_the_records_own_birth_date(standardised: pl.DataFrame) -> None:
    # Found while writing these tests: Date columns were never scanned, so a plaintext birth date passed.
    leaked = standardised["date_of_birth"].alias("ndop_opt_out_date")
    result = leakscan.scan({"nodes": pl.DataFrame([leaked])}, standardised, aligned=("nodes",))
    assert result.leaks == [{"table": "nodes", "column": "ndop_opt_out_date", "cells": 3}]


def test_leak_scan_lists_unaligned_date_columns_as_not_scanned(standardised: pl.DataFrame) -> None:
    # Event dates (activity, consent) may equal someone's birth date; they are reported, not compared.
    frame = pl.DataFrame({"activity_date": pl.Series([dt.date(1950, 6, 5)], dtype=pl.Date)})
    result = leakscan.scan({"activity": frame}, standardised, aligned=("nodes",))
    assert result.passed is True
    assert result.not_scanned == ["activity.activity_date"]


def test_leak_scan_integer_column_in_an_aligned_table_is_checked_against_every_record(standardised: pl.DataFrame) -> None:
    # Found while writing these tests: integers were compared only with their own row, so a plaintext NHS number
    # column in another order passed.
    leaked = standardised["nhs_number"].cast(pl.Int64).reverse().alias("nhs_number_token")
    result = leakscan.scan({"nodes": pl.DataFrame([leaked])}, standardised, aligned=("nodes",))
    assert result.leaks == [{"table": "nodes", "column": "nhs_number_token", "cells": 2}]


def test_consent_date_on_the_day_of_birth_is_not_a_leak(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text(
        "id,forename,surname,dob,ndop,ndop_date\n"
        "B1,Baby,Whitfield,01/03/2026,Y,01/03/2026\n"
        "A1,Adult,Okonkwo,17/09/1984,N,\n", encoding="utf-8")
    data = {"partnership": "test", "reference_date": "2026-11-01", "sources": [{
        "name": "maternity", "path": "people.csv", "date_format": "%d/%m/%Y",
        "columns": {"record_id": "id", "given_name": "forename", "family_name": "surname", "date_of_birth": "dob",
                    "ndop_opt_out": "ndop", "ndop_opt_out_date": "ndop_date"}}]}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    config = load_config(tmp_path / "pipeline.yaml")
    ingested = ingest_source(config.sources[0], tmp_path / "ingest", config.reference_date)
    result = pseudonymise_source(ingested.folder, tmp_path / "out", KEY, partnership="test", source_kind="health",
                                 reference_date=REF)
    assert result.leak_scan_passed


def _ingest_small(folder: Path, people: list[str], activity: list[str] | None = None) -> Path:
    (folder / "people.csv").write_text("\n".join(people) + "\n", encoding="utf-8")
    source = {"name": "gp", "path": "people.csv", "columns": {"record_id": "id", "given_name": "forename"}}
    if activity is not None:
        (folder / "contacts.csv").write_text("\n".join(activity) + "\n", encoding="utf-8")
        source["activity"] = {"path": "contacts.csv",
                              "columns": {"record_id": "id", "activity_date": "when", "activity_type": "what"}}
    data = {"partnership": "test", "reference_date": "2026-11-01", "sources": [source]}
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    config = load_config(folder / "pipeline.yaml")
    return ingest_source(config.sources[0], folder / "ingest", config.reference_date).folder


def test_header_only_source_gives_empty_outputs(tmp_path: Path) -> None:
    ingested = _ingest_small(tmp_path, ["id,forename"])
    result = pseudonymise_source(ingested, tmp_path / "out", KEY, partnership="t", source_kind="voluntary",
                                 reference_date=REF)
    assert (result.records, result.activity_rows, result.leak_scan_passed) == (0, 0, True)
    assert pl.read_parquet(tmp_path / "out" / "nodes.parquet").height == 0
    report = json.loads((tmp_path / "out" / "pseudonymisation_report.json").read_text(encoding="utf-8"))
    assert report["counts"] == {"records_in": 0, "records_out": 0, "activity_rows_out": 0, "records_carried": 0}


def test_numeric_activity_codes_are_not_leaks(tmp_path: Path) -> None:
    ingested = _ingest_small(tmp_path, ["id,forename"] + [f"{i},Ann" for i in range(1, 20)],
                             ["id,when,what", "1,2024-01-01,12", "2,2024-01-02,31"])
    result = pseudonymise_source(ingested, tmp_path / "out", KEY, partnership="t", source_kind="health",
                                 reference_date=REF)
    assert result.leak_scan_passed


@pytest.mark.parametrize("hardening", ["balanced", "salted"])
def test_hardened_bloom_filters_are_recorded_in_the_delivery(ingested: Path, tmp_path: Path, hardening: str) -> None:
    result = pseudonymise_source(ingested, tmp_path, KEY, partnership="test", source_kind="health",
                                 reference_date=REF, bloom_hardening=hardening)
    assert result.leak_scan_passed
    nodes = pl.read_parquet(tmp_path / "nodes.parquet")
    assert nodes["given_name_bf"].list.len().to_list() == [16 if hardening == "balanced" else 8] * 4
    assert read_parquet_metadata(tmp_path / "nodes.parquet")["bloom_hardening"] == hardening
    assert json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))["bloom_hardening"] == hardening
    report = json.loads((tmp_path / "pseudonymisation_report.json").read_text(encoding="utf-8"))
    algorithms = {f["column"]: f["algorithm"] for f in report["fields"]}
    assert ("balanced" if hardening == "balanced" else "salted") in algorithms["address_bf"]


def test_default_delivery_names_no_hardening(out: Path) -> None:
    assert "bloom_hardening" not in read_parquet_metadata(out / "nodes.parquet")


def test_duplicate_records_stop_the_stage_before_anything_is_written(ingested: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ingest"
    folder.mkdir()
    standardised = pl.read_parquet(ingested / "standardised.parquet")
    pl.concat([standardised, standardised.head(1)]).write_parquet(folder / "standardised.parquet")
    with pytest.raises(pandera.errors.SchemaError, match="record_token"):  # the node schema: tokens unique
        pseudonymise_source(folder, tmp_path / "out", KEY, partnership="test", source_kind="health", reference_date=REF)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
