"""Hostile and broken input (issue 8): a clear error or a quarantined row, and nothing lost.

Every case ends either in a one-line error from ``carelink ingest`` with its documented exit code (usage/config 2,
input file 3) naming the file and, where there is one, the row and field; or in an ingest whose rows are each
standardised (invalid values nulled with a status saying why) or quarantined with a reason, where rows in = rows
standardised + rows quarantined and every source row appears exactly once.

The module counts the cases it runs and prints ``hostile input: N cases tried, M handled`` at the end of the run.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from carelink.cli import main
from carelink.config import load_config
from carelink.errors import EXIT_INPUT, EXIT_USAGE, InputFileError
from carelink.ingest.readers import RAW, ROW
from carelink.ingest.schema import StandardisedRecord
from carelink.ingest.stage import ingest_source

REF = dt.date(2026, 11, 1)
COLUMNS = {
    "record_id": "id", "nhs_number": "nhs", "given_name": "forename", "family_name": "surname",
    "date_of_birth": "dob", "sex": "gender", "postcode": "postcode",
}
HEADER = "id,nhs,forename,surname,dob,gender,postcode"
GOOD = "A1,9434765919,Ann,Lee,05/06/1950,F,LS6 1AB"


# ------------------------------------------------------------------------------- the tally of cases


class _Tally:
    """A pytest plugin counting this module's cases; prints the count in the terminal summary."""

    name = "carelink-hostile-tally"

    def __init__(self) -> None:
        self.tried = 0
        self.handled = 0

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not report.nodeid.split("::")[0].endswith(Path(__file__).name):
            return
        if report.when == "call" or (report.when == "setup" and report.failed):
            self.tried += 1
            self.handled += int(report.passed)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_line(f"hostile input: {self.tried} cases tried, {self.handled} handled "
                                    "(a one-line error with its exit code, or rows standardised or quarantined "
                                    "that reconcile)")


@pytest.fixture(scope="session", autouse=True)
def _tally(request: pytest.FixtureRequest) -> None:
    plugins = request.config.pluginmanager
    if not plugins.has_plugin(_Tally.name):
        plugins.register(_Tally(), _Tally.name)


# ------------------------------------------------------------------------------------------- helpers


def pipeline(folder: Path, **source: Any) -> Path:
    """Write a one-source pipeline YAML into ``folder`` (source keys override the defaults)."""
    entry = {"name": "gp", "kind": "health", "path": "people.csv", "date_format": ["%d/%m/%Y", "%d/%m/%y"],
             "columns": COLUMNS} | source
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"partnership": "test", "reference_date": REF.isoformat(), "sources": [entry]},
                                   sort_keys=False),
                    encoding="utf-8")
    return path


def write(folder: Path, content: bytes | str | list[str], name: str = "people.csv", encoding: str = "utf-8") -> Path:
    """Write an extract: bytes as they are, text in ``encoding``, a list of lines joined with newlines."""
    if isinstance(content, list):
        content = "\n".join(content) + "\n"
    if isinstance(content, str):
        content = content.encode(encoding)
    path = folder / name
    path.write_bytes(content)
    return path


@dataclass(frozen=True)
class Accepted:
    """An ingest that finished: its standardised records and its quarantine."""

    records: pl.DataFrame
    quarantine: pl.DataFrame
    rows_in: int

    def reasons(self) -> dict[int, str]:
        return dict(zip(self.quarantine[ROW].to_list(), self.quarantine["reasons"].to_list(), strict=True))

    def record(self, record_id: str) -> dict[str, Any]:
        return self.records.filter(pl.col("record_id") == record_id).row(0, named=True)


def accepted(folder: Path, **source: Any) -> Accepted:
    """Ingest the pipeline in ``folder`` and check that nothing was lost."""
    config = load_config(pipeline(folder, **source))
    result = ingest_source(config.sources[0], folder / "out", config.reference_date)
    counts = result.records
    records = pl.read_parquet(result.folder / "standardised.parquet")
    quarantine = pl.read_parquet(result.folder / "quarantine.parquet")
    summary = json.loads((result.folder / "validation.json").read_text(encoding="utf-8"))
    assert counts.rows_in == counts.rows_standardised + counts.rows_quarantined
    assert (records.height, quarantine.height) == (counts.rows_standardised, counts.rows_quarantined)
    assert summary["records"]["reconciles"] is True
    assert sorted(records[ROW].to_list() + quarantine[ROW].to_list()) == list(range(1, counts.rows_in + 1))
    assert quarantine["reasons"].null_count() == 0 and all(quarantine["reasons"].str.len_chars() > 0)
    StandardisedRecord.validate(records)
    assert not list((folder / "out").rglob("*.csv"))
    return Accepted(records, quarantine, counts.rows_in)


def rejected(folder: Path, exit_code: int, *fragments: str, **source: Any) -> str:
    """Run ``carelink ingest`` on the pipeline in ``folder``: the exit code, one line on stderr, no traceback."""
    config = pipeline(folder, **source)
    result = CliRunner().invoke(main, ["ingest", str(config), "--workspace", str(folder / "ws")])
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def rejected_input(folder: Path, *fragments: str, **source: Any) -> str:
    """An input-file error (exit 3) whose message starts with the file's path."""
    path = folder / source.get("path", "people.csv")
    message = rejected(folder, EXIT_INPUT, *fragments, **source)
    assert message.startswith(f"error: {path}")
    return message


