"""Turn true people into one source's records, injecting that source's data-quality problems.

Every problem applied to a record is recorded as a case label (see ``RECORD_CASES``) so that the
truth file can say exactly what was done. Cosmetic formatting (case, spacing, postcode layout,
accents) happens later, in ``extracts``, and is not labelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carelink.synth import households as hh
from carelink.synth import nhs, places, reference
from carelink.synth.people import People
from carelink.synth.sources import SourceSpec

#: Labels for problems injected into individual records, in the order they are listed in truth.csv.
RECORD_CASES: tuple[str, ...] = (
    "duplicate",
    "moved",
    "marriage",
    "surname_part",
    "known_by_middle",
    "nickname",
    "middle_name",
    "typo_given",
    "typo_family",
    "swap_names",
    "dob_swap",
    "dob_typo",
    "default_dob",
    "dob_missing",
    "sex_error",
    "sex_unknown",
    "nhs_missing",
    "nhs_mistyped",
    "placeholder_nhs",
    "relative_nhs",
    "postcode_typo",
    "postcode_missing",
)
#: How much likelier a problem is on a duplicate registration than on the original record.
DUPLICATE_BOOST = 2.5
DEFAULT_DOB = np.datetime64("1900-01-01")

_KEYBOARD = dict(
    zip(
        "QWERTYUIOPASDFGHJKLZXCVBNM",
        [
            "WA",
            "QES",
            "WRD",
            "ETF",
            "RYG",
            "TUH",
            "YIJ",
            "UOK",
            "IPL",
            "OL",
            "QSZ",
            "AWDX",
            "SEFC",
            "DRGV",
            "FTHB",
            "GYJN",
            "HUKM",
            "JIL",
            "KOP",
            "ASX",
            "ZSDC",
            "XDFV",
            "CFGB",
            "VGHN",
            "BHJM",
            "NJK",
        ],
        strict=True,
    )
)
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class RecordSet:
    """One source's records before formatting; ``pid`` is the true person of each record."""

    spec: SourceSpec
    pid: np.ndarray
    given: np.ndarray
    family: np.ndarray
    dob: np.ndarray  # datetime64[D], NaT when missing
    sex: np.ndarray
    nhs: np.ndarray  # 10-digit string, or "" when missing
    premise: np.ndarray
    street: np.ndarray
    town: np.ndarray
    postcode: np.ndarray
    cases: dict[str, np.ndarray]
    #: What the record meant to say before typos (nickname, maiden name etc. kept); None: same as shown.
    given_intended: np.ndarray | None = None
    family_intended: np.ndarray | None = None
    postcode_intended: np.ndarray | None = None

    @property
    def n(self) -> int:
        """Number of records."""
        return len(self.pid)


def typo(name: str, draws: np.ndarray) -> str:
    """Apply one to three keyboard-style edits to the letters of an upper-case name.

    Args:
        name: the name to corrupt.
        draws: uniform [0, 1) draws, at least 10; they choose the number, kind and place of edits.

    Returns:
        A different, non-empty string.
    """
    chars = list(name)
    edits = 1 if draws[0] < 0.78 or len(name) < 5 else (2 if draws[0] < 0.95 else 3)
    for e in range(edits):
        letters = [i for i, c in enumerate(chars) if c.isalpha()]
        if len(letters) < 2:
            break
        op, where, pick = draws[1 + 3 * e], draws[2 + 3 * e], draws[3 + 3 * e]
        i = letters[int(where * len(letters))]
        near = _KEYBOARD.get(chars[i], _LETTERS)
        if op < 0.4:
            chars[i] = near[int(pick * len(near))]
        elif op < 0.6:
            del chars[i]
        elif op < 0.75:
            chars.insert(i, chars[i] if pick < 0.5 else near[int(pick * len(near))])
        else:
            j = i + 1 if i + 1 < len(chars) and chars[i + 1].isalpha() else i - 1
            chars[i], chars[j] = chars[j], chars[i]
    out = "".join(chars)
    if out == name or not out.strip():
        out = name[:-1] + ("E" if name[-1] != "E" else "A")
    return out


