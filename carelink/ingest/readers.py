"""Read a partner's extract as it is: every value a string, every row numbered, unreadable rows set aside.

CSV is read a block of bytes at a time. A clean block (see ``_clean_block``: the declared encoding, every line one
row of the header's width, quotes only around whole fields, nothing to quarantine) is read by polars; any other block
goes through Python's ``csv`` module row by row, from the block's start until a row ends at a block's end, because
only a row-by-row reader can tell a short (ragged) row from a row with empty trailing fields, and a ragged row must
be quarantined, never silently padded. Both give the same rows, numbers and chunks; blocks and chunks keep memory
bounded for extracts larger than memory allows at once.

A file that is not in its declared encoding is an error naming the row and field of the first bad value, never a
row quietly garbled: bytes the encoding cannot decode, and UTF-8 read as a one-byte encoding ("Ã©" for "é").
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import json
import re
import unicodedata
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import polars as pl

from carelink.config import TableSpec
from carelink.errors import InputFileError

if TYPE_CHECKING:
    import _csv

#: Name of the column carrying each row's 1-based position among the extract's data rows (header excluded).
ROW = "source_row"
#: Name of the column carrying the untouched original row in quarantine, as JSON: an object of its fields when it
#: was parsed, a list of its fields when it was ragged, a string of its text when it could not be parsed.
RAW = "raw_record"
CHUNK_ROWS = 200_000
#: Bytes of a CSV the fast path reads at a time (cut back to a line end); bounds its memory.
BLOCK_BYTES = 32 << 20
_MAX_FIELD = 1 << 20
#: Delimiters tried when the header does not split into the mapped columns.
_LIKELY_DELIMITERS = (",", ";", "\t", "|")
#: Byte-order marks of encodings a one-byte or UTF-8 reader would turn into garbage (UTF-32 first: it starts
#: with UTF-16's).
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)
_PARQUET_MAGIC = b"PAR1"
#: Bytes the declared encoding could not decode, kept as lone surrogates by the ``surrogateescape`` handler.
_UNDECODED = re.compile("[\udc80-\udcff]")
#: A UTF-8 lead byte and a continuation byte: in a one-byte encoding, possibly UTF-8 decoded as that encoding.
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]")

csv.field_size_limit(_MAX_FIELD)


@dataclass(frozen=True)
class RawChunk:
    """A block of readable rows (all strings) and the rows that could not be read, with reasons."""

    rows: pl.DataFrame
    unreadable: pl.DataFrame


def read_table(spec: TableSpec, *, chunk_rows: int = CHUNK_ROWS, fast: bool = True) -> Iterator[RawChunk]:
    """Yield the extract in chunks; raise ``InputFileError`` when the file as a whole cannot be read.

    ``fast=False`` reads a CSV row by row throughout; the chunks are the same either way.
    """
    if not spec.path.is_file():
        raise InputFileError(spec.path, "file not found")
    if spec.format == "parquet":
        yield from _read_parquet(spec, chunk_rows)
    else:
        yield from _read_csv(spec, chunk_rows, fast)


def shorten(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters for an error message (an extract's value may be megabytes long)."""
    return text if len(text) <= limit else text[:limit] + "…"


def _check_header(spec: TableSpec, header: list[str]) -> None:
    """Raise ``InputFileError`` for a blank, repeated or reserved column name, or a mapped column not there."""
    if any(not name.strip() for name in header):
        position = next(i for i, name in enumerate(header) if not name.strip()) + 1
        raise InputFileError(spec.path, f"column {position} of the header has no name", row=0)
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise InputFileError(spec.path, "the header names this column twice", row=0, field=shorten(name, 40))
        if name == ROW:
            raise InputFileError(spec.path, "this column name is reserved by carelink; rename it", row=0, field=name)
        seen.add(name)
    for canonical, column in spec.columns.items():
        if column not in seen:
            raise InputFileError(spec.path, f"mapped column for {canonical} is missing{_header_hint(spec, header)}",
                                 field=column)


