"""Safe file output shared by every stage: atomic writes, checksums, JSON metadata.

Nothing carelink writes is ever half-written: each file is written to a temporary name in the same folder, flushed
and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

#: Parquet metadata key under which carelink stores a table's provenance (key IDs, schema version, ...).
METADATA_KEY = b"carelink"


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it into place only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def stacked_rows(frames: list[pl.DataFrame], positions: Any) -> pl.DataFrame:
    """Rows ``positions`` of ``frames`` stacked (no copy), their columns gathered in parallel: a lazy select, where
    ``DataFrame.gather`` takes about twice as long (9–10 s against 4–5 s for 3.9M pseudonymised records)."""
    return pl.concat(frames, rechunk=False).lazy().select(pl.all().gather(positions)).collect()


def cut_like(series: pl.Series, frame: pl.DataFrame) -> pl.Series:
    """``series`` (as long as ``frame``) cut into pieces where ``frame``'s columns are (zero-copy slices).

    A column added in one piece to a frame held in several would make polars copy the whole frame into one piece
    before handing it to Arrow (and DuckDB): 4 s and the frame's size again at ten million records."""
    if not frame.width or frame[frame.columns[0]].n_chunks() == 1:
        return series
    pieces, at = [], 0
    for length in frame[frame.columns[0]].chunk_lengths():
        pieces.append(series.slice(at, length))
        at += length
    return pl.concat(pieces, rechunk=False)


def in_aligned_pieces(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with every column cut in the same places: as it is when they already are (frames read from
    Parquet and stacked are), else each column in one piece, one column at a time, so the copy never holds more than
    one column twice."""
    if len({tuple(frame[name].chunk_lengths()) for name in frame.columns}) <= 1:
        return frame
    for name in frame.columns:
        frame = frame.with_columns(frame[name].rechunk())
    return frame


def write_parquet(frame: pl.DataFrame, target: Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``frame`` to ``target`` atomically, with carelink metadata in the Parquet footer."""
    table = frame.to_arrow()
    if metadata is not None:
        existing = table.schema.metadata or {}
        blob = json.dumps(metadata, sort_keys=True, default=str).encode()
        table = table.replace_schema_metadata({**existing, METADATA_KEY: blob})
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return target


def write_parquet_files(files: Iterable[tuple[pl.DataFrame, Path, dict[str, Any] | None]]) -> list[Path]:
    """Write each ``(frame, target, metadata)`` as :func:`write_parquet` does, several files at once.

    Arrow encodes and compresses a file's columns one after another, so files written side by side on threads (which
    Arrow runs without the GIL) take about half the time on two cores. Every write finishes before this returns;
    the first failure is then raised.
    """
    files = list(files)
    with ThreadPoolExecutor(max_workers=max(1, min(len(files), pl.thread_pool_size())),
                            thread_name_prefix="write-parquet") as pool:
        writes = [pool.submit(write_parquet, frame, target, metadata) for frame, target, metadata in files]
    return [write.result() for write in writes]


def read_parquet_metadata(path: Path) -> dict[str, Any]:
    """Return the carelink metadata stored in a Parquet file's footer ({} if none)."""
    schema = pq.read_schema(path)
    blob = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(blob) if blob else {}


def write_json(data: Any, target: Path) -> Path:
    """Write JSON atomically, keys sorted so the same content gives the same bytes."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return target


def write_text(text: str, target: Path) -> Path:
    """Write a text file atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    return json.loads(path.read_text(encoding="utf-8"))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
