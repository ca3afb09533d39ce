"""Leak scan: prove that no value of a direct identifier appears in any file that leaves the partner.

Every string and integer cell of every output column is compared with every identifier value of the input, in the
spellings a leak would take (standardised, raw-looking, compact, several date formats); string cells are also
searched for embedded NHS numbers, postcodes and dates of birth.

How it stays fast without checking less: an integer cell can only equal a spelling that is the decimal form of an
integer, so integer cells are compared as integers (first by their top 32 bits, which rules out almost every keyed
token at once, then exactly); a text cell can only equal a spelling of the same length; free-text searches run once
per distinct cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow.compute as pc

from carelink.pseudonymise.features import DIRECT_IDENTIFIERS

_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%Y%m%d", "%d%m%Y", "%d/%m/%y")
#: The decimal form of an Int64 (what casting an integer cell to text gives).
_INTEGER_TEXT = r"^(0|-?[1-9][0-9]*)$"
#: Integer cells are first compared by ``value // 2**32``: keyed tokens are spread over all 2⁶⁴ values, identifier
#: numbers (NHS numbers, dates) sit in a few buckets near zero.
_BUCKET = 2**32
_EMBEDDED = r"\b([0-9]{3}[ -]?[0-9]{3}[ -]?[0-9]{4}|[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2})\b"
#: Cells sampled to decide whether a text column's values repeat.
_SAMPLE = 10_000
#: Identifier columns whose values rarely repeat (not worth de-duplicating before spelling them out).
_MOSTLY_UNIQUE = ("record_id", "nhs_number")
#: List cells equal to their own record's identifiers in more rows than random words would give this rarely are a
#: leak; fewer are chance (see ``_chance_of``).
_CHANCE = 1e-6
#: The chance that a 64-bit word with k bits set at random equals a given k-bit number, by k.
_CHANCE_OF_BITS = 1.0 / np.array([math.comb(64, k) for k in range(65)])


@dataclass
class LeakScanResult:
    """What the scan compared and what it found."""

    columns_scanned: int = 0
    cells_scanned: int = 0
    identifier_values: int = 0
    leaks: list[dict[str, str | int]] = field(default_factory=list)
    not_scanned: list[str] = field(default_factory=list)
    #: Records whose list cells were compared with their own identifiers in the delivery they were carried from.
    records_compared_before: int = 0
    #: List columns where a few words equal their own record's identifier as often as random words would.
    coincidences: list[dict[str, str | int | float]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.leaks

    def to_dict(self) -> dict:
        extra: dict = {"records_compared_before": self.records_compared_before} if self.records_compared_before else {}
        if self.coincidences:
            extra["coincidences"] = self.coincidences
        return {
            "passed": self.passed,
            "columns_scanned": self.columns_scanned,
            "cells_scanned": self.cells_scanned,
            "identifier_values": self.identifier_values,
            "leaks": self.leaks[:50],
            "not_scanned": self.not_scanned,
            **extra,
        }


def identifier_spellings(standardised: pl.DataFrame) -> pl.Series:
    """Every spelling of every direct identifier value in the standardised records (upper-cased)."""
    frame = standardised.lazy()
    parts: list[pl.LazyFrame] = []
    for name in DIRECT_IDENTIFIERS:
        if name not in standardised.columns:
            continue
        column = pl.col(name).drop_nulls()
        if name not in _MOSTLY_UNIQUE:
            column = column.unique()
        if name == "date_of_birth":
            dates = frame.select(column.alias("_d"))
            parts += [dates.select(pl.col("_d").dt.strftime(fmt).alias("_s")) for fmt in _DATE_FORMATS]
            continue
        spelling = pl.col("_s")
        text = frame.select(column.cast(pl.String).str.to_uppercase().alias("_s"))
        parts.append(text)
        spaced = text.filter(spelling.str.contains(" ", literal=True))  # without a space, these equal ``text``
        parts.append(spaced.select(spelling.str.replace_all(" ", "", literal=True)))
        if name in ("given_name", "family_name"):
            parts.append(spaced.select(spelling.str.split(" ")).explode("_s"))
        if name == "nhs_number":
            parts.append(text.select(spelling.str.slice(0, 3) + " " + spelling.str.slice(3, 3) + " " + spelling.str.slice(6)))
    if not parts:
        return pl.Series("_s", [], dtype=pl.String)
    values = pl.concat(parts).unique()
    # A short number ("12") is as likely an activity code as record 12's id; numbers count from five digits.
    numeric, length = pl.col("_s").str.contains(r"^[0-9]+$"), pl.col("_s").str.len_chars()
    return values.filter((~numeric & (length >= 2)) | (numeric & (length >= 5))).collect()["_s"]


class _Needles:
    """The identifier spellings, indexed for the comparisons the scan makes."""

    def __init__(self, spellings: pl.Series):
        self.text = spellings
        self._lengths = spellings.str.len_bytes()
        self._of_lengths: dict[tuple[tuple[int, ...], bool], pl.Series] = {}
        number = spellings.cast(pl.Int64, strict=False)
        parsed = number.is_not_null()  # "+5", "05" parse too: keep those whose decimal form they are
        integers = number.filter(parsed).filter(spellings.filter(parsed).str.contains(_INTEGER_TEXT))
        self.integer_values = integers
        buckets = (integers // _BUCKET).unique()
        self.buckets, self.buckets_array = buckets.implode(), buckets.to_numpy()

    def of_lengths(self, lengths: pl.Series, hex_only: bool = False) -> pl.Series:
        """The spellings with one of these lengths in bytes (only those of hex digits, when ``hex_only``)."""
        key = (tuple(sorted(lengths.unique().to_list())), hex_only)
        if key not in self._of_lengths:
            if len(key[0]) <= 8:  # a few comparisons are cheaper than a hash lookup per spelling
                mask = pl.repeat(False, self.text.len(), eager=True)
                for length in key[0]:
                    mask = mask | (self._lengths == length)
            else:
                mask = self._lengths.is_in(pl.Series(key[0], dtype=pl.UInt32).implode())
            text = self.text.filter(mask)
            self._of_lengths[key] = text.filter(text.str.contains(r"^[0-9A-F]+$")) if hex_only else text
        return self._of_lengths[key]

    def integer_hits(self, cells: pl.Series) -> int:
        """Integer cells (no nulls) whose decimal form is a spelling."""
        if cells.dtype == pl.UInt64:  # beyond Int64: compare as text
            counts = pl.Series(cells.len() * [1], dtype=pl.UInt32)
            text = cells.cast(pl.String)
            return self.text_hits(text, counts)
        cells = cells.cast(pl.Int64)
        candidates = cells.filter((cells // _BUCKET).is_in(self.buckets))
        return int(_among(candidates, self.integer_values).sum()) if candidates.len() else 0

    def text_hits(self, upper: pl.Series, counts: pl.Series) -> int:
        """Cells equal to a spelling, from the column's distinct upper-cased values and how many cells hold each."""
        needles = self.of_lengths(upper.str.len_bytes())
        return int(counts.filter(_among(upper, needles)).sum()) if needles.len() else 0

    def embedded_hits(self, upper: pl.Series, counts: pl.Series) -> int:
        """Cells holding an identifier NHS number or postcode inside longer text, as a separate word (a run of digits
        inside a hex token is not an NHS number), from the column's distinct upper-cased values and their counts."""
        found = pl.DataFrame({"_n": counts, "_found": upper.str.extract_all(_EMBEDDED)}).with_row_index("_row")
        found = found.explode("_found").drop_nulls("_found")
        if found.height == 0:
            return 0
        candidates = found.with_columns(pl.col("_found").str.replace_all(r"[ -]", "").alias("_compact"))
        words = pl.concat([candidates["_found"], candidates["_compact"]]).unique()
        known = words.filter(_among(words, self.of_lengths(words.str.len_bytes()))).implode()
        hits = candidates.filter(pl.col("_found").is_in(known) | pl.col("_compact").is_in(known))
        return int(hits.unique("_row")["_n"].sum())