def people(*rows: str, header: str = HEADER) -> list[str]:
    return [header, *rows]


# ---------------------------------------------------------------------------------- empty and header


@pytest.mark.parametrize(("content", "fragment"), [
    (b"", "file is empty (no header row)"),
    (b"\xef\xbb\xbf", "file is empty (no header row)"),              # a byte-order mark and nothing else
    (b"\n\r\n\r\n", "file is empty (no header row)"),                 # blank lines only
    (b"   \n", "column 1 of the header has no name"),
], ids=["zero-bytes", "bom-only", "blank-lines-only", "whitespace-header"])
def test_empty_file_is_an_error(tmp_path: Path, content: bytes, fragment: str) -> None:
    write(tmp_path, content)
    rejected_input(tmp_path, fragment)


@pytest.mark.parametrize("content", [HEADER + "\n", HEADER, HEADER + "\r\n", "\n\n" + HEADER + "\n\n\n"],
                         ids=["lf", "no-final-newline", "crlf", "blank-lines-around"])
def test_header_only_file_gives_zero_rows(tmp_path: Path, content: str) -> None:
    write(tmp_path, content)
    result = accepted(tmp_path)
    assert (result.rows_in, result.records.height, result.quarantine.height) == (0, 0, 0)


def test_mapped_column_missing(tmp_path: Path) -> None:
    write(tmp_path, people(GOOD, header=HEADER.replace("surname", "lastname")))
    message = rejected_input(tmp_path, "field 'surname': mapped column for family_name is missing")
    assert "'lastname'" in message  # the header is shown


@pytest.mark.parametrize(("header", "fragment"), [
    (HEADER + ",id", "row 0, field 'id': the header names this column twice"),
    (HEADER + ", id ", "row 0, field 'id': the header names this column twice"),
    ("id,,nhs,forename,surname,dob,gender,postcode", "row 0: column 2 of the header has no name"),
    (HEADER + ",", "row 0: column 8 of the header has no name"),
    (HEADER + ",   ", "row 0: column 8 of the header has no name"),
    (HEADER + ",source_row", "row 0, field 'source_row': this column name is reserved"),
], ids=["duplicate", "duplicate-after-trimming", "blank", "trailing-delimiter", "whitespace-name", "reserved-name"])
def test_duplicate_blank_or_reserved_column_names(tmp_path: Path, header: str, fragment: str) -> None:
    write(tmp_path, people(header=header))
    rejected_input(tmp_path, fragment)


def test_header_name_with_a_newline_keeps_the_error_on_one_line(tmp_path: Path) -> None:
    write(tmp_path, people(header='id,"nhs\nnumber",forename,surname,dob,gender,postcode'))
    rejected_input(tmp_path, "field 'nhs': mapped column for nhs_number is missing", "'nhs\\nnumber'")


@pytest.mark.parametrize(("in_file", "declared"), [(";", ","), ("\t", ","), ("|", ","), (",", ";")],
                         ids=["semicolon", "tab", "pipe", "comma-declared-semicolon"])
def test_wrong_delimiter_says_which_one_fits(tmp_path: Path, in_file: str, declared: str) -> None:
    write(tmp_path, people(GOOD.replace(",", in_file), header=HEADER.replace(",", in_file)))
    rejected_input(tmp_path, "mapped column for record_id is missing (wrong delimiter?)",
                   f"the header splits on {in_file!r}", delimiter=declared)


def test_right_delimiter_declared_reads(tmp_path: Path) -> None:
    write(tmp_path, people(GOOD.replace(",", "\t"), header=HEADER.replace(",", "\t")))
    assert accepted(tmp_path, delimiter="\t").record("A1")["given_name"] == "ANN"


# ------------------------------------------------------------------------- byte-order marks, encodings


def test_utf8_byte_order_mark_is_not_part_of_the_first_name(tmp_path: Path) -> None:
    write(tmp_path, b"\xef\xbb\xbf" + "\n".join(people("A1,,Zoë,Lee,,,")).encode())
    assert accepted(tmp_path).record("A1")["given_name"] == "ZOE"


def test_utf8_byte_order_mark_with_utf8_sig_declared(tmp_path: Path) -> None:
    write(tmp_path, "\n".join(people("A1,,Zoë,Lee,,,")), encoding="utf-8-sig")
    assert accepted(tmp_path, encoding="utf-8-sig").record("A1")["given_name"] == "ZOE"


@pytest.mark.parametrize(("declared", "fragment"), [
    ("utf-8", "the file starts with a UTF-16 byte-order mark; set the source's encoding to utf-16"),
    ("latin-1", "the file starts with a UTF-16 byte-order mark; set the source's encoding to utf-16"),
])
def test_utf16_file_declared_otherwise(tmp_path: Path, declared: str, fragment: str) -> None:
    write(tmp_path, "\n".join(people("A1,,Zoë,Lee,,,")), encoding="utf-16")
    rejected_input(tmp_path, "row 0", fragment, encoding=declared)


def test_utf32_file_declared_utf8(tmp_path: Path) -> None:
    write(tmp_path, "\n".join(people("A1,,Zoë,Lee,,,")), encoding="utf-32")
    rejected_input(tmp_path, "UTF-32 byte-order mark; set the source's encoding to utf-32")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_wide_encodings_declared_correctly_read(tmp_path: Path, encoding: str) -> None:
    write(tmp_path, "\r\n".join(people("A1,,Zoë,Lee,,,", "A2,,Bob,Ng,,,")) + "\r\n", encoding=encoding)
    result = accepted(tmp_path, encoding=encoding)
    assert result.records.select("given_name", "family_name").rows() == [("ZOE", "LEE"), ("BOB", "NG")]