def _header_hint(spec: TableSpec, header: list[str]) -> str:
    """Show the header, or say which delimiter would split it into the mapped columns."""
    if len(header) > 1 or spec.format == "parquet":
        return f" (header: {', '.join(repr(shorten(name, 30)) for name in header[:12])})"
    wanted = set(spec.columns.values())
    for delimiter in _LIKELY_DELIMITERS:
        if delimiter != spec.delimiter and wanted <= {name.strip() for name in header[0].split(delimiter)}:
            return f" (wrong delimiter?); the header splits on {delimiter!r}: set the source's delimiter to it"
    return " (wrong delimiter?)"


def _nfc(name: str) -> str:
    """A column name in NFC, so a header typed on one system matches a mapping typed on another."""
    return unicodedata.normalize("NFC", name)


# ------------------------------------------------------------------------------------------------- CSV


def _codec(encoding: str) -> str:
    """Python's name for ``encoding``; UTF-8 as ``utf-8-sig`` so a byte-order mark is dropped."""
    name = codecs.lookup(encoding).name
    return "utf-8-sig" if name == "utf-8" else name


class _Decoding:
    """The declared encoding of a file, and how to tell from decoded text that the declaration is wrong."""

    def __init__(self, declared: str):
        self.declared = declared
        self.codec = _codec(declared)
        self.is_utf8 = self.codec == "utf-8-sig"
        self.one_byte = _reads_utf8_as_mojibake(self.codec)

    def problem(self, text: str) -> str | None:
        """Why ``text`` shows the file is not in its declared encoding (``None`` when nothing does)."""
        if text.isascii():
            return None
        undecoded = _UNDECODED.search(text)
        original = b"" if self.is_utf8 else self._original_bytes(text)
        looks_utf8 = not original.isascii() and _is_utf8(original)
        if undecoded:
            byte = bytes([ord(undecoded.group()) - 0xDC00])
            problem = f"is not valid {self.declared} (byte {byte!r})"
        elif self.one_byte and looks_utf8:
            problem = f"reads as {shorten(text)!r}: UTF-8 text decoded as {self.declared}"
        else:
            return None
        hint = "set the source's encoding to utf-8" if looks_utf8 else "set the source's encoding (e.g. latin-1 or cp1252)"
        return f"{problem}; {hint}"

    def _original_bytes(self, text: str) -> bytes:
        try:
            return text.encode(self.codec, errors="surrogateescape")
        except UnicodeError:
            return b""

    def check(self, spec: TableSpec, fields: list[str], names: list[str], row: int, lines: list[str],
              last_line: int) -> None:
        """Raise ``InputFileError`` naming row, field and line when a value was decoded wrongly."""
        if "".join(fields).isascii():
            return
        for index, value in enumerate(fields):
            problem = self.problem(value)
            if problem is not None:
                first_line = last_line - len(lines) + 1
                line = first_line + next((i for i, text in enumerate(lines) if self.problem(text)), len(lines) - 1)
                name = shorten(names[index], 40) if index < len(names) else None
                raise InputFileError(spec.path, f"line {line} {problem}", row=row, field=name)


def _reads_utf8_as_mojibake(codec: str) -> bool:
    """Whether ``codec`` reads UTF-8's two-byte "é" as two characters ("Ã©"): mojibake, not an error."""
    try:
        return len(b"\xc3\xa9".decode(codec, errors="replace")) == 2
    except UnicodeError:  # a codec without the "replace" handler
        return False


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _decoded_lines(spec: TableSpec, decoding: _Decoding) -> Iterator[str]:
    """The file's lines with their endings (``\\n``, ``\\r\\n`` or a lone ``\\r``), as ``csv`` expects them.

    Bytes the encoding cannot decode become lone surrogates, so that ``_Decoding.check`` can name the row and field.
    """
    try:
        with open(spec.path, "rb") as handle:
            start = handle.read(4)
            if start == _PARQUET_MAGIC:
                raise InputFileError(spec.path, "this is a Parquet file: set the source's format to parquet", row=0)
            family = next((family for bom, family in _WIDE_BOMS if start.startswith(bom)), None)
            if family and not decoding.codec.startswith(family):
                raise InputFileError(spec.path, f"the file starts with a {family.upper()} byte-order mark; "
                                     f"set the source's encoding to {family}", row=0)
            handle.seek(0)
            text = io.TextIOWrapper(handle, encoding=decoding.codec, errors="surrogateescape", newline="")
            yield from text
    except UnicodeError as exc:  # what surrogateescape cannot carry (e.g. a UTF-16 file cut mid-character)
        raise InputFileError(spec.path, f"cannot be decoded as {spec.encoding}: {getattr(exc, 'reason', exc)}") from None
    except OSError as exc:
        raise InputFileError(spec.path, f"cannot be read: {exc.strerror or exc}") from None