def _among(values: pl.Series, spellings: pl.Series) -> pl.Series:
    """``values.is_in(spellings)``, with the smaller side hashed: a few distinct cells against millions of spellings
    look the spellings up among the cells (three activity types against eight million spellings: 2.2 s → 0.1 s).
    Sides of like size are left as they are: flipping them would hash both."""
    if values.len() * 8 < spellings.len():
        spellings = spellings.filter(spellings.is_in(values.implode()))
    return values.is_in(spellings.implode())


def _own_digits(standardised: pl.DataFrame) -> list[pl.Series]:
    """Per record, the digit strings its own identifiers could leak as in a numeric column: the NHS number, the
    digits of the record and shared ids, the date of birth as YYYYMMDD and DDMMYYYY."""
    parts = [standardised["nhs_number"]]
    for name in ("record_id", "shared_id"):
        if name in standardised.columns:
            parts.append(standardised[name].str.replace_all(r"\D", "").str.strip_chars_start("0"))
    parts += [standardised["date_of_birth"].dt.strftime(fmt) for fmt in ("%Y%m%d", "%d%m%Y")]
    return [part.cast(pl.String) for part in parts]


def _own_numbers(standardised: pl.DataFrame) -> pl.DataFrame:
    """``_own_digits`` of five digits or more as the integers whose decimal form they are (null where none is)."""
    return pl.DataFrame([
        pl.select(pl.when(part.str.contains(_INTEGER_TEXT) & (part.str.len_chars() >= 5))
                  .then(part.cast(pl.Int64, strict=False))).to_series().alias(f"_own{i}")
        for i, part in enumerate(_own_digits(standardised))
    ])


