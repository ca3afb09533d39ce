"""Tests for carelink.ingest.stage and carelink.ingest.readers: extracts in, standardised records and quarantine out."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from carelink.config import PipelineConfig, load_config
from carelink.errors import EXIT_INPUT, InputFileError
from carelink.ingest.readers import RAW, ROW, read_table
from carelink.ingest.schema import StandardisedRecord
from carelink.ingest.stage import IngestResult, ingest_source

REF = dt.date(2026, 11, 1)
PEOPLE_COLUMNS = {
    "record_id": "id", "nhs_number": "nhs", "given_name": "forename", "family_name": "surname",
    "date_of_birth": "dob", "sex": "gender", "postcode": "postcode",
}
HEADER = "id,nhs,forename,surname,dob,gender,postcode"


def make_config(folder: Path, **source) -> PipelineConfig:
    """Write a one-source pipeline YAML into ``folder`` and load it."""
    entry = {"name": "gp", "kind": "health", "path": "people.csv", "date_format": ["%d/%m/%Y", "%d/%m/%y"],
             "columns": PEOPLE_COLUMNS} | source
    data = {"partnership": "test", "reference_date": "2026-11-01", "sources": [entry]}
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_config(folder / "pipeline.yaml")


def write_csv(folder: Path, lines: list[str], name: str = "people.csv", encoding: str = "utf-8",
              bom: bool = False) -> Path:
    path = folder / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + ("\n".join(lines) + "\n").encode(encoding))
    return path


def ingest(folder: Path, **source) -> IngestResult:
    config = make_config(folder, **source)
    assert config.reference_date == REF
    return ingest_source(config.sources[0], folder / "out", config.reference_date)


def outputs(result: IngestResult) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    return (pl.read_parquet(result.folder / "standardised.parquet"),
            pl.read_parquet(result.folder / "quarantine.parquet"),
            json.loads((result.folder / "validation.json").read_text(encoding="utf-8")))


# -------------------------------------------------------------------------------------- reconciliation


@pytest.fixture()
def messy(tmp_path: Path) -> IngestResult:
    write_csv(tmp_path, [
        HEADER,
        "A1,943 476 5919,Mr John,Smith,05/06/1950,M,ls61ab",            # row 1: good
        "A2,9434765918,Zoë,O'Brien,31/02/2000,female,XYZ",              # row 2: kept, invalid values nulled
        "A3,too,few",                                                     # row 3: ragged (3 fields)
        ",4010232137,Ann,Lee,01/01/1980,F,LS6 1AB",                       # row 4: no record_id
        "A1,4010232137,Ann,Lee,01/01/1980,F,LS6 1AB",                     # row 5: repeats A1
        "A4,4010232137,Ann,Lee,01/01/1980,F,LS6 1AB,extra",               # row 6: ragged (8 fields)
        "",                                                               # a blank line is not a row
        "   ,,Bob,Jones,02/02/1960,M,LS2 9JT",                            # row 7: blank record_id
        "A5,,Bob,Jones,02/02/60,m,LS2 9JT",                               # row 8: good
        "A1,,Clone,Smith,05/06/1950,M,LS6 1AB",                           # row 9: repeats A1 again
    ])
    return ingest(tmp_path)


def test_rows_in_equal_standardised_plus_quarantined(messy: IngestResult) -> None:
    records, quarantine, summary = outputs(messy)
    assert (messy.records.rows_in, messy.records.rows_standardised, messy.records.rows_quarantined) == (9, 3, 6)
    assert messy.records.reconciles()
    assert records.height == 3 and quarantine.height == 6
    assert summary["records"] == {"rows_in": 9, "standardised": 3, "quarantined": 6, "reconciles": True}
    assert messy.activity is None and summary["activity"] is None
    assert sorted(records[ROW].to_list() + quarantine[ROW].to_list()) == list(range(1, 10))


def test_quarantine_reasons(messy: IngestResult) -> None:
    _, quarantine, summary = outputs(messy)
    assert dict(zip(quarantine[ROW], quarantine["reasons"], strict=True)) == {
        3: "row has 3 fields, header has 7",
        4: "record_id is missing",
        5: "duplicate record_id (first seen at row 1)",
        6: "row has 8 fields, header has 7",
        7: "record_id is missing",
        9: "duplicate record_id (first seen at row 1)",
    }
    assert summary["quarantine_reasons"] == {
        "duplicate record_id": 2, "record_id is missing": 2,
        "row has 3 fields, header has 7": 1, "row has 8 fields, header has 7": 1,
    }


def test_quarantine_keeps_the_raw_row(messy: IngestResult) -> None:
    _, quarantine, _ = outputs(messy)
    raw = dict(zip(quarantine[ROW], quarantine[RAW], strict=True))
    assert json.loads(raw[3]) == ["A3", "too", "few"]
    assert json.loads(raw[6])[-1] == "extra"
    assert json.loads(raw[5]) == {"id": "A1", "nhs": "4010232137", "forename": "Ann", "surname": "Lee",
                                  "dob": "01/01/1980", "gender": "F", "postcode": "LS6 1AB"}


def test_standardised_values(messy: IngestResult) -> None:
    records, _, _ = outputs(messy)
    StandardisedRecord.validate(records)
    rows = {r["record_id"]: r for r in records.iter_rows(named=True)}
    assert set(rows) == {"A1", "A2", "A5"}
    a1, a2, a5 = rows["A1"], rows["A2"], rows["A5"]
    assert (a1["source"], a1[ROW], a1["nhs_number"], a1["nhs_number_status"]) == ("gp", 1, "9434765919", "valid")
    assert (a1["given_name"], a1["family_name"], a1["date_of_birth"], a1["sex"]) == ("JOHN", "SMITH", dt.date(1950, 6, 5), "M")
    assert (a1["postcode"], a1["postcode_status"]) == ("LS6 1AB", "valid")
    assert (a2["nhs_number"], a2["nhs_number_status"]) == (None, "failed_check_digit")
    assert (a2["given_name"], a2["family_name"], a2["sex"]) == ("ZOE", "OBRIEN", "F")
    assert (a2["date_of_birth"], a2["date_of_birth_status"]) == (None, "unparseable")
    assert (a2["postcode"], a2["postcode_status"]) == (None, "invalid")
    assert (a5["nhs_number_status"], a5["date_of_birth"], a5["sex"]) == ("missing", dt.date(1960, 2, 2), "M")
    assert a5["address"] is None and a5["shared_id"] is None and a5["ndop_opt_out"] is None  # unmapped fields


def test_validation_summary_tallies(messy: IngestResult) -> None:
    _, _, summary = outputs(messy)
    assert summary["source"] == "gp"
    assert summary["input"]["path"] == "people.csv" and len(summary["input"]["sha256"]) == 64
    assert summary["nhs_number_status"] == {"failed_check_digit": 1, "missing": 1, "valid": 1}
    assert summary["date_of_birth_status"] == {"unparseable": 1, "valid": 2}
    assert summary["postcode_status"] == {"invalid": 1, "valid": 2}
    assert summary["completeness"] == {"nhs_number": 1, "shared_id": 0, "given_name": 3, "family_name": 3,
                                       "date_of_birth": 2, "sex": 3, "address": 0, "postcode": 2}


def test_nul_bytes_quarantined(tmp_path: Path) -> None:
    write_csv(tmp_path, [HEADER, "A1,,Ann,Lee,,,", "A2,,B\x00b,Lee,,,"])
    result = ingest(tmp_path)
    records, quarantine, _ = outputs(result)
    assert records["record_id"].to_list() == ["A1"]
    assert quarantine.select(ROW, "reasons").rows() == [(2, "row holds binary data (NUL bytes)")]


def test_quoted_field_with_delimiter_and_newline_is_one_row(tmp_path: Path) -> None:
    write_csv(tmp_path, ["id,forename,address", 'A1,Ann,"1 High St,\nLeeds"', "A2,Bob,2 Low St"])
    result = ingest(tmp_path, columns={"record_id": "id", "given_name": "forename", "address": "address"})
    records, _, _ = outputs(result)
    assert result.records.rows_in == 2
    assert records.select("record_id", ROW, "address").rows() == [("A1", 1, "1 HIGH ST LEEDS"), ("A2", 2, "2 LOW ST")]


def test_semicolon_delimiter(tmp_path: Path) -> None:
    write_csv(tmp_path, [HEADER.replace(",", ";"), "A1;9434765919;Ann;Lee;01/02/1980;F;LS6 1AB"])
    records, _, _ = outputs(ingest(tmp_path, delimiter=";"))
    assert records.select("nhs_number", "given_name", "date_of_birth").row(0) == ("9434765919", "ANN", dt.date(1980, 2, 1))


# ------------------------------------------------------------------------------------------- encodings


def test_latin1_file_read_with_latin1(tmp_path: Path) -> None:
    write_csv(tmp_path, [HEADER, "A1,,Zoë,Müller,,,", "A2,,Renée,Øster,,,"], encoding="latin-1")
    records, _, _ = outputs(ingest(tmp_path, encoding="latin-1"))
    assert records.select("given_name", "family_name").rows() == [("ZOE", "MULLER"), ("RENEE", "OSTER")]


def test_latin1_file_declared_utf8_raises_naming_the_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [HEADER, "A1,,Ann,Lee,,,", "A2,,Zoë,Lee,,,", "A3,,Bob,Lee,,,"], encoding="latin-1")
    with pytest.raises(InputFileError) as info:
        ingest(tmp_path)
    assert info.value.exit_code == EXIT_INPUT == 3
    message = str(info.value)
    assert message.startswith(str(path))
    assert "line 3 is not valid utf-8" in message
    assert "b'\\xeb'" in message
    assert not (tmp_path / "out" / "gp" / "standardised.parquet").exists()


def test_utf8_file_declared_latin1_raises_instead_of_garbling(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [HEADER, "A1,,Ann,Lee,,,", "A2,,Zoë,Lee,,,"], encoding="utf-8")
    with pytest.raises(InputFileError) as info:
        ingest(tmp_path, encoding="latin-1")
    message = str(info.value)
    assert info.value.exit_code == EXIT_INPUT
    assert message.startswith(str(path)) and "line 3" in message and "utf-8" in message


def test_utf8_byte_order_mark_tolerated(tmp_path: Path) -> None:
    write_csv(tmp_path, [HEADER, "A1,,Zoë,Lee,,,"], bom=True)
    result = ingest(tmp_path)
    records, _, _ = outputs(result)
    assert records.select("record_id", "given_name").rows() == [("A1", "ZOE")]


def test_cp1252_smart_quotes(tmp_path: Path) -> None:
    write_csv(tmp_path, [HEADER, "A1,,Ann,O’Neil,,,"], encoding="cp1252")
    records, _, _ = outputs(ingest(tmp_path, encoding="cp1252"))
    assert records["family_name"].to_list() == ["ONEIL"]


# ------------------------------------------------------------------------------------ file-level errors


def test_header_only_file_gives_zero_rows(tmp_path: Path) -> None:
    write_csv(tmp_path, [HEADER])
    result = ingest(tmp_path)
    records, quarantine, summary = outputs(result)
    assert (result.records.rows_in, result.records.rows_standardised, result.records.rows_quarantined) == (0, 0, 0)
    assert records.height == 0 and quarantine.height == 0
    StandardisedRecord.validate(records)
    assert summary["records"]["reconciles"] is True
    assert summary["nhs_number_status"] == {}


def test_empty_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(b"")
    with pytest.raises(InputFileError, match="file is empty") as info:
        ingest(tmp_path)
    assert info.value.exit_code == EXIT_INPUT


def test_mapped_column_missing_raises_naming_the_column(tmp_path: Path) -> None:
    write_csv(tmp_path, ["id,nhs,forename,lastname,dob,gender,postcode", "A1,,Ann,Lee,,,"])
    with pytest.raises(InputFileError) as info:
        ingest(tmp_path)
    message = str(info.value)
    assert info.value.exit_code == EXIT_INPUT
    assert "field 'surname'" in message
    assert "mapped column for family_name is missing" in message
    assert "lastname" in message  # the header is shown as a hint


def test_wrong_delimiter_hint(tmp_path: Path) -> None:
    write_csv(tmp_path, [HEADER.replace(",", ";"), "A1;;Ann;Lee;;;"])
    with pytest.raises(InputFileError, match=r"mapped column for record_id is missing \(wrong delimiter\?\)"):
        ingest(tmp_path)


def test_duplicate_header_column_raises(tmp_path: Path) -> None:
    write_csv(tmp_path, ["id,nhs,forename,surname,dob,gender,postcode,id", "A1,,Ann,Lee,,,,A1"])
    with pytest.raises(InputFileError, match=r"row 0, field 'id': the header names this column twice"):
        ingest(tmp_path)


@pytest.mark.parametrize(("value", "row"), [("maybe", 2), ("perhaps so", 2)])
def test_unknown_consent_code_raises_naming_file_row_and_field(tmp_path: Path, value: str, row: int) -> None:
    path = write_csv(tmp_path, [HEADER + ",ndop", "A1,,Ann,Lee,,,,Y", f"A2,,Bob,Lee,,,,{value}", "A3,,Cy,Lee,,,,N"])
    with pytest.raises(InputFileError) as info:
        ingest(tmp_path, columns=PEOPLE_COLUMNS | {"ndop_opt_out": "ndop"})
    message = str(info.value)
    assert info.value.exit_code == EXIT_INPUT
    assert message.startswith(f"{path}, row {row}, field 'ndop': unknown value {value!r}")


def test_consent_codes_mapped(tmp_path: Path) -> None:
    write_csv(tmp_path, [
        HEADER + ",ndop,ndop_date,shared,shared_date,research",
        "A1,,Ann,Lee,,,,Y,01/03/2024,Granted,02/03/2024,yes",
        "A2,,Bob,Lee,,,,opted  out,,withdrawn consent,,no",
        "A3,,Cy,Lee,,,,n,,declined,,",
        "A4,,Di,Lee,,,,,,,,",
    ])
    columns = PEOPLE_COLUMNS | {"ndop_opt_out": "ndop", "ndop_opt_out_date": "ndop_date",
                                "shared_care_consent": "shared", "shared_care_consent_date": "shared_date",
                                "research_consent": "research"}
    records, _, _ = outputs(ingest(tmp_path, columns=columns))
    assert records.select("ndop_opt_out", "ndop_opt_out_date", "shared_care_consent", "shared_care_consent_date",
                          "research_consent").rows() == [
        (True, dt.date(2024, 3, 1), "granted", dt.date(2024, 3, 2), True),
        (True, None, "withdrawn", None, False),
        (False, None, "refused", None, None),
        (None, None, None, None, None),
    ]


# -------------------------------------------------------------------------------------------- Parquet


def test_parquet_input_with_a_date_column(tmp_path: Path) -> None:
    pl.DataFrame({
        "id": ["P1", "P2", "P3", None],
        "nhs": ["9434765919", None, "123", "4010232137"],
        "forename": ["Ann", "Bob", "Cy", "Di"],
        "surname": ["Lee", "Ng", "Po", "Qi"],
        "dob": pl.Series([dt.date(1950, 6, 5), None, dt.date(1880, 1, 1), dt.date(1990, 1, 1)], dtype=pl.Date),
        "gender": ["F", "M", "U", "F"],
        "postcode": ["ls61ab", None, "LS2 9JT", "LS2 9JT"],
    }).write_parquet(tmp_path / "people.parquet")
    result = ingest(tmp_path, path="people.parquet")  # format from the suffix; the source's date_format is not ISO
    records, quarantine, _ = outputs(result)
    assert (result.records.rows_in, result.records.rows_standardised, result.records.rows_quarantined) == (4, 3, 1)
    assert records.select("record_id", "date_of_birth", "date_of_birth_status").rows() == [
        ("P1", dt.date(1950, 6, 5), "valid"), ("P2", None, "missing"), ("P3", None, "out_of_range")]
    assert records["nhs_number_status"].to_list() == ["valid", "missing", "invalid_format"]
    assert records["postcode"].to_list() == ["LS6 1AB", None, "LS2 9JT"]
    assert quarantine.select(ROW, "reasons").rows() == [(4, "record_id is missing")]


def test_parquet_typed_columns_read_as_text(tmp_path: Path) -> None:
    pl.DataFrame({"id": [101, 102], "nhs": [9434765919, 4010232137],
                  "seen": [dt.datetime(2024, 1, 2, 3, 4), dt.datetime(2024, 5, 6)]}).write_parquet(tmp_path / "x.parquet")
    config = make_config(tmp_path, path="x.parquet", columns={"record_id": "id", "nhs_number": "nhs"})
    chunks = list(read_table(config.sources[0].table))
    assert len(chunks) == 1
    assert chunks[0].rows.rows() == [("101", "9434765919", "2024-01-02", 1), ("102", "4010232137", "2024-05-06", 2)]


def test_parquet_mapped_column_missing(tmp_path: Path) -> None:
    pl.DataFrame({"id": ["P1"]}).write_parquet(tmp_path / "people.parquet")
    with pytest.raises(InputFileError, match=r"field 'nhs': mapped column for nhs_number is missing"):
        ingest(tmp_path, path="people.parquet")


def test_not_a_parquet_file(tmp_path: Path) -> None:
    (tmp_path / "people.parquet").write_text("id\nA1\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="not a readable Parquet file") as info:
        ingest(tmp_path, path="people.parquet", columns={"record_id": "id"})
    assert info.value.exit_code == EXIT_INPUT


def test_header_only_parquet(tmp_path: Path) -> None:
    pl.DataFrame(schema={name: pl.String for name in PEOPLE_COLUMNS.values()}).write_parquet(tmp_path / "people.parquet")
    result = ingest(tmp_path, path="people.parquet")
    assert (result.records.rows_in, result.records.rows_standardised, result.records.rows_quarantined) == (0, 0, 0)


# ------------------------------------------------------------------------------------------- readers


def test_reader_chunks_number_rows_across_chunks(tmp_path: Path) -> None:
    write_csv(tmp_path, [HEADER] + [f"A{i},,N,S,,," for i in range(1, 6)] + ["A6,short"] + ["A7,,N,S,,,"])
    config = make_config(tmp_path)
    chunks = list(read_table(config.sources[0].table, chunk_rows=3))
    assert [c.rows.height + c.unreadable.height for c in chunks] == [3, 3, 1]
    assert pl.concat([c.rows for c in chunks])[ROW].to_list() == [1, 2, 3, 4, 5, 7]
    assert pl.concat([c.unreadable for c in chunks])[ROW].to_list() == [6]


# ------------------------------------------------------------------------------------------- activity


def test_activity_reconciles_and_orphans_are_quarantined(tmp_path: Path) -> None:
    write_csv(tmp_path, [HEADER, "A1,,Ann,Lee,,,", "A1,,Dup,Lee,,,", "A2,,Bob,Lee,,,"])
    write_csv(tmp_path, ["id,when,what", "A1,01/02/2024,GP visit", "A2,2/3/24,A&E", "ZZ,01/02/2024,orphan",
                         "A1,01/02/2024", " A2 ,31/02/2024,bad date"], name="contacts.csv")
    activity = {"path": "contacts.csv", "columns": {"record_id": "id", "activity_date": "when", "activity_type": "what"}}
    result = ingest(tmp_path, activity=activity)
    assert result.activity is not None
    assert (result.activity.rows_in, result.activity.rows_standardised, result.activity.rows_quarantined) == (5, 3, 2)
    kept = pl.read_parquet(result.folder / "activity.parquet")
    assert kept.select("record_id", ROW, "activity_date", "activity_type").rows() == [
        ("A1", 1, dt.date(2024, 2, 1), "GP visit"), ("A2", 2, dt.date(2024, 3, 2), "A&E"), ("A2", 5, None, "bad date")]
    quarantined = pl.read_parquet(result.folder / "activity_quarantine.parquet")
    assert quarantined.select(ROW, "reasons").rows() == [
        (3, "record_id not among the source's accepted records"), (4, "row has 2 fields, header has 3")]
    summary = json.loads((result.folder / "validation.json").read_text(encoding="utf-8"))
    assert summary["activity"] == {"rows_in": 5, "standardised": 3, "quarantined": 2, "reconciles": True}


def test_shared_id_standardised(tmp_path: Path) -> None:
    write_csv(tmp_path, ["id,sid,forename", "A1,la-0001 7,Ann", "A2,,Bob"])
    records, _, _ = outputs(ingest(tmp_path, columns={"record_id": "id", "shared_id": "sid", "given_name": "forename"}))
    assert records["shared_id"].to_list() == ["LA00017", None]


def test_odd_shared_id_does_not_lose_the_record(tmp_path: Path) -> None:
    # Regression: an identifier with '_' used to break the schema and quarantine the whole record.
    write_csv(tmp_path, ["id,sid,forename", "A1,ab_12,Ann", "A2,LA#7,Bob"])
    result = ingest(tmp_path, columns={"record_id": "id", "shared_id": "sid", "given_name": "forename"})
    records, quarantine, _ = outputs(result)
    assert (result.records.rows_standardised, quarantine.height) == (2, 0)
    assert records["shared_id"].to_list() == ["AB12", "LA7"]


# ---------------------------------------------------------------- regressions found while writing these tests


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])
def test_utf16_file_read_with_utf16(tmp_path: Path, encoding: str) -> None:
    # Found while writing these tests: lines were split on b"\n" before decoding, so every UTF-16 row was
    # quarantined as unparseable CSV.
    text = "id,forename,surname\r\nA1,Zoë,Lee\r\nA2,Bob,Ng\r\n"
    (tmp_path / "people.csv").write_bytes(text.encode(encoding))
    result = ingest(tmp_path, encoding=encoding, columns={"record_id": "id", "given_name": "forename",
                                                          "family_name": "surname"})
    records, quarantine, _ = outputs(result)
    assert quarantine.height == 0
    assert records.select("given_name", "family_name").rows() == [("ZOE", "LEE"), ("BOB", "NG")]


def test_parquet_integral_float_columns_read_as_integers(tmp_path: Path) -> None:
    # Found while writing these tests: a float64 NHS number column (pandas, with gaps) read as '9434765919.0'.
    pl.DataFrame({"id": [101.0, 102.0], "nhs": [9434765919.0, None]}).write_parquet(tmp_path / "people.parquet")
    result = ingest(tmp_path, path="people.parquet", columns={"record_id": "id", "nhs_number": "nhs"})
    records, _, _ = outputs(result)
    assert records.select("record_id", "nhs_number", "nhs_number_status").rows() == [
        ("101", "9434765919", "valid"), ("102", None, "missing")]


def test_consent_dates_after_the_reference_date_are_null(tmp_path: Path) -> None:
    # Found while writing these tests: a mistyped future date (01/01/2062) was kept and, as the "latest"
    # statement, outranked every real one in consent resolution.
    write_csv(tmp_path, ["id,shared,shared_date,ndop,ndop_date", "A1,granted,01/01/2062,Y,31/12/2099",
                         "A2,withdrawn,01/11/2026,N,02/11/2026"])
    columns = {"record_id": "id", "shared_care_consent": "shared", "shared_care_consent_date": "shared_date",
               "ndop_opt_out": "ndop", "ndop_opt_out_date": "ndop_date"}
    records, quarantine, _ = outputs(ingest(tmp_path, columns=columns, date_format="%d/%m/%Y"))
    assert quarantine.height == 0
    assert records.select("shared_care_consent", "shared_care_consent_date", "ndop_opt_out", "ndop_opt_out_date").rows() == [
        ("granted", None, True, None), ("withdrawn", REF, False, None)]