def _remembered(lines: Iterable[str], memory: list[str]) -> Iterator[str]:
    """Pass ``lines`` on, keeping each in ``memory`` (cleared by the caller) so a failed row's text is not lost."""
    for line in lines:
        memory.append(line)
        yield line


def _read_csv(spec: TableSpec, chunk_rows: int, fast: bool) -> Iterator[RawChunk]:
    decoding = _Decoding(spec.encoding)
    start = _fast_start(spec, decoding) if fast else None
    if start is None:  # the whole file row by row
        lines: list[str] = []  # the lines of the row being read
        reader = csv.reader(_remembered(_decoded_lines(spec, decoding), lines), delimiter=spec.delimiter, strict=False)
        header = _csv_header(spec, reader, decoding, lines)
        chunks = _Chunks(header, chunk_rows)
        rows = yield from _csv_rows(spec, decoding, reader, lines, chunks, 0, 0)
    else:
        header = start.header
        chunks = _Chunks(header, chunk_rows)
        rows = yield from _fast_csv_rows(spec, decoding, start, chunks)
    if chunks.count or rows == 0:
        yield chunks.flush()


class _Chunks:
    """Rows gathered into the chunks ``read_table`` yields, cut where the row-by-row reader always cut them.

    A chunk is yielded once it holds ``size`` rows (read or unreadable), checked after every row except one that
    ``csv`` could not parse; the fast path's blocks are cut to the same boundaries, so the chunks, and which error
    surfaces first when a later stage fails on one, do not depend on how the rows were read.
    """

    def __init__(self, header: list[str], size: int):
        self.header = header
        self.size = size
        self.count = 0  # rows (read or unreadable) waiting to be yielded
        self.good: list[list[str]] = []  # rows read by ``csv``, with their row number as text
        self.bad: list[tuple[int, str, str]] = []
        self._frames: list[pl.DataFrame] = []  # rows read, in order

    def add_frame(self, frame: pl.DataFrame) -> Iterator[RawChunk]:
        """Add rows read by the fast path (numbered, all clean); yield every chunk they complete."""
        self._frame_good()
        while frame.height:
            take = max(self.size - self.count, 1)
            self._frames.append(frame.head(take))
            self.count += min(take, frame.height)
            frame = frame.slice(take)
            if self.count >= self.size:
                yield self.flush()

    def flush(self) -> RawChunk:
        self._frame_good()
        rows = pl.concat(self._frames) if self._frames else _rows_frame(self.header, [])
        chunk = RawChunk(rows, _unreadable(self.bad))
        self._frames, self.bad, self.count = [], [], 0
        return chunk

    def _frame_good(self) -> None:
        if self.good:
            self._frames.append(_rows_frame(self.header, self.good))
            self.good = []


