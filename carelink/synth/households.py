"""Household structure, ages, sexes and addresses of the synthetic population.

People live in private households (alone, couples, families, lone parents with children,
multi-generation households, house shares) or in care homes of 15-40 unrelated elderly residents
who share one address and postcode. Ages are set by role so that the population is skewed
elderly, as an integrated-care population is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carelink.synth import places

REFERENCE_DATE = np.datetime64("2026-11-01")

# Household kinds.
ALONE, COUPLE, FAMILY, LONE_PARENT, MULTIGEN, SHARED, CARE_HOME = range(7)
KIND_NAMES = ("alone", "couple", "family", "lone_parent", "multigen", "shared", "care_home")
PRIVATE_KIND_P = np.array([0.36, 0.30, 0.19, 0.07, 0.04, 0.04])
# Roles within a household.
HEAD, PARTNER, CHILD, GRANDPARENT, SHARER, RESIDENT = range(6)
#: Share of people who live in a care home.
CARE_HOME_SHARE = 0.025
#: Share of private households that moved in the last few years (old address still on some records).
MOVED_SHARE = 0.09
#: Share of care-home residents whose previous home address is still on some records.
CARE_HOME_MOVED_SHARE = 0.6


@dataclass
class Skeleton:
    """Households and their members, before names and NHS numbers.

    Person arrays are indexed by person (household members are contiguous); household arrays by
    household.
    """

    household: np.ndarray  # person -> household index
    position: np.ndarray  # person -> position within household
    role: np.ndarray
    kind: np.ndarray  # person -> household kind
    age: np.ndarray  # years at the reference date, float
    dob: np.ndarray  # datetime64[D]
    sex: np.ndarray  # 'M', 'F' or 'U'
    hh_kind: np.ndarray
    hh_size: np.ndarray
    hh_start: np.ndarray


def _care_home_sizes(rng: np.random.Generator, residents: int) -> np.ndarray:
    """Split ``residents`` into homes of 15-40 residents each."""
    if residents < 15:
        return np.zeros(0, dtype=np.int64)
    lo, hi = -(-residents // 40), residents // 15
    n = int(np.clip(round(residents / 27), lo, hi))
    sizes = 15 + rng.multinomial(residents - 15 * n, np.full(n, 1.0 / n))
    while sizes.max() > 40:  # move overflow to the smallest home
        big, small = int(sizes.argmax()), int(sizes.argmin())
        move = min(sizes[big] - 40, 40 - sizes[small])
        sizes[big] -= move
        sizes[small] += move
    return sizes.astype(np.int64)


def _private_households(rng: np.random.Generator, people: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw private household kinds and sizes that add up to exactly ``people``."""
    if people == 0:
        return np.zeros(0, dtype=np.int8), np.zeros(0, dtype=np.int64)
    k = people // 2 + 16
    kinds = rng.choice(6, size=k, p=PRIVATE_KIND_P).astype(np.int8)
    sizes = np.ones(k, dtype=np.int64)
    sizes[kinds == COUPLE] = 2
    for kind, base, extra, p in (
        (FAMILY, 2, [1, 2, 3, 4], [0.38, 0.42, 0.15, 0.05]),
        (LONE_PARENT, 1, [1, 2, 3], [0.55, 0.35, 0.10]),
        (MULTIGEN, 3, [1, 2, 3], [0.45, 0.40, 0.15]),
        (SHARED, 0, [2, 3, 4], [0.5, 0.35, 0.15]),
    ):
        mask = kinds == kind
        sizes[mask] = base + rng.choice(extra, size=int(mask.sum()), p=p)
    total = np.cumsum(sizes)
    m = int(np.searchsorted(total, people)) + 1
    kinds, sizes = kinds[:m], sizes[:m]
    sizes[-1] -= int(total[m - 1]) - people
    last = sizes[-1]
    if last == 1:
        kinds[-1] = ALONE
    elif last == 2 and kinds[-1] in (FAMILY, MULTIGEN):
        kinds[-1] = COUPLE
    return kinds, sizes