def _own_numeric_spellings(standardised: pl.DataFrame) -> pl.Series:
    """``_own_digits`` of five digits or more, as a list per record."""
    frame = pl.DataFrame([part.alias(f"_{i}") for i, part in enumerate(_own_digits(standardised))])
    own = frame.select(pl.concat_list(pl.all()).list.drop_nulls().alias("_own"))["_own"]
    return own.list.eval(pl.element().filter(pl.element().str.len_chars() >= 5))


def _dates_of_birth(series: pl.Series, births: pl.Series) -> int:
    """Rows of a date column holding their own record's date of birth, when that is systematic (two or more rows and
    over 1 % of the column's dates): a consent recorded on the day a baby was born is an event, a column of birth
    dates a leak."""
    same = int((series == births).fill_null(False).sum())
    return same if same >= 2 and same > 0.01 * max(series.is_not_null().sum(), 1) else 0


def _aligned_hits_as_text(series: pl.Series, standardised: pl.DataFrame) -> int:
    """Rows where any element of a list cell, as text, equals that same record's identifier digits."""
    frame = pl.DataFrame({"_cell": series, "_own": _own_numeric_spellings(standardised)}).with_row_index("_row")
    text = frame.explode("_cell").select("_row", pl.col("_cell").cast(pl.String), "_own").drop_nulls("_cell")
    hits = text.filter(pl.col("_own").list.contains(pl.col("_cell")))
    return hits["_row"].n_unique()


