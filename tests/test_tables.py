"""Shared file output: Parquet files written side by side are the files written one by one."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from carelink.tables import cut_like, in_aligned_pieces, read_parquet_metadata, write_parquet, write_parquet_files


def _frames() -> list[pl.DataFrame]:
    return [pl.DataFrame({"token": [f"{i:032x}" for i in range(n)], "value": list(range(n))}) for n in (5, 2_000, 0)]


def test_files_written_together_are_byte_identical_to_files_written_one_by_one(tmp_path: Path) -> None:
    frames = _frames()
    alone = [write_parquet(frame, tmp_path / "alone" / f"{i}.parquet", {"table": i}) for i, frame in enumerate(frames)]
    together = write_parquet_files((frame, tmp_path / "together" / "sub" / f"{i}.parquet", {"table": i})
                                   for i, frame in enumerate(frames))
    assert [p.name for p in together] == ["0.parquet", "1.parquet", "2.parquet"]
    for one, other in zip(alone, together, strict=True):
        assert one.read_bytes() == other.read_bytes()
    assert read_parquet_metadata(together[1]) == {"table": 1}
    assert pl.read_parquet(together[1]).equals(frames[1])


def test_a_failed_write_is_raised_after_the_others_finish_and_leaves_no_partial_file(tmp_path: Path) -> None:
    frames = _frames()
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder is needed")
    with pytest.raises(OSError):
        write_parquet_files([(frames[0], tmp_path / "ok0.parquet", None),
                             (frames[1], blocked / "bad.parquet", None),
                             (frames[2], tmp_path / "ok2.parquet", None)])
    assert pl.read_parquet(tmp_path / "ok0.parquet").equals(frames[0])
    assert pl.read_parquet(tmp_path / "ok2.parquet").height == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked", "ok0.parquet", "ok2.parquet"]


def test_a_series_is_cut_where_the_frames_columns_are() -> None:
    frame = pl.concat([pl.DataFrame({"a": [1, 2, 3]}), pl.DataFrame({"a": [4]}), pl.DataFrame({"a": [5, 6]})],
                      rechunk=False)
    cut = cut_like(pl.Series("b", list("uvwxyz")), frame)
    assert cut.chunk_lengths() == [3, 1, 2] and cut.to_list() == list("uvwxyz")
    assert cut_like(pl.Series("b", [1, 2]), pl.DataFrame({"a": [1, 2]})).n_chunks() == 1


def test_columns_cut_in_different_places_end_in_one_piece_each_and_agreeing_ones_stay_as_they_are() -> None:
    pieces = pl.concat([pl.DataFrame({"a": [1, 2], "b": ["x", "y"]}), pl.DataFrame({"a": [3], "b": ["z"]})],
                       rechunk=False)
    assert in_aligned_pieces(pieces) is pieces
    mixed = pieces.with_columns(pl.Series("c", [True, False, True]))
    aligned = in_aligned_pieces(mixed)
    assert aligned.equals(mixed) and set(aligned.n_chunks("all")) == {1}
