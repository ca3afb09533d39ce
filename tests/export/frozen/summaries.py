"""Disclosure-controlled summary tables shipped with every export (``summary/<name>.parquet``).

Rules, applied to every cell including the totals:

- **Primary suppression**: a count from 1 to 7 is suppressed (published as null). Zero is published as 0.
- **Rounding**: every other count is rounded to the nearest 5 (totals are rounded from the true total, not summed).
- **Secondary suppression**: each row and each column, with its total, is an equation (cells add up to the
  total). If one holds exactly one suppressed cell, that cell could be recovered by subtraction, so the next-smallest
  unsuppressed cell of it is suppressed too. Non-zero cells are chosen first (a hidden zero is easily guessed, and
  guessing it would recover the small count); a zero only when nothing else is left. This repeats until every row
  and column holds no suppressed cell or at least two.

Which cells were suppressed by which rule is not published: that would tell a reader which cells hold 1 to 7.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import polars as pl

#: Counts from 1 to ``SUPPRESS_BELOW - 1`` are suppressed.
SUPPRESS_BELOW = 8
#: Published counts are rounded to the nearest multiple of this.
ROUND_TO = 5
TOTAL = "Total"
UNKNOWN = "Unknown"

Cell = tuple[int, int]


@dataclass(frozen=True)
class SummarySpec:
    """One summary table: what it counts, over which one or two dimensions."""

    name: str
    table: str  # "person" or "activity": the exported table it counts rows of
    rows: str
    columns: str | None
    measure: str
    description: str

    @property
    def dimensions(self) -> tuple[str, ...]:
        """The dimension columns, rows first."""
        return (self.rows,) if self.columns is None else (self.rows, self.columns)

    @property
    def file(self) -> str:
        """The file's path inside an export folder."""
        return f"summary/{self.name}.parquet"


SUMMARIES = (
    SummarySpec("people_by_age_band_and_source_count", "person", "age_band", "source_count", "people",
                "People by five-year age band and number of sources holding them"),
    SummarySpec("people_by_postcode_district", "person", "postcode_district", None, "people",
                "People by postcode district"),
    SummarySpec("activity_by_source_and_type", "activity", "source", "activity_type", "activity_rows",
                "Activity rows by source and activity type"),
)


@dataclass(frozen=True)
class ProtectedTable:
    """A summary table after disclosure control, with what it cost."""

    frame: pl.DataFrame
    cells: int
    suppressed: int


def with_margins(interior: np.ndarray) -> tuple[np.ndarray, list[list[Cell]]]:
    """Add a total row and column to a grid of counts; return it and its additive relations.

    A total row is added only when there are two or more rows (one row is its own total), likewise for columns.
    Each relation lists the cells of one row or column, total included, that must add up.
    """
    grid = np.asarray(interior, dtype=np.int64)
    rows, columns = grid.shape
    if columns > 1:
        grid = np.column_stack([grid, grid.sum(axis=1)])
    if rows > 1:
        grid = np.vstack([grid, grid.sum(axis=0)])
    height, width = grid.shape
    relations: list[list[Cell]] = []
    if columns > 1:
        relations += [[(i, j) for j in range(width)] for i in range(height)]
    if rows > 1:
        relations += [[(i, j) for i in range(height)] for j in range(width)]
    return grid, relations


def secondary_suppression(counts: np.ndarray, suppressed: np.ndarray, relations: list[list[Cell]]) -> np.ndarray:
    """Suppress more cells until no relation holds exactly one suppressed cell; return the new mask."""
    mask = np.array(suppressed, dtype=bool)
    changed = True
    while changed:
        changed = False
        for cells in relations:
            hidden = [cell for cell in cells if mask[cell]]
            shown = [cell for cell in cells if not mask[cell]]
            if len(hidden) == 1 and shown:
                mask[min(shown, key=lambda cell: (counts[cell] == 0, counts[cell], cell))] = True
                changed = True
    return mask


def protect(interior: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply disclosure control to a grid of counts.

    Returns:
        The grid with margins, the published values (rounded; meaningless where suppressed) and the
        suppression mask, all of the same shape.
    """
    grid, relations = with_margins(interior)
    primary = (grid > 0) & (grid < SUPPRESS_BELOW)
    mask = secondary_suppression(grid, primary, relations)
    published = (grid + ROUND_TO // 2) // ROUND_TO * ROUND_TO  # nearest multiple, halves up
    return grid, published, mask


def _natural_key(label: str) -> tuple:
    """Sort labels as people read them (``5-9`` before ``10-14``, ``LS6`` before ``LS10``), unknown last."""
    parts = re.split(r"(\d+)", label)
    return (label == UNKNOWN, [int(p) if i % 2 else p for i, p in enumerate(parts)])


def summary_table(frame: pl.DataFrame, spec: SummarySpec) -> ProtectedTable:
    """Count ``frame``'s rows over the spec's dimensions and apply disclosure control, totals included."""
    labels = frame.select(pl.col(d).cast(pl.String).fill_null(UNKNOWN) for d in spec.dimensions)
    counts = {tuple(key): n for *key, n in labels.group_by(spec.dimensions).len().iter_rows()}
    axes = [sorted(labels[d].unique().to_list(), key=_natural_key) for d in spec.dimensions]
    row_labels, column_labels = axes[0], axes[1] if spec.columns else [None]
    interior = np.array([[counts.get((r,) if c is None else (r, c), 0) for c in column_labels] for r in row_labels],
                        dtype=np.int64).reshape(len(row_labels), len(column_labels))
    if interior.size == 0:
        return ProtectedTable(_frame([], spec), 0, 0)
    grid, published, mask = protect(interior)
    row_labels = row_labels + [TOTAL] * (grid.shape[0] - len(row_labels))
    column_labels = column_labels + [TOTAL] * (grid.shape[1] - len(column_labels))
    out = [
        (row, column, None if mask[i, j] else int(published[i, j]), bool(mask[i, j]))
        for i, row in enumerate(row_labels) for j, column in enumerate(column_labels)
    ]
    return ProtectedTable(_frame(out, spec), int(grid.size), int(mask.sum()))


def _frame(rows: list[tuple], spec: SummarySpec) -> pl.DataFrame:
    schema = {d: pl.String for d in spec.dimensions} | {spec.measure: pl.Int64, "suppressed": pl.Boolean}
    if spec.columns is None:
        rows = [(row, value, hidden) for row, _, value, hidden in rows]
    return pl.DataFrame(rows, schema=schema, orient="row")