def test_one_byte_file_declared_utf16(tmp_path: Path) -> None:
    write(tmp_path, people(GOOD))
    rejected_input(tmp_path, "cannot be decoded as utf-16", encoding="utf-16")


@pytest.mark.parametrize(("text", "encoding", "declared", "fragments"), [
    ("A2,,Zoë,Lee,,,", "latin-1", "utf-8",
     ("row 2, field 'forename': line 3 is not valid utf-8 (byte b'\\xeb')", "(e.g. latin-1 or cp1252)")),
    ("A2,,Ann,O’Neil,,,", "cp1252", "utf-8",
     ("row 2, field 'surname': line 3 is not valid utf-8 (byte b'\\x92')",)),
    ("A2,,Zoë,Lee,,,", "utf-8", "latin-1",
     ("row 2, field 'forename': line 3 reads as 'ZoÃ«': UTF-8 text decoded as latin-1",
      "set the source's encoding to utf-8")),
    ("A2,,Renée,Lee,,,", "utf-8", "cp1252",
     ("row 2, field 'forename': line 3 reads as 'RenÃ©e'", "set the source's encoding to utf-8")),
    ("A2,,Ann,O’Neil,,,", "utf-8", "cp1252",
     ("row 2, field 'surname'", "UTF-8 text decoded as cp1252", "set the source's encoding to utf-8")),
    ("A2,,Ángela,Lee,,,", "utf-8", "cp1252",  # Á is C3 81 in UTF-8, and 81 is not a cp1252 character
     ("row 2, field 'forename': line 3 is not valid cp1252 (byte b'\\x81')", "set the source's encoding to utf-8")),
    ("A2,,Zoë,Lee,,,", "utf-8", "ascii",
     ("row 2, field 'forename': line 3 is not valid ascii", "set the source's encoding to utf-8")),
], ids=["latin1-as-utf8", "cp1252-as-utf8", "utf8-as-latin1", "utf8-as-cp1252", "utf8-quote-as-cp1252",
        "utf8-undefined-in-cp1252", "utf8-as-ascii"])
def test_file_not_in_its_declared_encoding(tmp_path: Path, text: str, encoding: str, declared: str,
                                           fragments: tuple[str, ...]) -> None:
    write(tmp_path, people("A1,,Ann,Lee,,,", text, "A3,,Bob,Lee,,,"), encoding=encoding)
    rejected_input(tmp_path, *fragments, encoding=declared)
    assert not list(tmp_path.rglob("standardised.parquet"))


def test_utf8_header_declared_latin1(tmp_path: Path) -> None:
    write(tmp_path, people("A1,Zoë", header="id,prénom"), encoding="utf-8")
    rejected_input(tmp_path, "row 0, field 'prÃ©nom': line 1 reads as 'prÃ©nom'", "encoding to utf-8",
                   encoding="latin-1", columns={"record_id": "id", "given_name": "prénom"})


def test_utf8_byte_order_mark_declared_latin1(tmp_path: Path) -> None:
    write(tmp_path, b"\xef\xbb\xbf" + "\n".join(people(GOOD)).encode())
    rejected_input(tmp_path, "row 0", "reads as 'ï»¿id'", "set the source's encoding to utf-8", encoding="latin-1")


def test_bad_byte_in_a_multi_line_row_names_its_line(tmp_path: Path) -> None:
    write(tmp_path, [HEADER, 'A1,,Ann,"Lee', 'Ng\xeb",,,'], encoding="latin-1")
    rejected_input(tmp_path, "row 1, field 'surname': line 3 is not valid utf-8")


@pytest.mark.parametrize(("encoding", "names"), [
    ("latin-1", [("ZOE", "MULLER"), ("RENEE", "OSTER")]),
    ("cp1252", [("ZOE", "MULLER"), ("RENEE", "OSTER")]),
    ("iso-8859-15", [("ZOE", "MULLER"), ("RENEE", "OSTER")]),
])
def test_one_byte_encodings_declared_correctly_read(tmp_path: Path, encoding: str, names: list) -> None:
    write(tmp_path, people("A1,,Zoë,Müller,,,", "A2,,Renée,Øster,,,"), encoding=encoding)
    assert accepted(tmp_path, encoding=encoding).records.select("given_name", "family_name").rows() == names


# ------------------------------------------------------------------------------------------ line endings


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"], ids=["crlf", "cr", "lf"])
def test_line_endings(tmp_path: Path, newline: str) -> None:
    write(tmp_path, newline.join(people("A1,,Ann,Lee,,,", "A2,,Bob,Ng,,,")) + newline)
    result = accepted(tmp_path)
    assert result.records.select("record_id", "family_name", ROW).rows() == [("A1", "LEE", 1), ("A2", "NG", 2)]


