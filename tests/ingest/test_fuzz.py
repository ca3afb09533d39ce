"""Property tests of the reader and of the standardisers run through ``ingest_source``.

tests/ingest/test_standardise.py already checks each standardiser alone (never raises, idempotent, output within
the ingest contract, NFC = NFD). These tests check the same promises end to end: arbitrary bytes or arbitrary
cells in a file give either an ``InputFileError`` or an ingest that reconciles, whose output meets the pandera
contract ``StandardisedRecord``, and which gives the same output when its own output is ingested again.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carelink.config import PipelineConfig, load_config
from carelink.errors import InputFileError
from carelink.ingest.readers import ROW, read_table
from carelink.ingest.schema import StandardisedRecord
from carelink.ingest.stage import IngestResult, ingest_source

REF = dt.date(2026, 11, 1)
#: Every standardised person field, mapped to a column of the same name.
FIELDS = ("record_id", "nhs_number", "shared_id", "given_name", "family_name", "date_of_birth", "sex", "address",
          "postcode")
HEADER = list(FIELDS)
VALUE_COLUMNS = [f for f in FIELDS if f != "record_id"]
STATUS = {"nhs_number": "nhs_number_status", "date_of_birth": "date_of_birth_status", "postcode": "postcode_status"}
FORMATS = ["%d/%m/%Y", "%Y-%m-%d", "%d/%m/%y"]

_PROPERTY = settings(max_examples=30, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Text that tends to break CSV and string code.
_ATOMS = list(",;\"'\r\n\t \x00\x7f\ufeff\u200bß\u0301éÃ©’|=+-@") + [
    "\r\n", '""', '","', "Mr", "Dr ", "943 476 5919", "9434765919", "LS6 1AB", "ls61ab", "05/06/1950", "1950-06-05",
    "31/02/2000", "05/06/30", "0000000000", "female", "not known", "O'Brien", "Zoë", "=cmd|' /C calc'!A0", "\U0001f600",
]
CELL = st.one_of(st.text(max_size=20), st.lists(st.sampled_from(_ATOMS), max_size=6).map("".join))
ROWS = st.lists(st.lists(CELL, min_size=len(HEADER), max_size=len(HEADER)), max_size=12)


@contextmanager
def folder() -> Iterator[Path]:
    """A fresh folder per example (pytest's tmp_path is one folder for every example of a test)."""
    with tempfile.TemporaryDirectory(prefix="carelink-fuzz-") as name:
        yield Path(name)


def config(where: Path, *, encoding: str = "utf-8", path: str = "people.csv", formats: list[str] | None = None,
           fields: tuple[str, ...] = FIELDS) -> PipelineConfig:
    entry = {"name": "fz", "kind": "health", "path": path, "encoding": encoding, "date_format": formats or FORMATS,
             "columns": {f: f for f in fields}}
    (where / "pipeline.yaml").write_text(yaml.safe_dump({"partnership": "fuzz", "reference_date": REF.isoformat(),
                                                         "sources": [entry]}), encoding="utf-8")
    return load_config(where / "pipeline.yaml")


def ingest(where: Path, **options: Any) -> tuple[IngestResult, pl.DataFrame, pl.DataFrame]:
    """Ingest and check the promises every ingest keeps: reconciled, every row once, output within the contract."""
    source = config(where, **options).sources[0]
    result = ingest_source(source, where / "out", REF)
    counts = result.records
    records = pl.read_parquet(result.folder / "standardised.parquet")
    quarantine = pl.read_parquet(result.folder / "quarantine.parquet")
    assert counts.reconciles() and (records.height, quarantine.height) == (counts.rows_standardised,
                                                                           counts.rows_quarantined)
    assert sorted(records[ROW].to_list() + quarantine[ROW].to_list()) == list(range(1, counts.rows_in + 1))
    assert quarantine["reasons"].null_count() == 0
    StandardisedRecord.validate(records)
    return result, records, quarantine


def csv_bytes(rows: list[list[str]], encoding: str = "utf-8", header: list[str] = HEADER) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out).writerows([header, *rows])
    return out.getvalue().encode(encoding)


