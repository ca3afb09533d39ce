"""The fast CSV path against the row-by-row reader (issue 7).

``read_table`` reads clean blocks of a CSV with polars and any other block row by row with ``csv``. These tests
hold it to the reader it replaced: for generated extracts, for extracts with hostile rows among clean ones, and for
arbitrary text, both give the same chunks (rows, row numbers, unreadable rows with their raw text and reasons) and
the same error at the same point, whatever the block and chunk sizes; and ``ingest_source`` writes the same files.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from carelink.config import TableSpec, load_config
from carelink.errors import InputFileError
from carelink.ingest import readers, stage
from carelink.ingest.readers import read_table
from carelink.synth import generate_partnership

HEADER = "id,nhs,forename,surname,dob,gender,postcode"
COLUMNS = {"record_id": "id", "nhs_number": "nhs", "given_name": "forename", "family_name": "surname",
           "date_of_birth": "dob", "sex": "gender", "postcode": "postcode"}
CLEAN = [f'A{i},943 476 5919,Ann,"Lee, {i}",05/06/1950,F,LS6 1AB' for i in range(1, 41)]

Outcome = tuple[list[tuple[pl.DataFrame, pl.DataFrame]], str | None]


def outcome(spec: TableSpec, *, fast: bool, chunk_rows: int) -> Outcome:
    """The chunks ``read_table`` yields, and the error it raises after them (if any)."""
    chunks = []
    try:
        for chunk in read_table(spec, chunk_rows=chunk_rows, fast=fast):
            chunks.append((chunk.rows, chunk.unreadable))
    except InputFileError as exc:
        return chunks, exc.message
    return chunks, None


def assert_same(spec: TableSpec, chunk_rows: int = readers.CHUNK_ROWS) -> Outcome:
    fast, error = outcome(spec, fast=True, chunk_rows=chunk_rows)
    slow, slow_error = outcome(spec, fast=False, chunk_rows=chunk_rows)
    assert error == slow_error
    assert len(fast) == len(slow)
    for (rows, unreadable), (slow_rows, slow_unreadable) in zip(fast, slow, strict=True):
        assert_frame_equal(rows, slow_rows)
        assert_frame_equal(unreadable, slow_unreadable)
    return fast, error


def table(path: Path, **options: object) -> TableSpec:
    return TableSpec(path, columns=COLUMNS, **options)  # type: ignore[arg-type]


@pytest.fixture()
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(readers, "BLOCK_BYTES", 200)  # a few rows a block: clean blocks around every hostile one
    yield


class BlockCount:
    """Counts the blocks the fast path read with polars and those it handed to ``csv``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.clean = self.other = 0
        original = readers._clean_block

        def counted(*args: object) -> pl.DataFrame | None:
            frame = original(*args)  # type: ignore[arg-type]
            if frame is None:
                self.other += 1
            else:
                self.clean += 1
            return frame

        monkeypatch.setattr(readers, "_clean_block", counted)


# --------------------------------------------------------------------------------------- generated data


