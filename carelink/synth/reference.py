"""Name frequency tables shipped as package data in ``carelink/data/``.

* ``forenames.csv``: name, sex, weight, group, peak_year, spread. ``weight`` is a frequency per
  million people at the name's peak; popularity falls off around ``peak_year`` with a Gaussian of
  width ``spread`` years, so names fit the birth cohort (MARGARET for 1935, OLIVIA for 2013).
* ``surnames.csv``: name, weight, group (Zipf-like frequency per million people).
* ``nicknames.csv``: name, canonical (upper case; one row per nickname or variant spelling and
  the full name it stands for; a nickname may stand for several names).

``group`` is a broad naming tradition (british, south_asian, african, east_european, other) used to
keep a household's names coherent. Every name is encodable in latin-1.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

GROUPS: tuple[str, ...] = ("british", "south_asian", "african", "east_european", "other")


def _read_rows(filename: str) -> list[dict[str, str]]:
    text = resources.files("carelink").joinpath("data", filename).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@dataclass(frozen=True)
class ForenamePool:
    """Forenames of one group and sex as parallel arrays."""

    names: np.ndarray
    weights: np.ndarray
    peak_year: np.ndarray
    spread: np.ndarray

    def probabilities(self, birth_year: float) -> np.ndarray:
        """Return sampling probabilities for someone born in ``birth_year``."""
        z = (birth_year - self.peak_year) / self.spread
        p = self.weights * (np.exp(-0.5 * z * z) + 0.01)
        return p / p.sum()


@dataclass(frozen=True)
class SurnamePool:
    """Surnames of one group as parallel arrays."""

    names: np.ndarray
    probabilities: np.ndarray


@lru_cache(maxsize=1)
def forename_pools() -> dict[tuple[str, str], ForenamePool]:
    """Return forename pools keyed by (group, sex) where sex is M or F."""
    grouped: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in _read_rows("forenames.csv"):
        grouped.setdefault((row["group"], row["sex"]), []).append(row)
    return {
        key: ForenamePool(
            names=np.array([r["name"] for r in rows], dtype=object),
            weights=np.array([float(r["weight"]) for r in rows]),
            peak_year=np.array([float(r["peak_year"]) for r in rows]),
            spread=np.array([float(r["spread"]) for r in rows]),
        )
        for key, rows in grouped.items()
    }


@lru_cache(maxsize=1)
def surname_pools() -> dict[str, SurnamePool]:
    """Return surname pools keyed by group."""
    grouped: dict[str, list[dict[str, str]]] = {}
    for row in _read_rows("surnames.csv"):
        grouped.setdefault(row["group"], []).append(row)
    pools = {}
    for group, rows in grouped.items():
        weights = np.array([float(r["weight"]) for r in rows])
        pools[group] = SurnamePool(np.array([r["name"] for r in rows], dtype=object), weights / weights.sum())
    return pools


def group_shares() -> np.ndarray:
    """Return each group's share of the population (in ``GROUPS`` order), from surname weights."""
    totals = {g: 0.0 for g in GROUPS}
    for row in _read_rows("surnames.csv"):
        totals[row["group"]] += float(row["weight"])
    shares = np.array([totals[g] for g in GROUPS])
    return shares / shares.sum()


@lru_cache(maxsize=1)
def load_nicknames() -> tuple[tuple[str, str], ...]:
    """Return the (nickname, canonical) pairs from ``nicknames.csv``, upper case."""
    return tuple((r["name"], r["canonical"]) for r in _read_rows("nicknames.csv"))


@lru_cache(maxsize=1)
def nicknames_by_canonical() -> dict[str, tuple[str, ...]]:
    """Return, for each full name, the nicknames and variant spellings that stand for it."""
    out: dict[str, list[str]] = {}
    for nick, canonical in load_nicknames():
        out.setdefault(canonical, []).append(nick)
    return {k: tuple(v) for k, v in out.items()}