def test_mixed_line_endings(tmp_path: Path) -> None:
    write(tmp_path, HEADER + "\r\nA1,,Ann,Lee,,,\rA2,,Bob,Ng,,,\nA3,,Cy,Po,,,\r\n\r\n\rA4,,Di,Qi,,,")
    result = accepted(tmp_path)
    assert result.records.select("record_id", "family_name").rows() == [
        ("A1", "LEE"), ("A2", "NG"), ("A3", "PO"), ("A4", "QI")]


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"], ids=["crlf", "cr", "lf"])
def test_line_break_inside_a_quoted_field(tmp_path: Path, newline: str) -> None:
    write(tmp_path, newline.join(["id,forename,address", f'A1,Ann,"1 High St{newline}Leeds"', "A2,Bob,2 Low St"]))
    result = accepted(tmp_path, columns={"record_id": "id", "given_name": "forename", "address": "address"})
    assert result.records.select("record_id", ROW, "address").rows() == [
        ("A1", 1, "1 HIGH ST LEEDS"), ("A2", 2, "2 LOW ST")]


# ------------------------------------------------------------------------------------------ quotes


@pytest.mark.parametrize(("row", "surname"), [
    ('A1,,Ann,"O""Brien",,,', "OBRIEN"),           # doubled quote inside a quoted field
    ('A1,,Ann,O"Brien,,,', "OBRIEN"),              # stray quote in an unquoted field
    ('A1,,Ann,"O"Brien,,,', "OBRIEN"),             # text after the closing quote
    ('A1,,Ann,"Smith, Jones",,,', "SMITH JONES"),  # quoted delimiter
    ('A1,,Ann,"",,,', None),                       # empty quoted field
], ids=["doubled", "stray", "after-closing", "quoted-delimiter", "empty-quoted"])
def test_quotes(tmp_path: Path, row: str, surname: str | None) -> None:
    write(tmp_path, people(row))
    assert accepted(tmp_path).record("A1")["family_name"] == surname


def test_unterminated_quote_swallows_the_rest_into_one_quarantined_row(tmp_path: Path) -> None:
    write(tmp_path, people('A1,,"Ann,Lee,,,', "A2,,Bob,Ng,,,"))
    result = accepted(tmp_path)
    assert result.reasons() == {1: "row has 3 fields, header has 7"}
    assert "A2,,Bob,Ng" in json.loads(result.quarantine[RAW][0])[2]  # nothing lost: the raw row holds it


# ------------------------------------------------------------------------------------------ ragged rows


def test_ragged_rows_quarantined_with_their_fields(tmp_path: Path) -> None:
    write(tmp_path, people(GOOD, "A2,too,few", GOOD.replace("A1", "A3") + ",extra", GOOD.replace("A1", "A4") + ",",
                           "   ", "A5,,Bob,Ng,,,"))
    result = accepted(tmp_path)
    assert result.reasons() == {2: "row has 3 fields, header has 7", 3: "row has 8 fields, header has 7",
                                4: "row has 8 fields, header has 7", 5: "row has 1 fields, header has 7"}
    assert json.loads(result.quarantine[RAW][0]) == ["A2", "too", "few"]
    assert result.records["record_id"].to_list() == ["A1", "A5"]


# ---------------------------------------------------------------------------------------- binary garbage


def test_nul_bytes_quarantine_the_row(tmp_path: Path) -> None:
    write(tmp_path, people(GOOD, "A2,,B\x00b,Lee,,,", "A3,\x00\x00\x00,,,,,"))
    result = accepted(tmp_path)
    assert result.reasons() == {2: "row holds binary data (NUL bytes)", 3: "row holds binary data (NUL bytes)"}
    assert json.loads(result.quarantine[RAW][0])[2] == "B\x00b"


def test_control_characters_are_cleaned_from_names(tmp_path: Path) -> None:
    write(tmp_path, people("A1,,\x01An\x1bn\x7f,L\x07ee,,,"))
    row = accepted(tmp_path).record("A1")
    assert (row["given_name"], row["family_name"]) == ("ANN", "LEE")


@pytest.mark.parametrize("content", [
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00",      # an image renamed .csv
    b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcb\xc8\x04\x00",  # a gzip file
    b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xa8\xd1",  # an .xlsx
], ids=["png", "gzip", "xlsx"])
def test_binary_file_declared_utf8(tmp_path: Path, content: bytes) -> None:
    write(tmp_path, content)
    rejected_input(tmp_path, "is not valid utf-8 (byte")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_random_bytes_after_a_header(tmp_path: Path, seed: int, encoding: str) -> None:
    noise = random.Random(seed).randbytes(4000)
    write(tmp_path, (HEADER + "\n").encode() + noise)
    try:
        config = load_config(pipeline(tmp_path, encoding=encoding))
        ingest_source(config.sources[0], tmp_path / "check", config.reference_date)
    except InputFileError as exc:
        assert exc.exit_code == EXIT_INPUT and "\n" not in exc.message
        rejected_input(tmp_path, exc.message.split(": ", 1)[1][:40], encoding=encoding)
    else:
        accepted(tmp_path, encoding=encoding)


# ------------------------------------------------------------------------------------------ long fields


def test_field_over_the_limit_quarantines_its_row(tmp_path: Path) -> None:
    huge = "x" * 2_000_000
    write(tmp_path, people(GOOD, f"A2,,{huge},Lee,,,", "A3,,Bob,Ng,,,"))
    result = accepted(tmp_path)
    assert result.reasons() == {2: "row cannot be parsed as CSV: field larger than field limit (1048576)"}
    assert huge in json.loads(result.quarantine[RAW][0])  # nothing lost
    assert result.records["record_id"].to_list() == ["A1", "A3"]


