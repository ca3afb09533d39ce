"""Disclosure control of the summary tables: primary suppression, rounding, secondary suppression, schemas."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from carelink.export.schema import summary_schema, table_schema
from carelink.export.summaries import SUMMARIES, protect, secondary_suppression, summary_table, with_margins

AGE_BY_SOURCES, BY_DISTRICT, ACTIVITY = SUMMARIES


@pytest.mark.parametrize(("count", "published"), [(0, 0), (1, None), (7, None), (8, 10), (12, 10), (13, 15)])
def test_edge_counts(count: int, published: int | None) -> None:
    grid, values, hidden = protect(np.array([[count]]))
    assert grid.shape == (1, 1)  # one cell is its own total
    assert (None if hidden[0, 0] else int(values[0, 0])) == published


def test_margins_and_their_relations() -> None:
    grid, relations = with_margins(np.array([[1, 2], [3, 4]]))
    assert grid.tolist() == [[1, 2, 3], [3, 4, 7], [4, 6, 10]]
    assert [(0, 0), (0, 1), (0, 2)] in relations and [(0, 2), (1, 2), (2, 2)] in relations
    assert len(relations) == 6
    column, relations = with_margins(np.array([[5], [9]]))  # one column: a total row only
    assert column.tolist() == [[5], [9], [14]] and relations == [[(0, 0), (1, 0), (2, 0)]]


def test_secondary_suppression_on_a_hand_built_table() -> None:
    interior = np.array([
        [20, 5, 30],    # 55
        [12, 40, 11],   # 63
        [50, 60, 70],   # 180
    ])                  # 82 105 111 | 298
    grid, values, hidden = protect(interior)
    # 5 is suppressed; its row then gives away 5 = 55 - 20 - 30, so 20 (the row's next-smallest) goes too; its
    # column gives it away via 40, and column a gives 20 away via 12: the 2x2 block closes every equation.
    assert hidden.tolist() == [
        [True, True, False, False],
        [True, True, False, False],
        [False, False, False, False],
        [False, False, False, False],
    ]
    shown = np.where(hidden, -1, values)
    assert shown.tolist() == [[-1, -1, 30, 55], [-1, -1, 10, 65], [50, 60, 70, 180], [80, 105, 110, 300]]


def test_secondary_suppression_prefers_a_non_zero_cell() -> None:
    _, values, hidden = protect(np.array([[3, 0, 9]]))  # one row: cells and their total, 12
    assert hidden.tolist() == [[True, False, True, False]]
    assert values[0, 1] == 0 and values[0, 3] == 10


def test_secondary_suppression_takes_a_zero_when_nothing_else_is_left() -> None:
    counts = np.array([[4, 0, 20]])
    relations = [[(0, 0), (0, 1)]]  # an equation of two cells (as if the second were the total)
    assert secondary_suppression(counts, np.array([[True, False, False]]), relations).tolist() == [[True, True, False]]


def test_secondary_suppression_leaves_no_equation_with_one_hidden_cell() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        interior = rng.choice([0, 0, 1, 3, 7, 8, 12, 40, 200], size=tuple(rng.integers(1, 6, size=2)))
        grid, relations = with_margins(interior)
        _, _, hidden = protect(interior)
        assert hidden[(grid > 0) & (grid < 8)].all()
        assert all(sum(hidden[cell] for cell in cells) != 1 for cells in relations)


# ----------------------------------------------------------------------------------------------- tables


def test_summary_table_labels_orders_and_totals() -> None:
    people = pl.DataFrame({
        "age_band": ["10-14"] * 9 + ["5-9"] * 20 + [None] * 2,
        "source_count": [1] * 9 + [1] * 10 + [2] * 10 + [1] * 2,
    })
    table = summary_table(people, AGE_BY_SOURCES)
    rows = {(r["age_band"], r["source_count"]): r["people"] for r in table.frame.iter_rows(named=True)}
    assert list(dict.fromkeys(table.frame["age_band"])) == ["5-9", "10-14", "Unknown", "Total"]
    assert list(dict.fromkeys(table.frame["source_count"])) == ["1", "2", "Total"]
    #        1    2   Total
    # 5-9   10   10   20
    # 10-14  9    0    9
    # Unk.   2    0    2   <- 2 is suppressed, and so is its row total; column 1 then hides its next-smallest
    # Total 21   10   31      non-zero cell (9), and the Total column hides 10-14's total (9)
    assert rows == {
        ("5-9", "1"): 10, ("5-9", "2"): 10, ("5-9", "Total"): 20,
        ("10-14", "1"): None, ("10-14", "2"): 0, ("10-14", "Total"): None,
        ("Unknown", "1"): None, ("Unknown", "2"): 0, ("Unknown", "Total"): None,
        ("Total", "1"): 20, ("Total", "2"): 10, ("Total", "Total"): 30,
    }
    assert (table.cells, table.suppressed) == (12, 4)
    summary_schema(AGE_BY_SOURCES).validate(table.frame)


def test_one_way_table_has_a_total_row_and_no_column_dimension() -> None:
    people = pl.DataFrame({"postcode_district": ["LS10"] * 30 + ["LS6"] * 12 + ["LS2"] * 3})
    frame = summary_table(people, BY_DISTRICT).frame
    assert frame.columns == ["postcode_district", "people", "suppressed"]
    assert frame.rows() == [("LS2", None, True), ("LS6", None, True), ("LS10", 30, False), ("Total", 45, False)]


def test_empty_table_is_valid() -> None:
    frame = summary_table(pl.DataFrame(schema={"source": pl.String, "activity_type": pl.String}), ACTIVITY).frame
    assert frame.height == 0
    summary_schema(ACTIVITY).validate(frame)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (("LS6", 5, False), "publishable"),       # 5 is only ever a rounded small count
        (("LS6", 12, False), "publishable"),      # not rounded
        (("LS6", None, False), "null_where_suppressed"),
        (("LS6", 30, True), "null_where_suppressed"),
    ],
)
def test_summary_schema_rejects_disclosive_values(row: tuple, problem: str) -> None:
    frame = pl.DataFrame([row, ("Total", 30, False)], schema=summary_schema(BY_DISTRICT).columns.keys(), orient="row",
                         schema_overrides={"people": pl.Int64})
    with pytest.raises(Exception, match=problem):
        summary_schema(BY_DISTRICT).validate(frame)


def test_every_summary_file_has_a_schema() -> None:
    for spec in SUMMARIES:
        assert table_schema(spec.file) is not None
    assert table_schema("summary/unexpected.parquet") is None
    assert table_schema("activity/gp.parquet") is not None and table_schema("activity/gp/year=2024/x.parquet") is None