def _postcode_typo(code: str, draws: np.ndarray) -> str:
    """Mis-key a postcode: a wrong unit letter, a wrong sector digit, or swapped unit letters."""
    outward, inward = code.split(" ")
    sector, units = inward[0], list(inward[1:])
    if draws[0] < 0.5:
        k = int(draws[1] * 2)
        choices = places.UNIT_LETTERS.replace(units[k], "")
        units[k] = choices[int(draws[2] * len(choices))]
    elif draws[0] < 0.8 or units[0] == units[1]:
        sector = str((int(sector) + 1 + int(draws[2] * 9)) % 10)
    else:
        units.reverse()
    return f"{outward} {sector}{''.join(units)}"


def _ymd(dates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    months = dates.astype("datetime64[M]")
    year = months.astype(np.int64) // 12 + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (dates - months.astype("datetime64[D]")).astype(np.int64) + 1
    return year, month, day


def _from_ymd(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    first = ((year - 1970) * 12 + month - 1).astype("datetime64[M]")
    length = ((first + 1).astype("datetime64[D]") - first.astype("datetime64[D]")).astype(np.int64)
    return first.astype("datetime64[D]") + (np.clip(day, 1, length) - 1).astype("timedelta64[D]")


def _dob_typos(rng: np.random.Generator, dob: np.ndarray) -> np.ndarray:
    """Return plausible mis-keyed dates of birth that differ from the true ones."""
    year, month, day = _ymd(dob)
    n = len(dob)
    kind = rng.integers(0, 4, n)
    step = rng.choice([-2, -1, 1, 2], n)
    swapped_year = year // 100 * 100 + (year % 10) * 10 + (year % 100) // 10
    new_day = np.where(kind == 0, day + step, day)
    new_day = np.where((new_day < 1) | (new_day > 28), day - step, new_day)
    new_month = np.where(kind == 1, (month - 1 + np.sign(step)) % 12 + 1, month)
    new_year = np.select([kind == 2, kind == 3], [year + np.sign(step), swapped_year], year)
    bad_year = (new_year == year) & (kind == 3) | (new_year > 2026) | (new_year < 1900)
    new_year = np.where(bad_year, year - 1, new_year)
    out = _from_ymd(new_year, new_month, new_day)
    out = np.where(out >= hh.REFERENCE_DATE, out - np.timedelta64(365, "D"), out)
    return np.where(out == dob, out - np.timedelta64(1, "D"), out)


def build_records(rng: np.random.Generator, spec: SourceSpec, people: People, members: np.ndarray) -> RecordSet:
    """Create one source's records for ``members``, with duplicates and injected errors.

    Args:
        rng: random generator for this source.
        spec: the source.
        people: the true population.
        members: ascending indices of the people this source holds.

    Returns:
        The records, in person order (duplicates last), with a case mask per label.
    """
    rates = spec.rates
    dup_of = members[rng.random(len(members)) < spec.duplicate_rate]
    pid = np.concatenate([members, dup_of])
    n = len(pid)
    cases = {name: np.zeros(n, dtype=bool) for name in RECORD_CASES}
    cases["duplicate"][len(members) :] = True
    boost = np.where(cases["duplicate"], DUPLICATE_BOOST, 1.0)
    taken = np.zeros(n, dtype=bool)  # for mutually exclusive problems

    def hit(name: str, rate: float, eligible: np.ndarray | bool = True, exclusive: bool = False) -> np.ndarray:
        mask = (rng.random(n) < np.minimum(rate * boost, 0.95)) & eligible
        if exclusive:
            mask &= ~taken
            taken[mask] = True
        cases[name] |= mask
        return mask

    given = people.forename[pid].copy()
    family = people.surname[pid].copy()
    middle = people.middle[pid]

    m = hit("marriage", rates.marriage, people.maiden[pid] != "")
    family[m] = people.maiden[pid][m]
    hyphenated = np.array(["-" in s for s in family], dtype=bool)
    m = hit("surname_part", rates.surname_part, hyphenated & ~m)
    if m.any():
        part = rng.random(n) < 0.7
        family[m] = [s.split("-")[0 if first else -1] for s, first in zip(family[m], part[m], strict=True)]
    kbm = hit("known_by_middle", rates.known_by_middle, people.known_by_middle[pid])
    given[kbm] = middle[kbm]
    nick_table = reference.nicknames_by_canonical()
    has_nick = np.array([g in nick_table for g in given], dtype=bool)
    m = hit("nickname", rates.nickname, has_nick)
    picks = rng.random(n)
    given[m] = [nick_table[g][int(u * len(nick_table[g]))] for g, u in zip(given[m], picks[m], strict=True)]
    m = hit("middle_name", rates.middle_name, (middle != "") & ~kbm)
    given[m] = given[m] + " " + middle[m]
    given_intended, family_intended = given.copy(), family.copy()
    for name, arr in (("typo_given", given), ("typo_family", family)):
        m = hit(name, getattr(rates, name))
        idx = np.flatnonzero(m)
        draws = rng.random((len(idx), 10))
        arr[idx] = [typo(s, d) for s, d in zip(arr[idx], draws, strict=True)]
    m = hit("swap_names", rates.swap_names)
    given[m], family[m] = family[m], given[m].copy()

    dob = people.skeleton.dob[pid].copy()
    _, month, day = _ymd(dob)
    m = hit("dob_swap", rates.dob_swap, (day <= 12) & (day != month), exclusive=True)
    year = dob.astype("datetime64[Y]").astype(np.int64) + 1970
    dob[m] = _from_ymd(year[m], day[m], month[m])
    m = hit("dob_typo", rates.dob_typo, exclusive=True)
    dob[m] = _dob_typos(rng, dob[m])
    m = hit("default_dob", rates.default_dob, exclusive=True)
    dob[m] = DEFAULT_DOB
    m = hit("dob_missing", rates.dob_missing, exclusive=True)
    dob[m] = np.datetime64("NaT")

    sex = people.skeleton.sex[pid].copy()
    m = hit("sex_error", rates.sex_error, sex != "U")
    sex[m] = np.where(sex[m] == "M", "F", "M")
    m = hit("sex_unknown", rates.sex_unknown, ~m & (sex != "U"))
    sex[m] = "U"

    numbers = people.nhs[pid].astype(str).astype(object)
    taken[:] = False
    m = hit("nhs_missing", rates.nhs_missing, exclusive=True)
    numbers[m] = ""
    m = hit("nhs_mistyped", rates.nhs_mistyped, exclusive=True)
    draws = rng.random((int(m.sum()), 3))
    numbers[m] = [nhs.mistype(x, d) for x, d in zip(numbers[m], draws, strict=True)]
    m = hit("placeholder_nhs", rates.placeholder_nhs, exclusive=True)
    numbers[m] = np.array(nhs.PLACEHOLDER_NHS_NUMBERS, dtype=object)[rng.integers(0, 4, int(m.sum()))]
    relative = people.relative[pid]
    m = hit("relative_nhs", rates.relative_nhs, relative >= 0, exclusive=True)
    numbers[m] = people.nhs[relative[m]].astype(str)

    stale = hit("moved", rates.moved, people.moved[pid])
    addr, old = people.address, people.old_address
    parts = {}
    for f in ("premise", "street", "town", "postcode"):
        parts[f] = getattr(addr, f)[pid].copy()
        parts[f][stale] = getattr(old, f)[pid][stale]
    postcode_intended = parts["postcode"].copy()
    taken[:] = False
    m = hit("postcode_missing", rates.postcode_missing, exclusive=True)
    parts["postcode"][m] = ""
    m = hit("postcode_typo", rates.postcode_typo, exclusive=True)
    draws = rng.random((int(m.sum()), 3))
    parts["postcode"][m] = [_postcode_typo(c, d) for c, d in zip(parts["postcode"][m], draws, strict=True)]
    return RecordSet(
        spec,
        pid,
        given,
        family,
        dob,
        sex,
        numbers,
        parts["premise"],
        parts["street"],
        parts["town"],
        parts["postcode"],
        cases,
        given_intended,
        family_intended,
        postcode_intended,
    )