def test_quoted_multi_line_field_over_the_limit(tmp_path: Path) -> None:
    write(tmp_path, people(GOOD, 'A2,,"' + "x\n" * 600_000 + '",Lee,,,', "A3,,Bob,Ng,,,"))
    result = accepted(tmp_path)
    assert result.reasons()[2] == "row cannot be parsed as CSV: field larger than field limit (1048576)"
    assert result.records["record_id"].to_list()[0] == "A1"


def test_field_just_under_the_limit_is_read(tmp_path: Path) -> None:
    write(tmp_path, people("A1,,Ann," + "z" * 1_000_000 + ",,,"))
    assert accepted(tmp_path).record("A1")["family_name"] == "Z" * 1_000_000


def test_header_over_the_limit(tmp_path: Path) -> None:
    write(tmp_path, people(header=HEADER + "," + "h" * 2_000_000))
    rejected_input(tmp_path, "row 0: header cannot be parsed: field larger than field limit")


def test_long_unknown_code_is_shortened_in_the_error(tmp_path: Path) -> None:
    write(tmp_path, people("A1,,Ann,Lee,,,," + "maybe" * 100_000, header=HEADER + ",ndop"))
    message = rejected_input(tmp_path, "row 1, field 'ndop': unknown value 'maybemaybe",
                             columns=COLUMNS | {"ndop_opt_out": "ndop"})
    assert len(message) < 500


# ---------------------------------------------------------------------------------- duplicate record ids


def test_duplicate_record_ids_quarantined(tmp_path: Path) -> None:
    write(tmp_path, people(GOOD, GOOD.replace("Ann", "Dup"), " A1 ,,Pad,Lee,,,", "a1,,Case,Lee,,,", "A2,,Bob,Ng,,,"))
    result = accepted(tmp_path)
    assert result.reasons() == {2: "duplicate record_id (first seen at row 1)",
                                3: "duplicate record_id (first seen at row 1)"}
    assert result.records["record_id"].to_list() == ["A1", "a1", "A2"]  # case is significant in an identifier
    assert result.record("A1")["given_name"] == "ANN"


@pytest.mark.parametrize("record_id", ["", "   ", '""', "\t"], ids=["empty", "spaces", "quoted-empty", "tab"])
def test_missing_record_id_quarantined(tmp_path: Path, record_id: str) -> None:
    write(tmp_path, people(GOOD, f"{record_id},,Bob,Ng,,,"))
    assert accepted(tmp_path).reasons() == {2: "record_id is missing"}


@pytest.mark.parametrize("repeat", [HEADER, "\ufeff" + HEADER, HEADER.replace(",", " , ")],
                         ids=["plain", "with-bom", "spaced"])
def test_repeated_header_row_quarantined(tmp_path: Path, repeat: str) -> None:
    write(tmp_path, people(GOOD, repeat, "A2,,Bob,Ng,,,"))
    result = accepted(tmp_path)
    assert result.reasons() == {2: "row repeats the header (extracts concatenated?)"}
    assert result.records["record_id"].to_list() == ["A1", "A2"]


# ------------------------------------------------------------------------------------------------ dates


@pytest.mark.parametrize(("raw", "date", "status"), [
    ("02/11/2026", None, "out_of_range"),           # the day after the reference date
    ("01/01/2099", None, "out_of_range"),
    ("31/12/1889", None, "out_of_range"),
    ("01/01/1850", None, "out_of_range"),
    ("31/02/2000", None, "unparseable"),
    ("29/02/2001", None, "unparseable"),
    ("00/01/2000", None, "unparseable"),
    ("29/02/2000", dt.date(2000, 2, 29), "valid"),
    ("05/06/30", dt.date(1930, 6, 5), "valid"),      # two-digit years never land in the future
    ("05/06/20", dt.date(2020, 6, 5), "valid"),
    ("02/11/26", dt.date(1926, 11, 2), "valid"),
    ("01/01/1900", None, "placeholder"),
    ("1950-06-05", None, "unparseable"),             # not among the source's formats
    ("05/06/1950 00:00", None, "unparseable"),
    ("unknown", None, "unparseable"),
    ("", None, "missing"),
])
def test_dates_of_birth(tmp_path: Path, raw: str, date: dt.date | None, status: str) -> None:
    write(tmp_path, people(f"A1,,Ann,Lee,{raw},,"))
    assert accepted(tmp_path).records.select("date_of_birth", "date_of_birth_status").row(0) == (date, status)


def test_consent_dates_in_the_future_are_dropped(tmp_path: Path) -> None:
    write(tmp_path, ["id,shared,shared_date", "A1,granted,01/01/2062", "A2,withdrawn,01/10/2026"])
    result = accepted(tmp_path, columns={"record_id": "id", "shared_care_consent": "shared",
                                         "shared_care_consent_date": "shared_date"})
    assert result.records.select("shared_care_consent", "shared_care_consent_date").rows() == [
        ("granted", None), ("withdrawn", dt.date(2026, 10, 1))]


# ----------------------------------------------------------------------------------------- NHS numbers