# ------------------------------------------------------------------------------------- arbitrary bytes


HEADER_LINE = ",".join(HEADER).encode()
BYTES = st.one_of(
    st.binary(max_size=400),
    st.binary(max_size=400).map(lambda b: HEADER_LINE + b"\n" + b),
    st.lists(st.sampled_from([HEADER_LINE, b",", b"\n", b"\r", b"\r\n", b'"', b"\x00", b"\xef\xbb\xbf", b"\xff\xfe",
                              b"\xc3\xa9", b"\xe9", b"A1", b"9434765919", b"x" * 50]), max_size=40).map(b"".join),
)


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "cp1252", "utf-16"])
@_PROPERTY
@given(content=BYTES)
def test_arbitrary_bytes_give_an_input_error_or_a_reconciled_ingest(encoding: str, content: bytes) -> None:
    with folder() as where:
        (where / "people.csv").write_bytes(content)
        try:
            ingest(where, encoding=encoding)
        except InputFileError as exc:
            assert exc.exit_code == 3 and "\n" not in exc.message and exc.message.startswith(str(where))


@_PROPERTY
@given(content=BYTES, chunk_rows=st.integers(1, 5))
def test_reader_chunks_do_not_change_what_is_read(content: bytes, chunk_rows: int) -> None:
    with folder() as where:
        (where / "people.csv").write_bytes(HEADER_LINE + b"\n" + content)
        spec = config(where, encoding="latin-1").sources[0].table
        try:
            whole = list(read_table(spec))
        except InputFileError as exc:
            with pytest.raises(InputFileError) as again:
                list(read_table(spec, chunk_rows=chunk_rows))
            assert again.value.message == exc.message
            return
        chunks = list(read_table(spec, chunk_rows=chunk_rows))
        assert all(c.rows.height + c.unreadable.height <= chunk_rows for c in chunks)
        for part in ("rows", "unreadable"):
            assert pl.concat([getattr(c, part) for c in chunks]).equals(pl.concat([getattr(c, part) for c in whole]))


# --------------------------------------------------------------------------- well-formed CSV, wild cells


@_PROPERTY
@given(rows=ROWS)
def test_a_well_formed_utf8_csv_is_read_cell_for_cell(rows: list[list[str]]) -> None:
    """Whatever the cells hold, a CSV written by a standard writer ingests, and every row is read as written."""
    with folder() as where:
        (where / "people.csv").write_bytes(csv_bytes(rows))
        result, records, quarantine = ingest(where)
        assert result.records.rows_in == len(rows)
        spec = config(where).sources[0].table
        read = pl.concat([c.rows for c in read_table(spec)])
        unreadable = pl.concat([c.unreadable for c in read_table(spec)])
        for number, cells in enumerate(rows, start=1):
            if number in unreadable[ROW].to_list():
                reason = unreadable.filter(pl.col(ROW) == number)["reasons"][0]
                assert reason in ("row holds binary data (NUL bytes)", "row repeats the header (extracts concatenated?)")
            else:
                assert list(read.filter(pl.col(ROW) == number).row(0)[:-1]) == cells


@_PROPERTY
@given(rows=st.lists(st.lists(st.text(st.characters(max_codepoint=255), max_size=12), min_size=len(HEADER),
                              max_size=len(HEADER)), max_size=8))
def test_a_latin1_csv_is_read_or_flagged_as_utf8(rows: list[list[str]]) -> None:
    """A real latin-1 file is read, unless a value happens to be valid UTF-8 ("Ã©"): then the error says so."""
    with folder() as where:
        (where / "people.csv").write_bytes(csv_bytes(rows, "latin-1"))
        try:
            result, _, _ = ingest(where, encoding="latin-1")
        except InputFileError as exc:
            assert "UTF-8 text decoded as latin-1" in exc.message
            assert any(_is_utf8_text(cell.encode("latin-1")) for row in rows for cell in row)
        else:
            assert result.records.rows_in == len(rows)


