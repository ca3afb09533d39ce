"""The true people of the synthetic partnership: names, NHS numbers, family ties and frailty.

Builds on the household skeleton: a household shares a naming tradition and (mostly) a surname;
married partners may carry a maiden name; twins share surname, date of birth and address and get
consecutive NHS numbers; some fathers and sons share forename and surname (Jr/Sr).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carelink.synth import households as hh
from carelink.synth import nhs, places, reference

MOHAMMED_FORMS = frozenset({"MOHAMMED", "MUHAMMAD", "MOHAMMAD", "MOHAMED"})
TWIN_SHARE = 0.03  # of households with two or more children
JR_SR_SHARE = 0.02  # of households with a father and a son


@dataclass
class People:
    """One row per true person (the person index is the entity)."""

    skeleton: hh.Skeleton
    group: np.ndarray  # index into reference.GROUPS
    forename: np.ndarray
    middle: np.ndarray  # "" when none
    surname: np.ndarray
    maiden: np.ndarray  # earlier surname still on some records, "" when none
    known_by_middle: np.ndarray
    twin: np.ndarray
    jr_sr: np.ndarray
    nhs: np.ndarray  # int64, valid test-range numbers
    relative: np.ndarray  # index of another household member, -1 when living alone
    frailty: np.ndarray  # 0..1
    address: hh.Addresses
    moved: np.ndarray
    old_address: hh.Addresses

    @property
    def n(self) -> int:
        """Number of people."""
        return len(self.forename)

    @property
    def care_home(self) -> np.ndarray:
        """Mask of care-home residents."""
        return self.skeleton.role == hh.RESIDENT


def _segments(keys: np.ndarray):
    """Yield (key, indices) for each distinct key."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    bounds = np.flatnonzero(np.diff(sorted_keys)) + 1
    for chunk in np.split(order, bounds):
        if len(chunk):
            yield keys[chunk[0]], chunk