def _roles(kind: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Return each person's role from the household kind and their position in it."""
    conditions = [
        kind == CARE_HOME,
        kind == SHARED,
        (kind == MULTIGEN) & (pos == 0),
        (kind == MULTIGEN) & (pos == 1),
        (kind == MULTIGEN) & (pos == 2),
        kind == MULTIGEN,
        pos == 0,
        (pos == 1) & ((kind == COUPLE) | (kind == FAMILY)),
    ]
    choices = [RESIDENT, SHARER, GRANDPARENT, HEAD, PARTNER, CHILD, HEAD, PARTNER]
    return np.select(conditions, choices, default=CHILD).astype(np.int8)


def _head_ages(rng: np.random.Generator, hh_kind: np.ndarray) -> np.ndarray:
    """Draw the age of each household's head, by household kind."""
    n = len(hh_kind)
    elderly_alone = 65 + rng.gamma(2.0, 7.0, n)
    elderly_couple = 62 + rng.gamma(2.0, 6.5, n)
    ages = np.select(
        [
            hh_kind == ALONE,
            hh_kind == COUPLE,
            hh_kind == FAMILY,
            hh_kind == LONE_PARENT,
            hh_kind == MULTIGEN,
            hh_kind == SHARED,
        ],
        [
            np.where(rng.random(n) < 0.78, elderly_alone, 18 + rng.random(n) * 47),
            np.where(rng.random(n) < 0.72, elderly_couple, 20 + rng.random(n) * 42),
            rng.normal(40, 7, n).clip(22, 62),
            rng.normal(36, 8, n).clip(18, 60),
            rng.normal(44, 7, n).clip(28, 62),
            18 + rng.gamma(2.0, 4.0, n),
        ],
        default=86 + rng.normal(0, 6.5, n),
    )
    return ages


def build_skeleton(rng: np.random.Generator, people: int) -> Skeleton:
    """Lay out households and give every member a role, an age, a date of birth and a sex."""
    residents = int(round(people * CARE_HOME_SHARE))
    if people >= 60:
        residents = max(residents, 15)
    home_sizes = _care_home_sizes(rng, residents)
    private_kinds, private_sizes = _private_households(rng, people - int(home_sizes.sum()))
    hh_kind = np.concatenate([private_kinds, np.full(len(home_sizes), CARE_HOME, dtype=np.int8)])
    hh_size = np.concatenate([private_sizes, home_sizes])
    hh_start = np.concatenate([[0], np.cumsum(hh_size)[:-1]]).astype(np.int64)
    household = np.repeat(np.arange(len(hh_size)), hh_size)
    position = np.arange(people) - hh_start[household]
    kind = hh_kind[household]
    role = _roles(kind, position)

    head_age = _head_ages(rng, hh_kind)[household]
    n = people
    age = np.select(
        [role == HEAD, role == PARTNER, role == GRANDPARENT, role == SHARER, role == RESIDENT],
        [
            head_age,
            head_age + rng.normal(-1.5, 3.5, n),
            head_age + 20 + rng.random(n) * 16,
            18 + rng.gamma(2.0, 4.0, n),
            86 + rng.normal(0, 6.5, n),
        ],
        default=rng.random(n) * np.clip(head_age - 18, 0.5, 24),
    )
    age = np.where((role == PARTNER) | (role == SHARER), np.maximum(age, 18), age)
    age = np.where(role == RESIDENT, np.clip(age, 62, 104.9), np.clip(age, 0.01, 104.9))

    p_female = np.select(
        [role == RESIDENT, role == GRANDPARENT, (role == HEAD) & (age >= 65) & (kind == ALONE)],
        [0.70, 0.65, 0.62],
        default=0.5,
    )
    sex = np.where(rng.random(n) < p_female, "F", "M").astype("<U1")
    partner = role == PARTNER
    head_of = hh_start[household] + (kind == MULTIGEN)  # the head's person index
    opposite = np.where(sex[head_of] == "M", "F", "M")
    sex[partner] = np.where(rng.random(int(partner.sum())) < 0.97, opposite[partner], sex[head_of][partner])
    sex[rng.random(n) < 0.002] = "U"

    days = np.maximum((age * 365.2425).astype(np.int64), 1)
    dob = REFERENCE_DATE - days.astype("timedelta64[D]")
    return Skeleton(household, position, role, kind, age, dob, sex, hh_kind, hh_size, hh_start)


@dataclass
class Addresses:
    """Address parts as parallel object arrays (premise may be empty)."""

    premise: np.ndarray
    street: np.ndarray
    town: np.ndarray
    postcode: np.ndarray


def random_postcodes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw n valid-format postcodes ("LS6 1AB") and their post towns."""
    letters, towns, top, p = places.area_arrays()
    area = rng.choice(len(letters), size=n, p=p)
    # Low-numbered districts are denser; skew the district draw towards them.
    district = 1 + (rng.random(n) ** 1.3 * top[area]).astype(np.int64)
    sector = rng.integers(0, 10, n)
    units = np.array(list(places.UNIT_LETTERS), dtype=object)
    u1, u2 = units[rng.integers(0, 20, n)], units[rng.integers(0, 20, n)]
    codes = [f"{a}{d} {s}{x}{y}" for a, d, s, x, y in zip(letters[area], district, sector, u1, u2, strict=True)]
    return np.array(codes, dtype=object), towns[area]


def random_streets(rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw n street names such as "Church Lane"."""
    stems = np.array(places.STREET_STEMS, dtype=object)
    types = np.array(places.STREET_TYPES, dtype=object)
    tp = places.STREET_TYPE_WEIGHTS / places.STREET_TYPE_WEIGHTS.sum()
    s = stems[rng.integers(0, len(stems), n)]
    t = types[rng.choice(len(types), size=n, p=tp)]
    return np.array([f"{a} {b}" for a, b in zip(s, t, strict=True)], dtype=object)


def random_addresses(rng: np.random.Generator, n: int) -> Addresses:
    """Draw n unrelated private addresses (used for people's previous homes)."""
    postcode, town = random_postcodes(rng, n)
    street = random_streets(rng, n)
    number = rng.integers(1, 160, n)
    flat = rng.random(n) < 0.1
    flat_no = rng.integers(1, 30, n)
    premise = np.array([f"Flat {f}" if is_flat else "" for f, is_flat in zip(flat_no, flat, strict=True)], dtype=object)
    street = np.array([f"{k} {s}" for k, s in zip(number, street, strict=True)], dtype=object)
    return Addresses(premise, street, town, postcode)


def household_addresses(rng: np.random.Generator, hh_kind: np.ndarray) -> Addresses:
    """Give every household an address; neighbours share postcode units and streets."""
    n = len(hh_kind)
    home = hh_kind == CARE_HOME
    private = np.flatnonzero(~home)
    n_units = max(1, round(len(private) / 9))
    unit_postcode, unit_town = random_postcodes(rng, n_units)
    unit_street = random_streets(rng, n_units)
    unit_flats = rng.random(n_units) < 0.12
    unit_start = rng.integers(1, 40, n_units)

    unit = rng.integers(0, n_units, len(private))
    order = np.argsort(unit, kind="stable")
    sorted_unit = unit[order]
    first = np.searchsorted(sorted_unit, sorted_unit, side="left")
    rank = np.empty(len(private), dtype=np.int64)
    rank[order] = np.arange(len(private)) - first
    flats = unit_flats[unit]
    number = np.where(flats, unit_start[unit], unit_start[unit] + 2 * rank)

    premise = np.full(n, "", dtype=object)
    street = np.empty(n, dtype=object)
    town = np.empty(n, dtype=object)
    postcode = np.empty(n, dtype=object)
    premise[private] = [f"Flat {r + 1}" if f else "" for r, f in zip(rank, flats, strict=True)]
    street[private] = [f"{k} {s}" for k, s in zip(number, unit_street[unit], strict=True)]
    town[private] = unit_town[unit]
    postcode[private] = unit_postcode[unit]

    homes = np.flatnonzero(home)
    if len(homes):
        stems = np.array(places.CARE_HOME_STEMS, dtype=object)
        kinds = np.array(places.CARE_HOME_KINDS, dtype=object)
        names = [
            f"{a} {b}"
            for a, b in zip(
                stems[rng.integers(0, len(stems), len(homes))],
                kinds[rng.integers(0, len(kinds), len(homes))],
                strict=True,
            )
        ]
        premise[homes] = names
        home_pc, home_town = random_postcodes(rng, len(homes))
        home_streets = random_streets(rng, len(homes))
        street[homes] = [f"{k} {s}" for k, s in zip(rng.integers(1, 200, len(homes)), home_streets, strict=True)]
        town[homes] = home_town
        postcode[homes] = home_pc
    return Addresses(premise, street, town, postcode)


def previous_addresses(rng: np.random.Generator, sk: Skeleton) -> tuple[np.ndarray, Addresses]:
    """Pick who moved recently and give them a previous address.

    Whole private households move together; care-home residents each had their own home.

    Returns:
        (moved mask per person, previous addresses per person; empty strings where not moved).
    """
    n = len(sk.household)
    hh_moved = np.flatnonzero((rng.random(len(sk.hh_kind)) < MOVED_SHARE) & (sk.hh_kind != CARE_HOME))
    resident_moved = np.flatnonzero((sk.role == RESIDENT) & (rng.random(n) < CARE_HOME_MOVED_SHARE))
    old_hh = random_addresses(rng, len(hh_moved))
    old_res = random_addresses(rng, len(resident_moved))
    slot = np.full(len(sk.hh_kind), -1, dtype=np.int64)
    slot[hh_moved] = np.arange(len(hh_moved))
    person_slot = slot[sk.household]
    movers = np.flatnonzero(person_slot >= 0)
    moved = np.zeros(n, dtype=bool)
    moved[movers] = True
    moved[resident_moved] = True
    out = Addresses(*(np.full(n, "", dtype=object) for _ in range(4)))
    for field in ("premise", "street", "town", "postcode"):
        mine = getattr(out, field)
        mine[movers] = getattr(old_hh, field)[person_slot[movers]]
        mine[resident_moved] = getattr(old_res, field)
    return moved, out