def _csv_rows(spec: TableSpec, decoding: _Decoding, reader: _csv._reader, lines: list[str], chunks: _Chunks,
              row_number: int, line_base: int, at_boundary: Callable[[], bool] | None = None,
              ) -> Generator[RawChunk, None, int]:
    """Read rows one by one with ``csv``, yielding full chunks; return the number of the last row read.

    ``line_base`` is the number of lines before the reader's first; with ``at_boundary``, stop after a row when it
    says the row ended where the fast path can take over.
    """
    header = chunks.header
    while True:
        lines.clear()
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            row_number += 1
            text = "".join(lines)
            if (problem := decoding.problem(text)) is not None:
                raise InputFileError(spec.path, f"line {line_base + reader.line_num} {problem}",
                                     row=row_number) from None
            chunks.bad.append((row_number, json.dumps(text), f"row cannot be parsed as CSV: {exc}"))
            chunks.count += 1
        else:
            if fields:  # a blank line is not a row
                row_number += 1
                joined = "".join(fields)  # one join serves both checks (this loop is ingest's hot path)
                if not joined.isascii():
                    decoding.check(spec, fields, header, row_number, lines, line_base + reader.line_num)
                if (reason := _row_problem(fields, header, joined)) is not None:
                    chunks.bad.append((row_number, json.dumps(fields), reason))
                else:
                    chunks.good.append([*fields, str(row_number)])
                chunks.count += 1
                if chunks.count >= chunks.size:
                    yield chunks.flush()
        if at_boundary is not None and at_boundary():
            break
    return row_number


# ---------------------------------------------------------------------------------------- fast CSV path


def _field_pattern(delimiter: str, hex_escape: bool) -> str:
    """A regular expression for one field of a clean line: unquoted without quotes, delimiters or line breaks, or
    quoted with doubled quotes and no line breaks (Rust syntax when ``hex_escape``, for polars; else Python's)."""
    d = f"\\x{{{ord(delimiter):X}}}" if hex_escape else re.escape(delimiter)
    return f'(?:[^"{d}\\r\\n]*|"(?:[^"\\r\\n]|"")*")'


@dataclass(frozen=True)
class _FastStart:
    """A CSV the fast path can read: its checked header and where its first data line starts."""

    header: list[str]
    offset: int  # bytes before the first data line
    line_pattern: str  # what every clean data line matches (Rust regex, for polars)


def _fast_start(spec: TableSpec, decoding: _Decoding) -> _FastStart | None:
    """Where the fast path can take over after the header; ``None`` when the file must be read row by row.

    That is when its encoding is not one the fast path handles, when it starts with anything unusual (another
    format's magic bytes, a wide byte-order mark, blank lines, a header that is not one clean line) or when its
    header is in error: the row-by-row reader then gives the error, or reads what the fast path will not.
    """
    if not _fast_codec(decoding.codec) or not spec.delimiter.isascii():
        return None
    try:
        with open(spec.path, "rb") as handle:
            head = handle.read(_MAX_FIELD)
    except OSError:
        return None
    if head.startswith(_PARQUET_MAGIC) or any(head.startswith(bom) for bom, _ in _WIDE_BOMS):
        return None
    skip = len(codecs.BOM_UTF8) if decoding.is_utf8 and head.startswith(codecs.BOM_UTF8) else 0
    end = head.find(b"\n", skip)
    if end < 0:
        return None
    try:
        text = head[skip:end].removesuffix(b"\r").decode(_segment_codec(decoding))
    except UnicodeDecodeError:
        return None
    field = _field_pattern(spec.delimiter, hex_escape=False)
    if not text or "\ufeff" in text or not re.fullmatch(f"{field}(?:{re.escape(spec.delimiter)}{field})*", text):
        return None
    lines: list[str] = []
    reader = csv.reader(_remembered(iter([text + "\n"]), lines), delimiter=spec.delimiter, strict=False)
    try:
        header = _csv_header(spec, reader, decoding, lines)
    except InputFileError:
        return None
    field = _field_pattern(spec.delimiter, hex_escape=True)
    pattern = f"^{field}(?:\\x{{{ord(spec.delimiter):X}}}{field}){{{len(header) - 1}}}$"
    return _FastStart(header, end + 1, pattern)


@functools.cache
def _fast_codec(codec: str) -> bool:
    """Whether the fast path reads ``codec``: UTF-8, or a one-byte encoding in which ASCII bytes are ASCII and no
    other byte is (so delimiters, quotes and line ends are found in the bytes as they are)."""
    if codec == "utf-8-sig":
        return True
    try:
        table = bytes(range(256)).decode(codec, errors="surrogateescape")
    except (UnicodeError, LookupError):
        return False
    return (len(table) == 256 and table[:128] == bytes(range(128)).decode("ascii")
            and not any(char.isascii() for char in table[128:]))