def _draw_forenames(rng: np.random.Generator, group: np.ndarray, sex: np.ndarray, dob: np.ndarray) -> np.ndarray:
    """Draw forenames by naming tradition, sex and five-year birth cohort."""
    pools = reference.forename_pools()
    year = dob.astype("datetime64[Y]").astype(np.int64) + 1970
    cohort = year // 5
    sex_code = np.where(sex == "M", 0, np.where(sex == "F", 1, 2))
    out = np.empty(len(group), dtype=object)
    for key, idx in _segments((group.astype(np.int64) * 3 + sex_code) * 1000 + cohort):
        g, s = divmod(int(key) // 1000, 3)
        gname = reference.GROUPS[g]
        sexes = ("M", "F") if s == 2 else (("M",) if s == 0 else ("F",))
        names = np.concatenate([pools[(gname, x)].names for x in sexes])
        p = np.concatenate([pools[(gname, x)].probabilities(int(key) % 1000 * 5 + 2.5) for x in sexes])
        out[idx] = names[rng.choice(len(names), size=len(idx), p=p / p.sum())]
    return out


def _draw_surnames(rng: np.random.Generator, group: np.ndarray) -> np.ndarray:
    pools = reference.surname_pools()
    out = np.empty(len(group), dtype=object)
    for g, idx in _segments(group.astype(np.int64)):
        pool = pools[reference.GROUPS[int(g)]]
        out[idx] = pool.names[rng.choice(len(pool.names), size=len(idx), p=pool.probabilities)]
    return out


def _groups(rng: np.random.Generator, sk: hh.Skeleton) -> np.ndarray:
    """Naming tradition per person: shared by a household, individual in care homes and shares."""
    shares = reference.group_shares()
    n = len(sk.household)
    hh_group = rng.choice(len(shares), size=len(sk.hh_kind), p=shares)
    own = rng.choice(len(shares), size=n, p=shares)
    care_p = np.array([0.93, 0.04, 0.01, 0.01, 0.01])
    care = rng.choice(len(shares), size=n, p=care_p)
    group = hh_group[sk.household]
    group = np.where(sk.role == hh.SHARER, own, group)
    group = np.where(sk.role == hh.RESIDENT, care, group)
    mixed = (sk.role == hh.PARTNER) & (rng.random(n) < 0.06)
    return np.where(mixed, own, group).astype(np.int8)


def _surnames(rng: np.random.Generator, sk: hh.Skeleton, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (current surname, maiden surname or "") for everyone."""
    n = len(group)
    own = _draw_surnames(rng, group)
    double = (rng.random(n) < 0.015) & (group == 0)  # double-barrelling is a British custom
    second = _draw_surnames(rng, group)
    own = np.where(double & (own != second), own + "-" + second, own)
    head = sk.hh_start[sk.household] + (sk.kind == hh.MULTIGEN)
    partner = head + 1
    has_partner = np.isin(sk.hh_kind[sk.household], (hh.COUPLE, hh.FAMILY, hh.MULTIGEN)) & (
        sk.hh_size[sk.household] > head - sk.hh_start[sk.household] + 1
    )
    partner = np.where(has_partner, partner, head)
    married = rng.random(len(sk.hh_kind))[sk.household] < 0.75
    # The married name is the man's own surname (the head's for same-sex couples).
    head_male_or_same = (sk.sex[head] == "M") | (sk.sex[partner] != "M")
    family = np.where(married & head_male_or_same, own[head], np.where(married, own[partner], own[head]))
    surname = own.copy()
    adult = (sk.role == hh.HEAD) | (sk.role == hh.PARTNER)
    takes = adult & married & has_partner
    surname[takes] = family[takes]
    child = sk.role == hh.CHILD
    r = rng.random(n)
    surname[child] = np.where(r[child] < 0.9, family[child], own[partner][child])
    dbl = child & (r > 0.97) & (own[head] != own[partner]) & (group == 0)
    surname[dbl] = own[head][dbl] + "-" + own[partner][dbl]
    gp = sk.role == hh.GRANDPARENT
    surname[gp] = np.where(r[gp] < 0.6, own[head][gp], own[gp])
    changed = takes & (surname != own)
    recent = changed & (sk.age >= 20) & (sk.age <= 50) & (rng.random(n) < 0.5)
    maiden = np.where(recent, own, "").astype(object)
    return _gendered(rng, surname, sk.sex), maiden


def _gendered(rng: np.random.Generator, surname: np.ndarray, sex: np.ndarray) -> np.ndarray:
    """Respect surnames that follow sex: Sikh SINGH/KAUR, and BEGUM, BIBI, KHATUN for women."""
    out = surname.copy()
    female_only = np.isin(out, ["KAUR", "BEGUM", "BIBI", "KHATUN"])
    male = sex == "M"
    out[(out == "KAUR") & male] = "SINGH"
    swap = female_only & male & (out != "SINGH")
    out[swap] = np.array(["ALI", "MIAH", "UDDIN", "HUSSAIN"], dtype=object)[rng.integers(0, 4, int(swap.sum()))]
    out[(out == "SINGH") & (sex == "F") & (rng.random(len(out)) < 0.8)] = "KAUR"
    return out


def _twins(rng: np.random.Generator, sk: hh.Skeleton) -> np.ndarray:
    """Pick twin pairs among households with two or more children; return (k, 2) person indices."""
    first_child = sk.hh_start + np.select([sk.hh_kind == hh.FAMILY, sk.hh_kind == hh.LONE_PARENT], [2, 1], 3)
    children = sk.hh_start + sk.hh_size - first_child
    eligible = np.flatnonzero(np.isin(sk.hh_kind, (hh.FAMILY, hh.LONE_PARENT, hh.MULTIGEN)) & (children >= 2))
    if not len(eligible):
        return np.zeros((0, 2), dtype=np.int64)
    k = max(1, int(rng.binomial(len(eligible), TWIN_SHARE)))
    chosen = np.sort(rng.choice(eligible, size=k, replace=False))
    a = first_child[chosen]
    return np.stack([a, a + 1], axis=1).astype(np.int64)


def _name_twins(rng: np.random.Generator, pairs: np.ndarray, forename: np.ndarray, sex: np.ndarray) -> None:
    """Give some twins look-alike forenames and make sure no twins share a forename."""
    close = rng.random(len(pairs)) < 0.35
    picks = rng.integers(0, len(places.TWIN_PAIRS), len(pairs))
    for (a, b), is_close, pick in zip(pairs, close, picks, strict=True):
        if is_close:
            name_a, sex_a, name_b, sex_b = places.TWIN_PAIRS[pick]
            forename[a], sex[a], forename[b], sex[b] = name_a, sex_a, name_b, sex_b
        elif forename[a] == forename[b]:
            spare = ("GRACE", "ROSE") if sex[b] == "F" else ("NOAH", "LEO")
            forename[b] = spare[0] if forename[a] != spare[0] else spare[1]


def _jr_sr(rng: np.random.Generator, sk: hh.Skeleton, forename, surname) -> np.ndarray:
    """Give some sons their father's forename and surname; return the mask of fathers and sons."""
    head = sk.hh_start[sk.household] + (sk.kind == hh.MULTIGEN)
    son = (sk.role == hh.CHILD) & (sk.sex == "M") & (sk.sex[head] == "M") & (sk.role[head] == hh.HEAD)
    son &= np.isin(sk.kind, (hh.FAMILY, hh.MULTIGEN))
    sons = np.flatnonzero(son)
    mask = np.zeros(len(forename), dtype=bool)
    if not len(sons):
        return mask
    households, first = np.unique(sk.household[sons], return_index=True)
    k = max(1, int(rng.binomial(len(households), JR_SR_SHARE)))
    chosen = sons[first[np.sort(rng.choice(len(households), size=k, replace=False))]]
    fathers = head[chosen]
    forename[chosen] = forename[fathers]
    surname[chosen] = surname[fathers]
    mask[chosen] = mask[fathers] = True
    return mask


def _relatives(rng: np.random.Generator, sk: hh.Skeleton, pairs: np.ndarray) -> np.ndarray:
    """For each person, another member of their household (a co-twin for twins), or -1."""
    size = sk.hh_size[sk.household]
    step = 1 + (rng.random(len(size)) * np.maximum(size - 1, 1)).astype(np.int64)
    rel = sk.hh_start[sk.household] + (sk.position + step) % size
    rel = np.where(size > 1, rel, -1)
    rel[pairs[:, 0]], rel[pairs[:, 1]] = pairs[:, 1], pairs[:, 0]
    return rel


def build_people(rng: np.random.Generator, people: int) -> People:
    """Create the true population of ``people`` persons."""
    sk = hh.build_skeleton(rng, people)
    group = _groups(rng, sk)
    pairs = _twins(rng, sk)
    sk.dob[pairs[:, 1]] = sk.dob[pairs[:, 0]]
    sk.age[pairs[:, 1]] = sk.age[pairs[:, 0]]
    forename = _draw_forenames(rng, group, sk.sex, sk.dob)
    middle = _draw_forenames(rng, group, sk.sex, sk.dob)
    has_middle = rng.random(people) < np.where(group == 0, 0.6, 0.45)
    middle = np.where(has_middle & (middle != forename), middle, "").astype(object)
    surname, maiden = _surnames(rng, sk, group)
    _name_twins(rng, pairs, forename, sk.sex)
    surname[pairs[:, 1]] = surname[pairs[:, 0]]
    jr_sr = _jr_sr(rng, sk, forename, surname)
    twin = np.zeros(people, dtype=bool)
    twin[pairs.ravel()] = True

    mo = np.isin(forename, list(MOHAMMED_FORMS))
    known = (middle != "") & (rng.random(people) < np.where(mo, 0.45, 0.03))
    numbers = nhs.allocate(rng, people, pairs)
    relative = _relatives(rng, sk, pairs)
    frailty = 0.8 / (1 + np.exp(-(sk.age - 80) / 6)) + 0.35 * (sk.role == hh.RESIDENT)
    frailty = np.clip(frailty + rng.normal(0, 0.08, people), 0, 1)
    hh_addr = hh.household_addresses(rng, sk.hh_kind)
    address = hh.Addresses(*(getattr(hh_addr, f)[sk.household] for f in ("premise", "street", "town", "postcode")))
    moved, old = hh.previous_addresses(rng, sk)
    return People(
        sk,
        group,
        forename,
        middle,
        surname,
        maiden,
        known,
        twin,
        jr_sr,
        numbers,
        relative,
        frailty,
        address,
        moved,
        old,
    )