@pytest.mark.parametrize(("raw", "number", "status"), [
    ("943 476 5919", "9434765919", "valid"),
    ("943-476-5919", "9434765919", "valid"),
    (" 943.476.5919 ", "9434765919", "valid"),
    ("9434765918", None, "failed_check_digit"),
    ("943476591", None, "invalid_format"),
    ("94347659190", None, "invalid_format"),
    ("94347659l9", None, "invalid_format"),
    ("9.434765919E9", None, "invalid_format"),       # a spreadsheet's scientific notation
    ("NHS 943 476 5919", None, "invalid_format"),
    ("", None, "missing"),
    *((str(d) * 10, None, "placeholder") for d in range(10)),
    ("0123456789", None, "placeholder"),
    ("1234567890", None, "placeholder"),
])
def test_nhs_numbers(tmp_path: Path, raw: str, number: str | None, status: str) -> None:
    write(tmp_path, people(f"A1,{raw},Ann,Lee,,,"))
    assert accepted(tmp_path).records.select("nhs_number", "nhs_number_status").row(0) == (number, status)


# ------------------------------------------------------------------------------------------- postcodes


@pytest.mark.parametrize(("raw", "postcode", "status"), [
    ("75008", None, "invalid"),            # France
    ("90210-1234", None, "invalid"),       # United States
    ("K1A 0B1", None, "invalid"),          # Canada
    ("D02 X285", None, "invalid"),         # Ireland (Eircode)
    ("LS6 1AB extra", None, "invalid"),
    ("LS61", None, "invalid"),
    ("LS6 1CI", None, "invalid"),          # C and I are never in an inward code
    ("N/A", None, "invalid"),
    ("sw1a1aa", "SW1A 1AA", "valid"),
    (" ls6  1ab ", "LS6 1AB", "valid"),
    ("--", None, "missing"),
])
def test_postcodes(tmp_path: Path, raw: str, postcode: str | None, status: str) -> None:
    write(tmp_path, people(f"A1,,Ann,Lee,,,{raw}"))
    assert accepted(tmp_path).records.select("postcode", "postcode_status").row(0) == (postcode, status)


# --------------------------------------------------------------------------------------------- Unicode


@pytest.mark.parametrize("name", ["Zoë Brontë", "José Núñez", "Chloé-Anaïs", "Ångström"])
def test_nfc_and_nfd_rows_standardise_alike(tmp_path: Path, name: str) -> None:
    nfc, nfd = unicodedata.normalize("NFC", name), unicodedata.normalize("NFD", name)
    assert nfc != nfd
    write(tmp_path, ["id,forename", f"A1,{nfc}", f"A2,{nfd}"])
    result = accepted(tmp_path, columns={"record_id": "id", "given_name": "forename"})
    assert result.record("A1")["given_name"] == result.record("A2")["given_name"]


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_header_in_either_form_matches_the_mapping(tmp_path: Path, form: str) -> None:
    write(tmp_path, [unicodedata.normalize(form, "id,prénom"), "A1,Zoë"])
    mapping = {"record_id": "id", "given_name": unicodedata.normalize("NFD" if form == "NFC" else "NFC", "prénom")}
    assert accepted(tmp_path, columns=mapping).record("A1")["given_name"] == "ZOE"


@pytest.mark.parametrize(("raw", "expected"), [("Ｚｏｅ", "ZOE"), ("Zoe\U0001f600", "ZOE"), ("Zo\u200be", "ZO E"),
                                              ("ZOË", "ZOE")], ids=["fullwidth", "emoji", "zero-width", "upper"])
def test_odd_unicode_in_names(tmp_path: Path, raw: str, expected: str) -> None:
    write(tmp_path, people(f"A1,,{raw},Lee,,,"))
    assert accepted(tmp_path).record("A1")["given_name"] in (expected, expected.replace(" ", ""))


# ---------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize("raw", ["Mr", "Mrs.", "Dr Prof", "Sir", "'-.", "???", "123", "Mr 123", "()"])
def test_name_of_only_titles_or_punctuation_is_null(tmp_path: Path, raw: str) -> None:
    write(tmp_path, people(f'A1,,"{raw}","{raw}",,,'))
    row = accepted(tmp_path).record("A1")
    assert (row["given_name"], row["family_name"]) == (None, None)


# --------------------------------------------------------------------------------- spreadsheet formulas


FORMULAS = ["=cmd|' /C calc'!A0", "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0",
            '=HYPERLINK("http://x.example","y")', "\t=1+1", "\r=1+1"]


@pytest.mark.parametrize("formula", FORMULAS, ids=["equals", "plus", "minus", "at", "hyperlink", "tab", "cr"])
def test_formula_strings_never_reach_a_csv(tmp_path: Path, formula: str) -> None:
    quoted = '"' + formula.replace('"', '""') + '"'
    write(tmp_path, people(f"F1,{quoted},{quoted},{quoted},{quoted},{quoted},{quoted}",
                           f"F1,,{quoted},,,,",            # repeats F1: quarantined with its raw row
                           f"{quoted},,Ann,Lee,,,",
                           f"F2,{quoted}"))                # ragged: quarantined with its raw fields
    result = accepted(tmp_path)  # which also checks that no CSV is written
    assert set(result.reasons()) == {2, 4}
    for column in ("nhs_number", "given_name", "family_name", "date_of_birth", "sex", "postcode"):
        values = [v for v in result.records[column].to_list() if v is not None]
        assert not any(str(v)[:1] in "=+-@\t\r" for v in values), (column, values)
    raw = [json.loads(r) for r in result.quarantine[RAW]]  # nothing lost: kept verbatim, in Parquet
    assert formula in raw[0].values() and formula in raw[1]
    summary = (tmp_path / "out" / "gp" / "validation.json").read_text(encoding="utf-8")
    assert "cmd|" not in summary and "HYPERLINK" not in summary


