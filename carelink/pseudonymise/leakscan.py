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
    return values.filter(values.str.len_chars() >= 2)


def scan(outputs: dict[str, pl.DataFrame], standardised: pl.DataFrame, categorical: tuple[str, ...] = ()) -> LeakScanResult:
    """Scan every output table's columns for identifier values.

    ``categorical`` columns hold values from a fixed vocabulary (source names, statuses, bands); they are listed
    as not scanned rather than risk a false alarm when a surname happens to equal a category.
    """
    spellings = identifier_spellings(standardised)
    needles = pl.DataFrame({"_needle": spellings})
    known = set(spellings.to_list())
    result = LeakScanResult(identifier_values=spellings.len())
    for table_name, frame in outputs.items():
        for column in frame.columns:
            cells = _cells_as_text(frame[column])
            if cells is None or column in categorical:
                result.not_scanned.append(f"{table_name}.{column}")
                continue
            result.columns_scanned += 1
            result.cells_scanned += cells.len()
            upper = cells.str.to_uppercase()
            hits = pl.DataFrame({"_needle": upper}).join(needles, on="_needle", how="semi").height
            if frame[column].dtype == pl.String:  # numbers can only leak whole; text can embed an identifier
                embedded = upper.filter(upper.str.contains(r"[0-9]{3} ?[0-9]{3} ?[0-9]{4}| [0-9][A-Z]{2}\b"))
                hits += sum(1 for v in embedded.to_list() if any(word in known for word in v.split()))
            if hits:
                result.leaks.append({"table": table_name, "column": column, "cells": hits})
    return result


def _cells_as_text(series: pl.Series) -> pl.Series | None:
    dtype = series.dtype
    if dtype == pl.String:
        return series.drop_nulls()
    if dtype.is_integer():
        return series.drop_nulls().cast(pl.String)
    if isinstance(dtype, pl.List) and dtype.inner is not None and dtype.inner.is_integer():
        return series.drop_nulls().explode().drop_nulls().cast(pl.String)
    return None
