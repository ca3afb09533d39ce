"""Read a partner's extract as it is: every value a string, every row numbered, unreadable rows set aside.

CSV goes through Python's ``csv`` module in chunks rather than a faster columnar reader because only a row-by-row
reader can tell a short (ragged) row from a row with empty trailing fields, and a ragged row must be quarantined,
never silently padded. Chunks keep memory bounded for extracts larger than memory allows at once.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl

from carelink.config import TableSpec
from carelink.errors import InputFileError

#: Name of the column carrying each row's 1-based position among the extract's data rows (header excluded).
ROW = "source_row"
#: Name of the column carrying the untouched original row (a JSON list of its fields) in quarantine.
RAW = "raw_record"
CHUNK_ROWS = 200_000
_MAX_FIELD = 1 << 20

csv.field_size_limit(_MAX_FIELD)


@dataclass(frozen=True)
class RawChunk:
    """A block of readable rows (all strings) and the rows that could not be read, with reasons."""

    rows: pl.DataFrame
    unreadable: pl.DataFrame


def read_table(spec: TableSpec, *, chunk_rows: int = CHUNK_ROWS) -> Iterator[RawChunk]:
    """Yield the extract in chunks; raise ``InputFileError`` when the file as a whole cannot be read."""
    if not spec.path.is_file():
        raise InputFileError(spec.path, "file not found")
    if spec.format == "parquet":
        yield from _read_parquet(spec, chunk_rows)
    else:
        yield from _read_csv(spec, chunk_rows)


def _check_header(spec: TableSpec, header: list[str]) -> None:
    if any(not name.strip() for name in header):
        position = next(i for i, name in enumerate(header) if not name.strip()) + 1
        raise InputFileError(spec.path, f"column {position} of the header has no name", row=0)
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise InputFileError(spec.path, "the header names this column twice", row=0, field=name)
        seen.add(name)
    for canonical, column in spec.columns.items():
        if column not in seen:
            hint = f" (header: {', '.join(header[:12])})" if len(header) > 1 else " (wrong delimiter?)"
            raise InputFileError(spec.path, f"mapped column for {canonical} is missing{hint}", field=column)


def _codec(encoding: str) -> str:
    name = codecs.lookup(encoding).name
    return "utf-8-sig" if name == "utf-8" else name  # tolerate a byte-order mark


def _decoded_lines(spec: TableSpec) -> Iterator[str]:
    """Decode the file line by line so a bad byte can be pinned to its line."""
    decoder = codecs.getincrementaldecoder(_codec(spec.encoding))(errors="strict")
    with open(spec.path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                yield decoder.decode(raw)
            except UnicodeDecodeError as exc:
                raise InputFileError(
                    spec.path,
                    f"line {line_number} is not valid {spec.encoding} (byte {raw[exc.start:exc.start + 1]!r});"
                    " set the source's encoding (e.g. latin-1 or cp1252)",
                ) from None
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail


def _read_csv(spec: TableSpec, chunk_rows: int) -> Iterator[RawChunk]:
    reader = csv.reader(_decoded_lines(spec), delimiter=spec.delimiter, strict=False)
    try:
        header = next(reader)
    except StopIteration:
        raise InputFileError(spec.path, "file is empty (no header row)") from None
    except csv.Error as exc:
        raise InputFileError(spec.path, f"header cannot be parsed: {exc}", row=0) from None
    header = [name.strip() for name in header]
    _check_header(spec, header)
    width = len(header)
    good: list[list[str]] = []
    bad: list[tuple[int, str, str]] = []
    row_number = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            row_number += 1
            bad.append((row_number, "[]", f"row cannot be parsed as CSV: {exc}"))
            continue
        if not fields:  # a blank line is not a row
            continue
        row_number += 1
        if len(fields) != width:
            bad.append((row_number, json.dumps(fields), f"row has {len(fields)} fields, header has {width}"))
        elif any("\x00" in value for value in fields):
            bad.append((row_number, json.dumps(fields), "row holds binary data (NUL bytes)"))
        else:
            good.append([*fields, str(row_number)])
        if len(good) + len(bad) >= chunk_rows:
            yield _chunk(header, good, bad)
            good, bad = [], []
    if good or bad or row_number == 0:
        yield _chunk(header, good, bad)


def _chunk(header: list[str], good: list[list[str]], bad: list[tuple[int, str, str]]) -> RawChunk:
    schema = {name: pl.String for name in header} | {ROW: pl.String}
    rows = pl.DataFrame(good, schema=schema, orient="row").with_columns(pl.col(ROW).cast(pl.Int64))
    unreadable = pl.DataFrame(
        bad, schema={ROW: pl.Int64, RAW: pl.String, "reasons": pl.String}, orient="row"
    )
    return RawChunk(rows, unreadable)


def _read_parquet(spec: TableSpec, chunk_rows: int) -> Iterator[RawChunk]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(spec.path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputFileError(spec.path, f"not a readable Parquet file: {exc}") from None
    header = parquet.schema_arrow.names
    _check_header(spec, header)
    offset = 0
    empty = pl.DataFrame(schema={ROW: pl.Int64, RAW: pl.String, "reasons": pl.String})
    batches = parquet.iter_batches(batch_size=chunk_rows)
    for batch in batches:
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        frame = frame.with_columns(_as_text(frame, name) for name in frame.columns)
        frame = frame.with_columns(pl.int_range(offset + 1, offset + frame.height + 1, dtype=pl.Int64).alias(ROW))
        offset += frame.height
        yield RawChunk(frame, empty)
    if offset == 0:
        yield RawChunk(pl.DataFrame(schema={name: pl.String for name in header} | {ROW: pl.Int64}), empty)


def _as_text(frame: pl.DataFrame, name: str) -> pl.Expr:
    """Cast a typed Parquet column to the text a CSV would have held (dates as ISO)."""
    dtype = frame.schema[name]
    column = pl.col(name)
    if dtype == pl.String:
        return column
    if dtype in (pl.Date, pl.Datetime) or isinstance(dtype, pl.Datetime):
        return column.dt.strftime("%Y-%m-%d").alias(name)
    if dtype.is_numeric() or dtype == pl.Boolean:
        return column.cast(pl.String).alias(name)
    return column.cast(pl.String, strict=False).alias(name)
