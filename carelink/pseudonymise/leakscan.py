"""Leak scan: prove that no value of a direct identifier appears in any file that leaves the partner.

Every string and integer cell of every output column is compared with every identifier value of the input, in the
spellings a leak would take (standardised, raw-looking, compact, several date formats); string cells are also
searched for embedded NHS numbers, postcodes and dates of birth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from carelink.pseudonymise.features import DIRECT_IDENTIFIERS

_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%Y%m%d", "%d%m%Y", "%d/%m/%y")


@dataclass
class LeakScanResult:
    """What the scan compared and what it found."""

    columns_scanned: int = 0
    cells_scanned: int = 0
    identifier_values: int = 0
    leaks: list[dict[str, str | int]] = field(default_factory=list)
    not_scanned: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.leaks

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "columns_scanned": self.columns_scanned,
            "cells_scanned": self.cells_scanned,
            "identifier_values": self.identifier_values,
            "leaks": self.leaks[:50],
            "not_scanned": self.not_scanned,
        }


def identifier_spellings(standardised: pl.DataFrame) -> pl.Series:
    """Every spelling of every direct identifier value in the standardised records (upper-cased)."""
    parts: list[pl.Series] = []
    for name in DIRECT_IDENTIFIERS:
        if name not in standardised.columns:
            continue
        column = standardised[name].drop_nulls()
        if name == "date_of_birth":
            parts += [column.dt.strftime(fmt) for fmt in _DATE_FORMATS]
            continue
        text = column.cast(pl.String)
        parts.append(text)
        parts.append(text.str.replace_all(" ", ""))
        if name in ("given_name", "family_name"):
            parts.append(text.str.split(" ").explode())
        if name == "nhs_number":
            parts.append(text.str.slice(0, 3) + " " + text.str.slice(3, 3) + " " + text.str.slice(6))
    values = pl.concat([p.cast(pl.String) for p in parts]).str.to_uppercase().unique()
    # A short number ("12") is as likely an activity code as record 12's id; numbers count from five digits.
    numeric = values.str.contains(r"^[0-9]+$")
    return values.filter((~numeric & (values.str.len_chars() >= 2)) | (numeric & (values.str.len_chars() >= 5)))


def _own_numeric_spellings(standardised: pl.DataFrame) -> pl.Series:
    """Per record, the digit strings its own identifiers could leak as in a numeric column."""
    parts = [standardised["nhs_number"]]
    for name in ("record_id", "shared_id"):
        if name in standardised.columns:
            parts.append(standardised[name].str.replace_all(r"\D", "").str.strip_chars_start("0"))
    parts += [standardised["date_of_birth"].dt.strftime(fmt) for fmt in ("%Y%m%d", "%d%m%Y")]
    frame = pl.DataFrame([part.alias(f"_{i}") for i, part in enumerate(parts)])
    own = frame.select(pl.concat_list(pl.all()).list.drop_nulls().alias("_own"))["_own"]
    return own.list.eval(pl.element().filter(pl.element().str.len_chars() >= 5))


def _dates_of_birth(series: pl.Series, births: pl.Series) -> int:
    """Rows of a date column holding their own record's date of birth, when that is systematic (two or more rows and
    over 1 % of the column's dates): a consent recorded on the day a baby was born is an event, a column of birth
    dates a leak."""
    same = int((series == births).fill_null(False).sum())
    return same if same >= 2 and same > 0.01 * max(series.is_not_null().sum(), 1) else 0


def _numeric_hits_aligned(series: pl.Series, own: pl.Series) -> int:
    """Rows where any element of a list cell equals that same record's identifier."""
    frame = pl.DataFrame({"_cell": series, "_own": own}).with_row_index("_row")
    if isinstance(series.dtype, pl.List):
        frame = frame.explode("_cell")
    text = frame.select("_row", pl.col("_cell").cast(pl.String), "_own").drop_nulls("_cell")
    hits = text.filter(pl.col("_own").list.contains(pl.col("_cell")))
    return hits["_row"].n_unique()


def scan(outputs: dict[str, pl.DataFrame], standardised: pl.DataFrame, categorical: tuple[str, ...] = (),
         aligned: tuple[str, ...] = ()) -> LeakScanResult:
    """Scan every output table's columns for identifier values.

    - Text and integer cells are compared with every identifier value of the source; text is also searched for
      embedded NHS numbers and postcodes. (A keyed 64-bit token equals a given value with probability 2⁻⁶⁴.)
    - Bloom-filter words (lists of integers) are not uniform — a sparse word is a small number — so a word equal to
      *some* NHS number happens by chance; in tables listed in ``aligned`` (one row per standardised record, same
      order) they are compared with their own record's identifiers, which is where a leak would put them.
    - Date cells of aligned tables are compared with their own record's date of birth (see ``_dates_of_birth``);
      event dates in other tables (activity) are listed as not scanned.
    - ``categorical`` columns hold values from a fixed vocabulary (source names, statuses, bands); they are listed
      as not scanned rather than risk a false alarm when a surname happens to equal a category.
    """
    spellings = identifier_spellings(standardised)
    needles = pl.DataFrame({"_needle": spellings})
    known = spellings.implode()
    own = _own_numeric_spellings(standardised)
    result = LeakScanResult(identifier_values=spellings.len())
    for table_name, frame in outputs.items():
        for column in frame.columns:
            series = frame[column]
            is_aligned = table_name in aligned and series.len() == standardised.height
            if column in categorical or (series.dtype == pl.Date and not is_aligned):
                result.not_scanned.append(f"{table_name}.{column}")
                continue
            if series.dtype == pl.Date:
                hits = _dates_of_birth(series, standardised["date_of_birth"])
            elif isinstance(series.dtype, pl.List) and is_aligned:
                hits = _numeric_hits_aligned(series, own)
            else:
                cells = _cells_as_text(series)
                if cells is None:
                    result.not_scanned.append(f"{table_name}.{column}")
                    continue
                upper = cells.str.to_uppercase()
                hits = pl.DataFrame({"_needle": upper}).join(needles, on="_needle", how="semi").height
                if series.dtype == pl.String and cells.str.contains(r"[^0-9a-f]").any():  # hex tokens embed nothing
                    hits += _embedded_hits(upper, known)
            result.columns_scanned += 1
            result.cells_scanned += series.len()
            if hits:
                result.leaks.append({"table": table_name, "column": column, "cells": hits})
    return result


def _embedded_hits(upper: pl.Series, known: pl.Series) -> int:
    """Cells holding an identifier NHS number or postcode inside longer text, as a separate word (a run of digits
    inside a hex token is not an NHS number)."""
    found = pl.DataFrame({"_cell": upper}).with_row_index("_row").select(
        "_row",
        pl.col("_cell").str.extract_all(r"\b([0-9]{3}[ -]?[0-9]{3}[ -]?[0-9]{4}|[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2})\b")
        .alias("_found"),
    ).explode("_found").drop_nulls("_found")
    candidates = found.with_columns(pl.col("_found").str.replace_all(r"[ -]", "").alias("_compact"))
    hits = candidates.filter(pl.col("_found").is_in(known) | pl.col("_compact").is_in(known))
    return hits["_row"].n_unique()


def _cells_as_text(series: pl.Series) -> pl.Series | None:
    dtype = series.dtype
    if dtype == pl.String:
        return series.drop_nulls()
    if dtype.is_integer():
        return series.drop_nulls().cast(pl.String)
    if isinstance(dtype, pl.List) and dtype.inner is not None and dtype.inner.is_integer():
        return series.drop_nulls().explode().drop_nulls().cast(pl.String)
    return None