# --------------------------------------------------------------------------------- Parquet of wrong types


def write_parquet(folder: Path, columns: dict[str, Any]) -> None:
    """Write people.parquet with pyarrow (whose types polars would coerce): two rows, ``id`` and ``forename``."""
    base: dict[str, Any] = {"id": ["P1", "P2"], "forename": ["Ann", "Bob"]}
    pq.write_table(pa.table(base | columns), folder / "people.parquet")


PARQUET = {"path": "people.parquet", "date_format": "%d/%m/%Y"}


@pytest.mark.parametrize(("columns", "mapping", "expected"), [
    ({"dob": pa.array([19500605, 1], pa.int64())}, {"date_of_birth": "dob"},
     [(None, "unparseable"), (None, "unparseable")]),
    ({"nhs": pa.array([9434765919.0, None], pa.float64())}, {"nhs_number": "nhs"},
     [("9434765919", "valid"), (None, "missing")]),
    ({"nhs": pa.array([9434765919.5, float("inf")], pa.float64())}, {"nhs_number": "nhs"},
     [(None, "invalid_format"), (None, "invalid_format")]),
    ({"nhs": pa.array([9434765919, 1], pa.int64())}, {"nhs_number": "nhs"},
     [("9434765919", "valid"), (None, "invalid_format")]),
    ({"nhs": pa.array([9434765919, None], pa.decimal128(10, 0))}, {"nhs_number": "nhs"},
     [("9434765919", "valid"), (None, "missing")]),
    ({"dob": pa.array([dt.datetime(1950, 6, 5, 12, 0), None], pa.timestamp("us", tz="Europe/London"))},
     {"date_of_birth": "dob"}, [(dt.date(1950, 6, 5), "valid"), (None, "missing")]),
    ({"dob": pa.array([dt.date(1, 1, 1), dt.date(9999, 12, 31)], pa.date32())}, {"date_of_birth": "dob"},
     [(None, "unparseable"), (None, "out_of_range")]),
    ({"sex": pa.array(["F", "M"]).dictionary_encode()}, {"sex": "sex"}, [("F",), ("M",)]),
    ({"forename2": pa.array([b"Zo\xc3\xab", None], pa.binary())}, {"family_name": "forename2"}, [("ZOE",), (None,)]),
], ids=["dob-int", "nhs-float", "nhs-fractional-float", "nhs-int", "nhs-decimal", "dob-timestamp-tz",
        "dob-extreme-dates", "sex-dictionary", "name-utf8-binary"])
def test_parquet_typed_columns_read_as_text(tmp_path: Path, columns: dict, mapping: dict, expected: list) -> None:
    write_parquet(tmp_path, columns)
    result = accepted(tmp_path, **PARQUET, columns={"record_id": "id"} | mapping)
    canonical = next(iter(mapping))
    status = {"nhs_number": ["nhs_number_status"], "date_of_birth": ["date_of_birth_status"]}.get(canonical, [])
    assert result.records.select(canonical, *status).rows() == expected


def test_parquet_dob_as_int_with_a_matching_format(tmp_path: Path) -> None:
    write_parquet(tmp_path, {"dob": pa.array([19500605, 20991231], pa.int64())})
    result = accepted(tmp_path, **PARQUET | {"date_format": "%Y%m%d"}, columns={"record_id": "id", "date_of_birth": "dob"})
    assert result.records.select("date_of_birth", "date_of_birth_status").rows() == [
        (dt.date(1950, 6, 5), "valid"), (None, "out_of_range")]


def test_parquet_float_record_ids_with_a_gap(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": pa.array([101.0, float("nan"), None, 102.0])}), tmp_path / "people.parquet")
    result = accepted(tmp_path, **PARQUET, columns={"record_id": "id"})
    assert result.records["record_id"].to_list() == ["101", "102"]  # not "101.0", and NaN is not an id
    assert result.reasons() == {2: "record_id is missing", 3: "record_id is missing"}


@pytest.mark.parametrize(("column", "fragment"), [
    (pa.array([{"a": 1}, {"a": 2}]), "field 'forename2': the column holds Struct"),
    (pa.array([[1], [2]]), "field 'forename2': the column holds List"),
    (pa.array([dt.timedelta(1), None]), "field 'forename2': the column holds Duration"),
    (pa.array([b"ok", b"\xff\xfe"], pa.binary()), "row 2, field 'forename2': the column holds bytes that are not UTF-8"),
], ids=["struct", "list", "duration", "invalid-binary"])
def test_parquet_mapped_column_of_a_type_that_is_not_text(tmp_path: Path, column: pa.Array, fragment: str) -> None:
    write_parquet(tmp_path, {"forename2": column})
    rejected_input(tmp_path, fragment, **PARQUET, columns={"record_id": "id", "given_name": "forename2"})


def test_parquet_unmapped_nested_columns_are_kept_in_the_raw_record(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": ["P1", "P1"], "extra": pa.array([{"a": [1, 2]}, {"a": [3]}]),
                             "blob": pa.array([b"\xff", b"x"])}), tmp_path / "people.parquet")
    result = accepted(tmp_path, **PARQUET, columns={"record_id": "id"})
    assert json.loads(result.quarantine[RAW][0]) == {"id": "P1", "extra": '{"a": [3]}', "blob": "x"}