def _segment_codec(decoding: _Decoding) -> str:
    """The codec for bytes after the file's start (a byte-order mark there is text, not a mark)."""
    return "utf-8" if decoding.is_utf8 else decoding.codec


def _fast_csv_rows(spec: TableSpec, decoding: _Decoding, start: _FastStart, chunks: _Chunks,
                   ) -> Generator[RawChunk, None, int]:
    """Read the data lines a block at a time: a clean block with polars, any other with ``csv`` from its start
    until a row ends at a block's end. Return the number of the last row read."""
    row_number, line_number, position = 0, 1, start.offset
    try:
        with open(spec.path, "rb") as handle:
            while block := _block(handle, position):
                frame = _clean_block(spec, decoding, start, block)
                if frame is not None:
                    frame = frame.with_columns(
                        pl.int_range(row_number + 1, row_number + frame.height + 1, dtype=pl.Int64).alias(ROW))
                    row_number += frame.height
                    line_number += block.count(b"\n")
                    position += len(block)
                    yield from chunks.add_frame(frame)
                    continue
                segments = _Segments(handle, position, block, _segment_codec(decoding))
                lines: list[str] = []
                reader = csv.reader(_remembered(segments, lines), delimiter=spec.delimiter, strict=False)
                row_number = yield from _csv_rows(spec, decoding, reader, lines, chunks, row_number, line_number,
                                                  segments.at_boundary)
                line_number += reader.line_num
                position = segments.end
    except OSError as exc:
        raise InputFileError(spec.path, f"cannot be read: {exc.strerror or exc}") from None
    return row_number


def _block(handle: BinaryIO, position: int) -> bytes:
    """About ``BLOCK_BYTES`` of the file from ``position``, ending at a line end (or at the end of the file)."""
    handle.seek(position)
    block = handle.read(BLOCK_BYTES)
    if len(block) < BLOCK_BYTES:
        return block
    while (end := block.rfind(b"\n")) < 0:  # a line longer than a block
        more = handle.read(BLOCK_BYTES)
        if not more:
            return block
        block += more
    return block[:end + 1]


class _Segments:
    """The lines of a file from ``position`` on, as ``csv`` expects them (``\\n``, ``\\r\\n`` or a lone ``\\r``
    ending each), read a block at a time; ``at_boundary`` says whether every line read so far has been handed out,
    which after a row means the row ended at a block's end."""

    def __init__(self, handle: BinaryIO, position: int, block: bytes, codec: str):
        self._handle = handle
        self._codec = codec
        self.end = position  # where the blocks read so far end
        self._lines: list[str] = []
        self._next = 0
        self._load(block)

    def _load(self, block: bytes) -> None:
        self.end += len(block)
        self._lines = io.StringIO(block.decode(self._codec, errors="surrogateescape"), newline="").readlines()
        self._next = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        while self._next == len(self._lines):
            block = _block(self._handle, self.end)
            if not block:
                raise StopIteration
            self._load(block)
        self._next += 1
        return self._lines[self._next - 1]

    def at_boundary(self) -> bool:
        return self._next == len(self._lines)


def _clean_block(spec: TableSpec, decoding: _Decoding, start: _FastStart, block: bytes) -> pl.DataFrame | None:
    """The rows of ``block`` read by polars, when the block is clean; ``None`` when it is not.

    Clean means that the row-by-row reader would read each of its lines as one row, with every value as polars
    reads it, and find nothing to quarantine or raise: the bytes decode in the declared encoding and hold no NUL,
    byte-order mark or UTF-8 read as a one-byte encoding; lines end in ``\\n`` or ``\\r\\n``; every line that is not
    blank holds the header's number of fields, each either unquoted without quotes or quoted whole with its quotes
    doubled (so no field spans lines), is shorter than the field limit and does not repeat the header. What polars
    then reads is checked to account for every byte of every line.
    """
    if b"\x00" in block or b"\xef\xbb\xbf" in block or block.endswith(b"\r"):
        return None
    data = block
    if not block.isascii():
        try:
            text = block.decode(_segment_codec(decoding))
        except UnicodeDecodeError:
            return None
        if not decoding.is_utf8:
            if decoding.one_byte and _UTF8_SEQUENCE.search(block):
                return None
            data = text.encode("utf-8")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
        if b"\r" in data:  # a lone CR ends a line for ``csv``, not for polars
            return None
    try:
        frame = _parsed_block(data, spec.delimiter, start)
    except pl.exceptions.PolarsError:  # e.g. a regex too large for a header of thousands of columns
        return None
    if frame is None:
        return None
    header = start.header
    for fields in frame.filter(pl.col(header[0]).str.contains(header[0], literal=True)).iter_rows():
        if _row_problem(list(fields), header, "".join(fields)) is not None:  # the header repeated
            return None
    return frame