@pytest.fixture(scope="module")
def partnership(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("partnership")
    generate_partnership(folder, people=2000, seed=1)
    return folder / "pipeline.yaml"


def csv_tables(config_path: Path) -> list[TableSpec]:
    config = load_config(config_path)
    specs = [spec for source in config.sources for spec in (source.table, source.activity) if spec is not None]
    return [spec for spec in specs if spec.format == "csv"]


@pytest.mark.parametrize("block_bytes", [1 << 14, readers.BLOCK_BYTES])
def test_generated_extracts_read_alike_and_through_polars(partnership: Path, block_bytes: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "BLOCK_BYTES", block_bytes)
    blocks = BlockCount(monkeypatch)
    for spec in csv_tables(partnership):
        chunks, error = assert_same(spec, chunk_rows=500)
        assert error is None and sum(rows.height for rows, _ in chunks) > 0
    assert blocks.other == 0 and blocks.clean >= 9  # generated extracts are clean: polars read every block


def ingest_all(config_path: Path, out: Path) -> dict[str, object]:
    """Ingest every source; every file written, read back."""
    config = load_config(config_path)
    for source in config.sources:
        stage.ingest_source(source, out, config.reference_date)
    return {str(path.relative_to(out)): pl.read_parquet(path) if path.suffix == ".parquet" else
            json.loads(path.read_text(encoding="utf-8")) for path in sorted(out.rglob("*.*"))}


def assert_same_ingest(config_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = ingest_all(config_path, out / "fast")
    with monkeypatch.context() as patch:
        patch.setattr(stage, "read_table", functools.partial(read_table, fast=False))
        slow = ingest_all(config_path, out / "slow")
    assert fast.keys() == slow.keys()
    for name, written in fast.items():
        if isinstance(written, pl.DataFrame):
            assert_frame_equal(written, slow[name])
        else:
            assert written == slow[name], name


def test_generated_partnership_ingests_alike(partnership: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_same_ingest(partnership, tmp_path, monkeypatch)


def test_generated_extract_with_hostile_rows_ingests_alike(partnership: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Hostile rows spread through the GP extract: both readers quarantine the same rows and keep the rest."""
    folder = partnership.parent
    config = (folder / "pipeline.yaml").read_text(encoding="utf-8")
    (tmp_path / "pipeline.yaml").write_text(config, encoding="utf-8")
    for name in folder.iterdir():
        if name.suffix in (".csv", ".parquet"):
            (tmp_path / name.name).write_bytes(name.read_bytes())
    lines = (folder / "gp.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    header = lines[0]
    hostile = ["G9000001,too,few\n", "G9000002" + ",x" * 12 + "\n", 'G9000003,,"Multi\nLine",Ng,,,,,,,,\n',
               "G9000004,,B\x00b,Lee,,,,,,,,\n", header, "\ufeff" + header, "\n", '"G9000005,,Ann,Lee,,,,,,,,\n']
    step = len(lines) // (len(hostile) + 1)
    for index, row in reversed(list(enumerate(hostile, start=1))):
        lines.insert(index * step, row)
    (tmp_path / "gp.csv").write_text("".join(lines), encoding="utf-8")
    monkeypatch.setattr(readers, "BLOCK_BYTES", 1 << 12)
    assert_same_ingest(tmp_path / "pipeline.yaml", tmp_path / "out", monkeypatch)
    quarantine = pl.read_parquet(tmp_path / "out" / "fast" / "gp" / "quarantine.parquet")
    assert quarantine.height >= 6


# ---------------------------------------------------------------------------------------- hostile rows


HOSTILE = {
    "ragged-short": ["A90,too,few"],
    "ragged-long": ["A90,,Ann,Lee,,,,extra"],
    "trailing-delimiter": ["A90,,Ann,Lee,,,,"],
    "only-delimiters": [",,,,,,"],
    "nul": ["A90,,B\x00b,Lee,,,"],
    "repeated-header": [HEADER],
    "repeated-header-bom": ["\ufeff" + HEADER],
    "repeated-header-spaced": [HEADER.replace(",", " , ")],
    "header-name-as-value": ["id,,Ann,Lee,,,", "idle,,Ann,Lee,,,", " id ,x,Ann,Lee,,,"],
    "blank-lines": ["", "", "A90,,Ann,Lee,,,", ""],
    "whitespace-line": ["   "],
    "lone-cr": ["A90,,Ann,Lee,,,\rA91,,Bob,Ng,,,"],
    "quoted-lf": ['A90,,Ann,"Lee\nNg",,,'],
    "quoted-crlf": ['A90,,Ann,"Lee\r\nNg",,,'],
    "quoted-cr": ['A90,,Ann,"Lee\rNg",,,'],
    "doubled-quotes": ['A90,,Ann,"O""Brien",,,', 'A91,,"","""",,,'],
    "stray-quote": ['A90,,Ann,O"Brien,,,'],
    "after-closing-quote": ['A90,,Ann,"O"Brien,,,'],
    "space-before-quote": ['A90,, "Ann",Lee,,,'],
    "unterminated-quote": ['A90,,"Ann,Lee,,,'],
    "formula": ["=1+1,+2,-3,@SUM(A1),\t=x,\r=y,z"],
    "unicode": ["A90,,Zoë,Brontë,,,", "A91,,Zoe\u0301,\U0001f600,,,", "A92,,\u200bAnn,Le\u00ade,,,"],
    "bom-inside-value": ["A90,,\ufeffAnn,Lee,,,"],
    "field-over-the-limit": ["A90,,Ann," + "x" * 1_100_000 + ",,,"],
    "field-near-the-limit": ["A90,,Ann," + "x" * 1_000_000 + ",,,"],
}


@pytest.mark.parametrize("chunk_rows", [7, 1000])
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_rows_among_clean_ones(tmp_path: Path, small_blocks: None, case: str, newline: str,
                                       chunk_rows: int) -> None:
    lines = [HEADER, *CLEAN[:20], *HOSTILE[case], *CLEAN[20:]]
    path = tmp_path / "people.csv"
    path.write_bytes((newline.join(lines) + newline).encode("utf-8"))
    chunks, error = assert_same(table(path), chunk_rows)
    assert error is None


@pytest.mark.parametrize(("content", "encoding"), [
    ("A90,,Zoë,Lee,,,".encode("latin-1"), "utf-8"),          # not UTF-8
    ("A90,,Zoë,Lee,,,".encode(), "latin-1"),                   # UTF-8 read as latin-1
    ("A90,,Ann,O’Neil,,,".encode("cp1252"), "cp1252"),         # a cp1252 quote, declared so
    (b"A90,,Ann,\x81,,,", "cp1252"),                           # a byte cp1252 does not define
    ("A90,,Zoë,Lee,,,".encode("latin-1"), "latin-1"),          # latin-1, declared so
    ("A90,,Zoë,Lee,,,".encode(), "ascii"),
    (b'A90,,Ann,"Lee\n\xe9",,,', "utf-8"),                      # a bad byte on a row's second line
], ids=["latin1-as-utf8", "utf8-as-latin1", "cp1252", "cp1252-undefined", "latin1", "utf8-as-ascii",
        "bad-byte-second-line"])
def test_encoding_problems_among_clean_rows(tmp_path: Path, small_blocks: None, content: bytes,
                                            encoding: str) -> None:
    """Errors name the same row, field and line however many clean blocks came before."""
    path = tmp_path / "people.csv"
    before = "\n".join([HEADER, *CLEAN[:25]]).encode() + b"\n"
    path.write_bytes(before + content + b"\n" + "\n".join(CLEAN[25:]).encode() + b"\n")
    assert_same(table(path, encoding=encoding), chunk_rows=4)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16", "utf-32"])
@pytest.mark.parametrize("bom", [False, True])
def test_whole_file_encodings(tmp_path: Path, small_blocks: None, encoding: str, bom: bool) -> None:
    path = tmp_path / "people.csv"
    text = "\r\n".join([HEADER, *CLEAN, "A90,,Zoë,Øster,,,"]) + "\r\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding))
    assert_same(table(path, encoding=encoding), chunk_rows=9)


@pytest.mark.parametrize("content", [
    b"", b"\xef\xbb\xbf", b"\n\n", HEADER.encode(), HEADER.encode() + b"\n", b"\n" + HEADER.encode() + b"\nA1,,,,,,\n",
    HEADER.encode() + b"\r", (HEADER + "\nA1,,,,,,").encode(), (HEADER + "\nA1,,,,,,\r").encode(),
    (HEADER + ",id\nA1,,,,,,,\n").encode(), (HEADER + ",source_row\nA1,,,,,,,\n").encode(),
    b'id,"nhs\nnumber",forename,surname,dob,gender,postcode\nA1,,,,,,\n',
    b"id;nhs;forename;surname;dob;gender;postcode\nA1;;;;;;\n", b"PAR1\x00\x00",
    b"\xff\xfe" + HEADER.encode("utf-16-le"), HEADER.encode() + b"," + b"h" * 1_100_000 + b"\n",
], ids=["empty", "bom-only", "blank-lines", "header-no-newline", "header-only", "blank-line-first",
        "header-lone-cr", "last-row-no-newline", "last-row-lone-cr", "duplicate-column", "reserved-column",
        "header-multi-line", "wrong-delimiter", "parquet", "utf16-bom", "header-over-the-limit"])
def test_file_starts(tmp_path: Path, small_blocks: None, content: bytes) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(content)
    assert_same(table(path), chunk_rows=3)


def test_semicolons_and_tabs(tmp_path: Path, small_blocks: None) -> None:
    for delimiter in (";", "\t", "|"):
        path = tmp_path / "people.csv"
        lines = [line.replace(",", delimiter) for line in [HEADER, *CLEAN]] + [f'A99{delimiter}"a{delimiter}b"']
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        assert_same(table(path, delimiter=delimiter), chunk_rows=5)


def test_clean_blocks_go_through_polars_and_a_hostile_one_does_not(tmp_path: Path, small_blocks: None,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = BlockCount(monkeypatch)
    path = tmp_path / "people.csv"
    path.write_text("\n".join([HEADER, *CLEAN[:20], "A90,too,few", *CLEAN[20:]]) + "\n", encoding="utf-8")
    chunks, _ = assert_same(table(path), chunk_rows=1000)
    assert blocks.clean >= 5 and blocks.other == 1  # read row by row only until a row ends at a block's end
    assert chunks[0][1]["reasons"].to_list() == ["row has 3 fields, header has 7"]


# ------------------------------------------------------------------------------------------ arbitrary text


_ATOMS = [",", ";", '"', '""', "'", "\r", "\n", "\r\n", "\t", " ", "\x00", "\ufeff", "é", "Ã©", "\u0301", "’", "=",
          "A1", "id", HEADER, "9434765919", "LS6 1AB", "05/06/1950", "\U0001f600", "x" * 30]
CELL = st.one_of(st.text(max_size=12), st.lists(st.sampled_from(_ATOMS), max_size=5).map("".join))


def written(rows: list[list[str]], quoting: int, newline: str) -> str:
    out = io.StringIO(newline="")
    csv.writer(out, quoting=quoting, lineterminator=newline).writerows([HEADER.split(","), *rows])
    return out.getvalue()


TEXT = st.one_of(
    # well-formed CSV of wild cells, rows of any width
    st.builds(written, st.lists(st.lists(CELL, min_size=1, max_size=9), max_size=30),
              st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
              st.sampled_from(["\n", "\r\n", "\r"])),
    # clean rows with wild lines between them
    st.lists(st.one_of(st.sampled_from(CLEAN), st.lists(st.sampled_from(_ATOMS), max_size=8).map("".join)),
             max_size=40).map(lambda lines: "\n".join([HEADER, *lines])),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=TEXT, encoding=st.sampled_from(["utf-8", "latin-1"]), block_bytes=st.integers(16, 400),
       chunk_rows=st.integers(1, 8))
def test_arbitrary_text_reads_alike(tmp_path_factory: pytest.TempPathFactory, text: str, encoding: str,
                                    block_bytes: int, chunk_rows: int) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "people.csv"
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(readers, "BLOCK_BYTES", block_bytes)
        assert_same(table(path, encoding=encoding), chunk_rows)