def _is_utf8_text(data: bytes) -> bool:
    try:
        return not data.isascii() and bool(data.decode("utf-8"))
    except UnicodeDecodeError:
        return False


# -------------------------------------------------------------------- standardisers through ingest_source


@_PROPERTY
@given(rows=ROWS)
def test_ingesting_its_own_output_changes_nothing(rows: list[list[str]]) -> None:
    """Standardising twice = once, for every field at once: the standardised records, written back as an extract
    and ingested again, come out the same, and each value is then valid (or missing when null)."""
    with folder() as where:
        (where / "people.csv").write_bytes(csv_bytes(rows))
        _, once, _ = ingest(where)
    with folder() as where:
        again_in = once.select(pl.col(FIELDS).cast(pl.String)).with_columns(pl.col("date_of_birth").fill_null(""))
        (where / "people.csv").write_bytes(csv_bytes([list(r) for r in again_in.fill_null("").rows()]))
        _, twice, quarantine = ingest(where, formats=["%Y-%m-%d"])
    assert quarantine.height == 0
    assert twice.select(VALUE_COLUMNS).equals(once.select(VALUE_COLUMNS))
    for column, status in STATUS.items():
        assert twice[status].to_list() == ["missing" if v is None else "valid" for v in twice[column].to_list()]


# --------------------------------------------------------------------------------- Parquet of any type


def _typed(values: st.SearchStrategy, kind: pa.DataType) -> st.SearchStrategy:
    return st.lists(st.one_of(st.none(), values), min_size=3, max_size=3).map(lambda v: pa.array(v, kind))


PARQUET_COLUMN = st.one_of(
    _typed(CELL, pa.string()),
    _typed(st.integers(-(2**63), 2**63 - 1), pa.int64()),
    _typed(st.floats(allow_nan=True, allow_infinity=True), pa.float64()),
    _typed(st.booleans(), pa.bool_()),
    _typed(st.dates(), pa.date32()),
    _typed(st.datetimes(), pa.timestamp("us")),
    _typed(st.binary(max_size=8), pa.binary()),
    _typed(st.lists(st.integers(0, 9), max_size=2), pa.list_(pa.int64())),
    st.just(pa.nulls(3)),
)


@_PROPERTY
@given(columns=st.lists(PARQUET_COLUMN, min_size=len(FIELDS), max_size=len(FIELDS)))
def test_parquet_of_any_column_types_gives_an_input_error_or_a_reconciled_ingest(columns: list[pa.Array]) -> None:
    with folder() as where:
        pq.write_table(pa.table(dict(zip(FIELDS, columns, strict=True))), where / "people.parquet")
        try:
            _, records, _ = ingest(where, path="people.parquet")
        except InputFileError as exc:
            assert exc.exit_code == 3 and "\n" not in exc.message and "the column holds" in exc.message
        else:
            assert all(isinstance(v, str) and v.strip() for v in records["record_id"].to_list())
            assert not any(v in ("NaN", "nan", "None", "null") for v in records["record_id"].to_list())


@_PROPERTY
@given(numbers=st.lists(st.one_of(st.none(), st.integers(-(10**12), 10**12).map(float), st.floats()), max_size=6))
def test_whole_floats_read_as_integers_and_nan_as_missing(numbers: list[float | None]) -> None:
    """pandas stores an integer column with gaps as float64: 9434765919.0 must read as 9434765919, NaN as missing."""
    with folder() as where:
        ids = [f"P{i}" for i in range(len(numbers))]
        pq.write_table(pa.table({"record_id": pa.array(ids, pa.string()), "shared_id": pa.array(numbers, pa.float64())}),
                       where / "people.parquet")
        source = config(where, path="people.parquet", fields=("record_id", "shared_id")).sources[0]
        read = pl.concat([c.rows for c in read_table(source.table)])
    for number, text in zip(numbers, read["shared_id"].to_list(), strict=True):
        if number is None or math.isnan(number):
            assert text is None
        elif math.isfinite(number) and number == int(number) and abs(number) < 2**63:
            assert text == str(int(number))
        else:
            assert text is not None and float(text) == number