def _parsed_block(data: bytes, delimiter: str, start: _FastStart) -> pl.DataFrame | None:
    """UTF-8 ``data`` (lines ending in ``\\n``) read by polars, when every line that is not blank matches
    ``start.line_pattern`` and the values read account for every byte of their line; ``None`` when not."""
    lines = pl.read_csv(data, has_header=False, separator="\x00", quote_char=None, schema={"line": pl.String},
                        empty_string_is_null=False, raise_if_empty=False).to_series()
    if lines.len() != data.count(b"\n") + (not data.endswith(b"\n")):
        return None
    header = start.header
    if (lines == "").any():  # blank lines are not rows; polars would read them as rows of empty values
        lines = lines.filter(lines != "")
        if lines.is_empty():
            return pl.DataFrame(schema={name: pl.String for name in header})
        data = (lines.str.join("\n").item() + "\n").encode("utf-8")
    length = lines.str.len_bytes()
    if lines.len() and (length.max() >= _MAX_FIELD or not lines.str.contains(start.line_pattern).all()):
        return None
    frame = pl.read_csv(data, has_header=False, separator=delimiter, quote_char='"',
                        schema={name: pl.String for name in header}, empty_string_is_null=False,
                        truncate_ragged_lines=False, raise_if_empty=False)
    if frame.height != lines.len():
        return None
    frame = frame.with_columns(pl.all().fill_null(""))
    # A quoted field takes its value's bytes, two quotes and one more for each quote in the value.
    expected = frame.select(pl.sum_horizontal(pl.all().str.len_bytes().cast(pl.Int64))).to_series()
    expected += lines.str.count_matches('"', literal=True).cast(pl.Int64) + (len(header) - 1)
    if b'""' in data:  # a value holds a quote only where the line holds two
        expected -= frame.select(
            pl.sum_horizontal(pl.all().str.count_matches('"', literal=True).cast(pl.Int64))).to_series()
    return frame if (expected == length).all() else None


def _csv_header(spec: TableSpec, reader: _csv._reader, decoding: _Decoding, lines: list[str]) -> list[str]:
    """The first non-blank row, checked and with its names cleaned."""
    header: list[str] = []
    try:
        while not header:
            lines.clear()
            header = next(reader)
    except StopIteration:
        raise InputFileError(spec.path, "file is empty (no header row)") from None
    except csv.Error as exc:
        raise InputFileError(spec.path, f"header cannot be parsed: {exc}", row=0) from None
    decoding.check(spec, header, header, 0, lines, reader.line_num)
    header = _column_names(header)
    _check_header(spec, header)
    return header


def _column_names(fields: list[str]) -> list[str]:
    # A BOM the codec kept (utf-16-le) or a second one where two extracts were concatenated is not part of a name.
    return [_nfc(name.strip().lstrip("\ufeff")) for name in fields]


def _row_problem(fields: list[str], header: list[str], joined: str) -> str | None:
    """Why a parsed row cannot be used as it is (``None`` when it can); ``joined`` is the fields concatenated."""
    if len(fields) != len(header):
        return f"row has {len(fields)} fields, header has {len(header)}"
    if "\x00" in joined:
        return "row holds binary data (NUL bytes)"
    if fields[0].strip().lstrip("\ufeff") == header[0] and _column_names(fields) == header:
        return "row repeats the header (extracts concatenated?)"
    return None


