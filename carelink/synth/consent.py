"""Consent and opt-out fields: national data opt-out, type 1 opt-out and shared-care consent.

Shared-care (SCR) consent is recorded separately by the GP, the acute trust and social care, so a
person's consent can conflict across sources (granted in one, withdrawn later in another).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carelink.synth import households as hh

SCR_VALUES: tuple[str, ...] = ("granted", "withdrawn", "refused", "")
#: P(blank) per source that records shared-care consent.
SCR_BLANK: dict[str, float] = {"gp": 0.40, "acute": 0.60, "social_care": 0.41}
#: A person's own stance: P(granted, withdrawn, refused).
STANCE_P = (0.90, 0.06, 0.04)
#: Share of non-blank records that disagree with the person's stance (stale or mis-recorded).
OFF_STANCE = 0.08
#: Earliest date each consent value is recorded from (withdrawals come later than grants).
SCR_SINCE: dict[str, np.datetime64] = {
    "granted": np.datetime64("2015-01-01"),
    "withdrawn": np.datetime64("2021-01-01"),
    "refused": np.datetime64("2015-01-01"),
}


@dataclass(frozen=True)
class PersonConsent:
    """Per-person opt-outs and shared-care consent stance."""

    ndop: np.ndarray  # national data opt-out
    type1: np.ndarray  # type 1 (GP data) opt-out
    stance: np.ndarray  # "granted", "withdrawn" or "refused"


def person_consent(rng: np.random.Generator, n: int) -> PersonConsent:
    """Draw opt-outs (about 4 % national, 3 % type 1, correlated) and each person's consent stance."""
    type1 = rng.random(n) < 0.03
    ndop = (type1 & (rng.random(n) < 0.4)) | (rng.random(n) < 0.03)
    stance = np.array(SCR_VALUES[:3], dtype=object)[rng.choice(3, size=n, p=STANCE_P)]
    return PersonConsent(ndop, type1, stance)


def scr_consent(
    rng: np.random.Generator, source: str, stance: np.ndarray, dob: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Draw recorded shared-care consent values and dates for records.

    Args:
        rng: random generator.
        source: source name (a key of ``SCR_BLANK``).
        stance: the person's stance for each record.
        dob: the person's true date of birth for each record.

    Returns:
        (values: object array of SCR_VALUES, dates: datetime64[D] with NaT where blank).
    """
    n = len(dob)
    other = np.array(SCR_VALUES[:3], dtype=object)[rng.choice(3, size=n, p=(0.6, 0.25, 0.15))]
    values = np.where(rng.random(n) < OFF_STANCE, other, stance).astype(object)
    values[rng.random(n) < SCR_BLANK[source]] = ""
    dates = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    last = hh.REFERENCE_DATE - np.timedelta64(1, "D")
    u = rng.random(n)
    for value, since in SCR_SINCE.items():
        m = values == value
        lo = np.maximum(dob[m], since)
        span = (last - lo).astype(np.int64) + 1
        dates[m] = lo + (u[m] * span).astype(np.int64).astype("timedelta64[D]")
    return values, dates


def conflicts(n_people: int, records: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Return a per-person mask of people whose consent was granted somewhere and refused or withdrawn elsewhere.

    Args:
        n_people: population size.
        records: (person index, consent value) arrays for each source that records consent.
    """
    granted = np.zeros(n_people, dtype=bool)
    negative = np.zeros(n_people, dtype=bool)
    for pid, values in records:
        granted[pid[values == "granted"]] = True
        negative[pid[(values == "withdrawn") | (values == "refused")]] = True
    return granted & negative