def _numeric_hits_aligned(series: pl.Series, standardised: pl.DataFrame, needles: _Needles) -> tuple[int, float]:
    """Rows where any element of a list cell equals that same record's identifier (as its decimal form), and how many
    such rows random words would give (``_expected_by_chance``; 0 for lists that are not of signed integers).

    A record's own numbers are its NHS number and birth date (integer spellings too) and the digits of its record
    and shared ids (below 10^L for ids of at most L characters); only the rows with an element that is one of those
    are compared with their own identifiers.
    """
    inner = series.dtype.inner  # type: ignore[union-attr]
    if inner is None or not inner.is_integer() or inner == pl.UInt64:
        return _aligned_hits_as_text(series, standardised), 0.0
    # The elements, flat, with the row each belongs to (Arrow's list layout: no per-element row column is built).
    lists = series.cast(pl.List(pl.Int64)).rechunk().to_arrow()
    flat, parents = lists.flatten(), pc.list_parent_indices(lists)
    if flat.null_count:
        present = pc.is_valid(flat)
        flat, parents = flat.filter(present), parents.filter(present)
    cells, rows_of_cells = flat.to_numpy(), parents.to_numpy()
    longest = max((int(standardised[name].str.len_chars().max() or 0) for name in ("record_id", "shared_id")
                   if name in standardised.columns), default=0)
    if longest < 5:  # no id has five digits
        own_id_digits = np.zeros(cells.shape, dtype=bool)
    elif longest < 19:
        own_id_digits = (cells >= 0) & (cells < 10**longest)
    else:
        own_id_digits = cells >= 0
    # Cheap test first (the top 32 bits), then the exact one on what is left.
    keep = np.isin(cells // _BUCKET, needles.buckets_array) | own_id_digits
    if not keep.any():
        return 0, 0.0
    elements = pl.DataFrame({"_row": rows_of_cells[keep].astype(np.uint32), "_cell": cells[keep],
                             "_own_id_digits": own_id_digits[keep]})
    elements = elements.filter(_among(elements["_cell"], needles.integer_values) | elements["_own_id_digits"]).drop(
        "_own_id_digits")
    if elements.height == 0:
        return 0, 0.0
    rows = elements["_row"].unique()
    own = _own_numbers(standardised[rows]).with_columns(rows.alias("_row"))
    compared = elements.join(own, on="_row")
    hits = compared.filter(pl.any_horizontal(pl.col("_cell") == pl.col(c) for c in own.columns if c != "_row")
                           .fill_null(False))["_row"].n_unique()
    # only worked out when something was found (it reads every element and every record's numbers)
    return hits, _expected_by_chance(cells, rows_of_cells, _own_numbers(standardised)) if hits else 0.0


def _expected_by_chance(cells: np.ndarray, rows_of_cells: np.ndarray, own: pl.DataFrame) -> float:
    """How many elements would equal their own record's numbers if the words were random: a 64-bit word with k bits
    set, its bits placed by a keyed hash, equals a given k-bit number with probability 1 / C(64, k).

    A Bloom-filter word is sparse, so a small number: at ten million records the address word 2¹⁸ + 2 of record
    VOL-262146 equalled the digits of its id. Numbers with many bits set (NHS numbers, dates of birth) have a chance
    near zero, so one of them in a word is never excused.
    """
    ones = np.bitwise_count(cells.view(np.uint64)).astype(np.int64)
    chance = _CHANCE_OF_BITS[ones]
    expected = 0.0
    for column in own.columns:
        number = own[column].fill_null(-1).to_numpy()
        number_ones = np.where(number >= 0, np.bitwise_count(np.abs(number)), -1)[rows_of_cells]
        expected += float(chance.sum(where=ones == number_ones))
    return expected


def _chance_of(hits: int, expected: float) -> float:
    """P(at least ``hits`` coincidences) when ``expected`` are expected (Poisson)."""
    from scipy.stats import poisson  # here: importing scipy.stats takes a second, and most scans never get here

    return float(poisson.sf(hits - 1, expected))


def scan(outputs: dict[str, pl.DataFrame], standardised: pl.DataFrame, categorical: tuple[str, ...] = (),
         aligned: tuple[str, ...] = ()) -> LeakScanResult:
    """Scan every output table's columns for identifier values.

    - Text and integer cells are compared with every identifier value of the source; text is also searched for
      embedded NHS numbers and postcodes. (A keyed 64-bit token equals a given value with probability 2⁻⁶⁴.)
    - Bloom-filter words (lists of integers) are not uniform — a sparse word is a small number — so a word equal to
      *some* NHS number happens by chance; in tables listed in ``aligned`` (one row per standardised record, same
      order) they are compared with their own record's identifiers, which is where a leak would put them. Rows
      that match no more often than random words of as few bits set would (``_expected_by_chance``) are listed as
      coincidences, not leaks.
    - Date cells of aligned tables are compared with their own record's date of birth (see ``_dates_of_birth``);
      event dates in other tables (activity) are listed as not scanned.
    - ``categorical`` columns hold values from a fixed vocabulary (source names, statuses, bands); they are listed
      as not scanned rather than risk a false alarm when a surname happens to equal a category.
    """
    spellings = identifier_spellings(standardised)
    return scan_with(outputs, standardised, spellings, categorical, aligned)


def scan_with(outputs: dict[str, pl.DataFrame], standardised: pl.DataFrame, spellings: pl.Series,
              categorical: tuple[str, ...] = (), aligned: tuple[str, ...] = (),
              aligned_rows: np.ndarray | None = None) -> LeakScanResult:
    """``scan`` with the identifier spellings already computed (``identifier_spellings``).

    ``aligned_rows``, where given, are the only rows of the aligned tables whose list cells need comparing with their
    own record's identifiers: the others were carried unchanged, with unchanged identifiers, from a delivery whose
    scan passed (``carry.carry_forward``). Every other comparison covers every row.
    """
    needles = _Needles(spellings)

    result = LeakScanResult(identifier_values=spellings.len())
    own = standardised if aligned_rows is None else standardised[aligned_rows]
    result.records_compared_before = 0 if aligned_rows is None else standardised.height - aligned_rows.size
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
                cells = series if aligned_rows is None else series.gather(aligned_rows)
                hits, expected = _numeric_hits_aligned(cells, own, needles)
                if hits and _chance_of(hits, expected) >= _CHANCE:
                    result.coincidences.append({"table": table_name, "column": column, "cells": hits,
                                                "expected_by_chance": float(f"{expected:.3g}")})
                    hits = 0
            else:
                found = _cell_hits(series, needles)
                if found is None:
                    result.not_scanned.append(f"{table_name}.{column}")
                    continue
                hits = found
            result.columns_scanned += 1
            result.cells_scanned += series.len()
            if hits:
                result.leaks.append({"table": table_name, "column": column, "cells": hits})
    return result


def _cell_hits(series: pl.Series, needles: _Needles) -> int | None:
    """Cells of a text, integer or integer-list column equal to a spelling (None: a type the scan cannot read)."""
    dtype = series.dtype
    if dtype == pl.String:
        cells, counts = series.drop_nulls(), None
        sample = cells.head(_SAMPLE)
        # hex tokens (told apart before grouping: most often no spelling has their length, and nothing is left to do)
        if not _has_non_hex(sample) and not _has_non_hex(cells):
            needles_hex = needles.of_lengths(cells.str.len_bytes(), hex_only=True)
            if needles_hex.len() == 0:
                return 0
            equal = _among(cells.str.to_uppercase(), needles_hex)
            return int(equal.sum())
        if sample.n_unique() <= sample.len() // 2:  # values repeat: work on the distinct ones from the start
            cells, counts = _distinct_counts(cells)
        upper, counts = _distinct_counts(cells.str.to_uppercase(), counts)
        return needles.text_hits(upper, counts) + needles.embedded_hits(upper, counts)
    if dtype.is_integer():
        return needles.integer_hits(series.drop_nulls())
    if isinstance(dtype, pl.List) and dtype.inner is not None and dtype.inner.is_integer():
        return needles.integer_hits(series.drop_nulls().explode().drop_nulls())
    return None


def _has_non_hex(cells: pl.Series) -> bool:
    """Whether some cell holds a character other than a lower-case hex digit (hex tokens embed nothing)."""
    return bool(cells.str.contains(r"[^0-9a-f]").any())


def _distinct_counts(cells: pl.Series, counts: pl.Series | None = None) -> tuple[pl.Series, pl.Series]:
    """The distinct cells and how many cells hold each (``counts``: of each of ``cells``, when already grouped)."""
    frame = pl.DataFrame({"_cell": cells, "_n": pl.repeat(1, cells.len(), dtype=pl.UInt32, eager=True)
                          if counts is None else counts})
    grouped = frame.group_by("_cell").agg(pl.col("_n").sum())
    return grouped["_cell"], grouped["_n"]