def test_parquet_duplicate_column_names(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_arrays([pa.array(["P1"]), pa.array(["P2"])], names=["id", "id"]),
                   tmp_path / "people.parquet")
    rejected_input(tmp_path, "row 0, field 'id': the header names this column twice", **PARQUET,
                   columns={"record_id": "id"})


def test_parquet_reserved_column_name(tmp_path: Path) -> None:
    write_parquet(tmp_path, {"source_row": pa.array([7, 8])})
    rejected_input(tmp_path, "field 'source_row': this column name is reserved", **PARQUET,
                   columns={"record_id": "id"})


@pytest.mark.parametrize("cut", [0.5, 0.9], ids=["half", "footer-cut"])
def test_truncated_parquet(tmp_path: Path, cut: float) -> None:
    write_parquet(tmp_path, {"nhs": pa.array(["9434765919", None])})
    data = (tmp_path / "people.parquet").read_bytes()
    (tmp_path / "people.parquet").write_bytes(data[: int(len(data) * cut)])
    rejected_input(tmp_path, "not a readable Parquet file", **PARQUET, columns={"record_id": "id"})


def test_csv_declared_parquet(tmp_path: Path) -> None:
    write(tmp_path, people(GOOD))
    rejected_input(tmp_path, "not a readable Parquet file", format="parquet")


def test_parquet_declared_csv(tmp_path: Path) -> None:
    write_parquet(tmp_path, {})
    rejected_input(tmp_path, "row 0: this is a Parquet file: set the source's format to parquet",
                   **PARQUET | {"format": "csv"}, columns={"record_id": "id"})


# ------------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(("make", "source", "fragment"), [
    (lambda d: None, {"path": "../people.csv"}, "sources[0].path: path '../people.csv' points outside"),
    (lambda d: None, {"path": "/etc/passwd"}, "sources[0].path: path '/etc/passwd' points outside"),
    (lambda d: (d / "link.csv").symlink_to(d.parent / "people.csv"), {"path": "link.csv"},
     "sources[0].path: path 'link.csv' points outside"),
    (lambda d: None, {"path": "missing.csv"}, "sources[0].path: file 'missing.csv' does not exist"),
    (lambda d: (d / "folder.csv").mkdir(), {"path": "folder.csv"}, "sources[0].path: 'folder.csv' is not a file"),
    (lambda d: None, {"activity": {"path": "../people.csv", "columns": {
        "record_id": "id", "activity_date": "d", "activity_type": "t"}}}, "sources[0].activity.path: path"),
    (lambda d: None, {"encoding": "klingon"}, "sources[0].encoding: unknown encoding 'klingon'"),
    (lambda d: None, {"encoding": "rot13"}, "sources[0].encoding: unknown encoding 'rot13'"),
    (lambda d: None, {"encoding": "undefined"}, "sources[0].encoding: unknown encoding 'undefined'"),
    (lambda d: None, {"encoding": "unicode_escape"}, "sources[0].encoding: 'unicode_escape' is an escaping scheme"),
    (lambda d: None, {"encoding": "idna"}, "sources[0].encoding: 'idna' is an escaping scheme"),
    (lambda d: None, {"delimiter": '"'}, "sources[0].delimiter: must be a single character other than a quote"),
    (lambda d: None, {"delimiter": "\n"}, "sources[0].delimiter"),
    (lambda d: None, {"format": "xlsx"}, "sources[0].format: 'xlsx' is not one of csv, parquet"),
], ids=["parent", "absolute", "symlink-out", "missing", "directory", "activity-outside", "unknown-encoding",
        "text-transform-codec", "undefined-codec", "escape-codec", "idna-codec", "quote-delimiter", "newline-delimiter", "unknown-format"])
def test_config_pointing_outside_or_at_nothing(tmp_path: Path, make: Any, source: dict, fragment: str) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    write(tmp_path, people(GOOD))   # a real extract, one folder up
    write(folder, people(GOOD))
    make(folder)
    message = rejected(folder, EXIT_USAGE, fragment, **source)
    assert message.startswith(f"error: {folder / 'pipeline.yaml'}")


@pytest.mark.parametrize(("content", "fragment"), [
    (None, "config file not found"),
    (b"\x00\xff\xfe garbage", "not valid YAML"),
    (b"sources: [unclosed", "not valid YAML"),
    (b"- just\n- a list\n", "(top level): expected a mapping"),
], ids=["missing", "binary", "broken-yaml", "not-a-mapping"])
def test_config_file_itself_broken(tmp_path: Path, content: bytes | None, fragment: str) -> None:
    config = tmp_path / "pipeline.yaml"
    if content is not None:
        config.write_bytes(content)
    result = CliRunner().invoke(main, ["ingest", str(config), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.count("\n") == 1 and fragment in result.stderr and "Traceback" not in result.output


def test_extract_removed_after_the_config_was_read(tmp_path: Path) -> None:
    write(tmp_path, people(GOOD))
    config = load_config(pipeline(tmp_path))
    (tmp_path / "people.csv").unlink()
    with pytest.raises(InputFileError, match="people.csv: file not found") as info:
        ingest_source(config.sources[0], tmp_path / "out", config.reference_date)
    assert info.value.exit_code == EXIT_INPUT