def _rows_frame(header: list[str], good: list[list[str]]) -> pl.DataFrame:
    schema = {name: pl.String for name in header} | {ROW: pl.String}
    return pl.DataFrame(good, schema=schema, orient="row").with_columns(pl.col(ROW).cast(pl.Int64))


def _unreadable(bad: list[tuple[int, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(bad, schema={ROW: pl.Int64, RAW: pl.String, "reasons": pl.String}, orient="row")


# --------------------------------------------------------------------------------------------- Parquet


def _read_parquet(spec: TableSpec, chunk_rows: int) -> Iterator[RawChunk]:
    offset = 0
    for frame in _parquet_batches(spec, chunk_rows):
        frame = frame.rename({name: _nfc(name) for name in frame.columns})
        frame = frame.with_columns(_as_text(spec, frame[name], offset + 1) for name in frame.columns)
        frame = frame.with_columns(pl.int_range(offset + 1, offset + frame.height + 1, dtype=pl.Int64).alias(ROW))
        offset += frame.height
        yield RawChunk(frame, _unreadable([]))


def _parquet_batches(spec: TableSpec, chunk_rows: int) -> Iterator[pl.DataFrame]:
    """The file's row groups as polars frames (one empty frame when it has no rows); unreadable is an error."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(spec.path)
    except (pa.ArrowException, OSError) as exc:
        raise InputFileError(spec.path, f"not a readable Parquet file: {_first_line(exc)}") from None
    names = [_nfc(name) for name in parquet.schema_arrow.names]
    _check_header(spec, names)  # before any conversion: duplicate names would break it
    read = 0
    try:
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            read += frame.height
            yield frame
        if read == 0:
            yield pl.from_arrow(parquet.schema_arrow.empty_table())  # type: ignore[misc]
    except (pa.ArrowException, OSError, pl.exceptions.PolarsError) as exc:
        raise InputFileError(spec.path, f"rows after {read} cannot be read: {_first_line(exc)}", row=read + 1) from None


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, short enough for a one-line error."""
    return shorten(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, 200)


def _as_text(spec: TableSpec, column: pl.Series, first_row: int) -> pl.Series:
    """A typed Parquet column as the text a CSV would have held (dates as ISO, whole floats without ``.0``).

    A mapped column must convert without loss; an unmapped one (kept only for the quarantine's raw record) is
    written as best it can be.
    """
    dtype = column.dtype
    if dtype == pl.String:
        return column
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        return column.dt.strftime("%Y-%m-%d")
    if dtype.is_float():
        return _float_text(column)
    if not dtype.is_nested():
        try:
            return column.cast(pl.String)
        except pl.exceptions.PolarsError:
            pass
    if column.name in spec.columns.values():
        bad = next((i for i, v in enumerate(column.to_list()) if isinstance(v, bytes) and not _is_utf8(v)), None)
        if bad is not None:
            raise InputFileError(spec.path, "the column holds bytes that are not UTF-8 text", row=first_row + bad,
                                 field=column.name)
        raise InputFileError(spec.path, f"the column holds {dtype} values, which cannot be read as text",
                             field=column.name)
    return pl.Series(column.name, [_python_text(value) for value in column.to_list()], dtype=pl.String)


def _float_text(column: pl.Series) -> pl.Series:
    """Floats as text; NaN is missing, and whole numbers lose their ``.0`` (pandas stores integer columns with gaps
    as floats, so an NHS number or record ID may arrive as 9434765919.0)."""
    x = pl.col(column.name)
    whole = x.is_finite() & (x.round(0) == x) & (x.abs() < 2.0**63)
    text = (pl.when(x.is_nan()).then(None)
            .when(whole).then(x.cast(pl.Int64, strict=False).cast(pl.String))
            .otherwise(x.cast(pl.String)))
    return column.to_frame().select(text.alias(column.name)).to_series()


def _python_text(value: object) -> str | None:
    """Any value as text (lists and mappings as JSON, bytes as UTF-8 with escapes) for an unmapped column."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)
