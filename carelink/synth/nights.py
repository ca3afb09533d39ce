"""A sequence of nightly deliveries: the baseline partnership carried forward one day at a time.

Night 1 is exactly what ``generate_partnership`` writes. Each later night starts from the previous
night's tables and, per source and relative to the previous night's record count, applies about

* ``DELETE_RATE`` (0.2 %) deleted records: people who died (frailer people likelier) or left the area
  lose all their records in that source; a source spends most of its quota on people already gone
  from another source, so departures spread across the sources over the following nights; about
  ``MERGE_SHARE`` of deletions are a duplicate registration merged away;
* ``UPDATE_RATE`` (0.5 %) updated records, keeping their record id: moved house (the whole household
  moves; the record gets the new address, the person's other records now show a previous address
  and are likelier to be updated on later nights), NHS number filled in or corrected, surname
  changed on marriage, a name or postcode typo corrected, a date of birth corrected;
* ``NEW_RATE`` (1 %) new records with new ids: mostly people arriving (births into existing
  households, households moving into the area), topped up with new registrations of people already
  known in other sources and a few second registrations of people the source already holds.

Activity rows of deleted records vanish; surviving records get a day's worth of new activity dated
the day before the delivery, and new records a first contact or two. Truth labels describe each
record as it now stands (a record left with a previous address is labelled ``moved``), plus an
``updated_<kind>`` label (see ``UPDATE_CASES``) on the records whose content changed that night.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import polars as pl

from carelink.synth import consent, formats, reference
from carelink.synth import households as hh
from carelink.synth.errors import RecordSet, build_records
from carelink.synth.extracts import ALL_CASES, UPDATE_CASES, Extract, activity_frame, assemble
from carelink.synth.nhs import allocate_more
from carelink.synth.partnership import SynthSummary, World, build_baseline, mark_consent_conflicts, write_world
from carelink.synth.people import People, _draw_forenames, _gendered, build_people
from carelink.synth.sources import SOURCES, SourceSpec, coverage_probability

log = logging.getLogger(__name__)

NEW_RATE = 0.01
UPDATE_RATE = 0.005
DELETE_RATE = 0.002
#: People arriving per person present, per night (they supply most of the new records).
ARRIVAL_RATE = 0.0075
#: Share of arrivals who are babies born into existing households.
BIRTH_SHARE = 0.15
#: Share of top-up new records that are a second registration in a source that already holds the person.
DUPLICATE_SHARE = 0.1
#: Share of deletions that merge away a duplicate registration.
MERGE_SHARE = 0.1
#: Share of person departures that are deaths (the rest left the area).
DEATH_SHARE = 0.6
#: Share of a source's person deletions spent first on people already gone from another source.
LINGER_SHARE = 0.7
#: Update kinds (labelled ``updated_<kind>``) and their shares of a night's updates where records allow.
UPDATE_KINDS: tuple[str, ...] = ("moved", "nhs", "surname", "typo", "dob")
KIND_SHARES = (0.4, 0.2, 0.15, 0.15, 0.1)
#: How much likelier a record is to be updated when it still shows what its person changed during the nights.
CATCH_UP_WEIGHT = 20.0
#: Mean first-contact activity rows per new record (scaled by frailty as the baseline is).
NEW_ACTIVITY_MEAN = 1.0
ACTIVITY_DAYS = 365 * 3 + 1
NIGHT_SPAWN_KEY = 1_000
NEW_REASONS = ("birth", "moved_in", "registration", "duplicate")
DELETE_REASONS = ("died", "left", "merged")
_NHS_CASES = ("nhs_missing", "nhs_mistyped", "placeholder_nhs", "relative_nhs")
_DOB_CASES = ("dob_swap", "dob_typo", "default_dob", "dob_missing")
_LABELS = ALL_CASES + UPDATE_CASES
_EMPTY = np.zeros(0, dtype=np.int64)


# ---------------------------------------------------------------------------------------------- rows


def _full(ex: Extract) -> Extract:
    """Give ``ex`` every label (missing ones all False) and clear last night's update labels."""
    n = len(ex.pid)
    for label in _LABELS:
        if label not in ex.cases or label in UPDATE_CASES:
            ex.cases[label] = np.zeros(n, dtype=bool)
    return ex


def _take(ex: Extract, idx: np.ndarray) -> Extract:
    """Return the rows ``idx`` (indices or a mask) of an extract."""
    if idx.dtype == bool:
        idx = np.flatnonzero(idx)
    return Extract(
        spec=ex.spec,
        frame=ex.frame.select(pl.all().gather(idx)),
        pid=ex.pid[idx],
        record_id=ex.record_id[idx],
        cases={k: v[idx] for k, v in ex.cases.items()},
        consent=None if ex.consent is None else ex.consent[idx],
        raw={k: v[idx] for k, v in ex.raw.items()},
    )


def _concat(parts: list[Extract]) -> Extract:
    """Stack extracts of one source (same labels) and sort the rows by record id."""
    first = parts[0]
    frame = pl.concat([p.frame for p in parts], how="vertical")
    order = frame[first.spec.id_column].arg_sort().to_numpy()
    both = Extract(
        spec=first.spec,
        frame=frame,
        pid=np.concatenate([p.pid for p in parts]),
        record_id=np.concatenate([p.record_id for p in parts]),
        cases={k: np.concatenate([p.cases[k] for p in parts]) for k in first.cases},
        consent=None if first.consent is None else np.concatenate([p.consent for p in parts]),
        raw={k: np.concatenate([p.raw[k] for p in parts]) for k in first.raw},
    )
    return _take(both, order)


def _blank_to_null(values: pl.Series) -> pl.Series:
    if values.dtype != pl.Utf8:
        return values
    return pl.select(pl.when(values == "").then(None).otherwise(values).alias(values.name)).to_series()


def _scatter(frame: pl.DataFrame, column: str, idx: np.ndarray, values: pl.Series) -> pl.DataFrame:
    """Return ``frame`` with ``column`` set to ``values`` at rows ``idx`` (blank strings become null)."""
    if not len(idx):
        return frame
    series = frame[column].clone()
    series.scatter(idx, _blank_to_null(values).cast(series.dtype))
    return frame.with_columns(series)


def _recordset(spec: SourceSpec, people: People, pid: np.ndarray, **values: np.ndarray) -> RecordSet:
    """A RecordSet for re-formatting some fields of existing records (other fields blank)."""
    n = len(pid)
    blank = np.full(n, "", dtype=object)
    return RecordSet(
        spec=spec,
        pid=pid,
        given=values.get("given", blank),
        family=values.get("family", blank),
        dob=values.get("dob", people.skeleton.dob[pid]),
        sex=people.skeleton.sex[pid],
        nhs=values.get("nhs", blank),
        premise=values.get("premise", blank),
        street=values.get("street", blank),
        town=values.get("town", blank),
        postcode=values.get("postcode", blank),
        cases={},
    )


# -------------------------------------------------------------------------------------------- people


def _concat_people(a: People, b: People) -> People:
    """Append people ``b`` (indices already global) to ``a``."""
    sa, sb = a.skeleton, b.skeleton
    skeleton = hh.Skeleton(*(np.concatenate([getattr(sa, f), getattr(sb, f)]) for f in sa.__dataclass_fields__))

    def addresses(x: hh.Addresses, y: hh.Addresses) -> hh.Addresses:
        return hh.Addresses(*(np.concatenate([getattr(x, f), getattr(y, f)]) for f in x.__dataclass_fields__))

    fields = {}
    for f in a.__dataclass_fields__:
        if f == "skeleton":
            fields[f] = skeleton
        elif f in ("address", "old_address"):
            fields[f] = addresses(getattr(a, f), getattr(b, f))
        else:
            fields[f] = np.concatenate([getattr(a, f), getattr(b, f)])
    return People(**fields)


def _households_moving_in(rng: np.random.Generator, world: World, k: int) -> People | None:
    """About ``k`` people in private households new to the area, with global indices and fresh NHS numbers."""
    batch = build_people(rng, k)
    sk = batch.skeleton
    n = int((sk.role != hh.RESIDENT).sum())  # care homes come last; arrivals live in private homes
    n_hh = int((sk.hh_kind != hh.CARE_HOME).sum())
    if n == 0:
        return None
    base, base_hh = world.people.n, len(world.people.skeleton.hh_kind)
    person = {f: getattr(sk, f)[:n] for f in ("household", "position", "role", "kind", "age", "dob", "sex")}
    person["household"] = person["household"] + base_hh
    skeleton = hh.Skeleton(
        **person, hh_kind=sk.hh_kind[:n_hh], hh_size=sk.hh_size[:n_hh], hh_start=sk.hh_start[:n_hh] + base
    )
    relative = batch.relative[:n]
    twins = np.flatnonzero(batch.twin[:n] & (relative == np.arange(n) + 1))
    numbers = allocate_more(rng, world.nhs_used, n, np.stack([twins, twins + 1], axis=1))

    def cut(x: hh.Addresses) -> hh.Addresses:
        return hh.Addresses(*(getattr(x, f)[:n] for f in x.__dataclass_fields__))

    return People(
        skeleton=skeleton,
        group=batch.group[:n],
        forename=batch.forename[:n],
        middle=batch.middle[:n],
        surname=batch.surname[:n],
        maiden=batch.maiden[:n],
        known_by_middle=batch.known_by_middle[:n],
        twin=batch.twin[:n],
        jr_sr=batch.jr_sr[:n],
        nhs=numbers,
        relative=np.where(relative >= 0, relative + base, -1),
        frailty=batch.frailty[:n],
        address=cut(batch.address),
        moved=batch.moved[:n],
        old_address=cut(batch.old_address),
    )


def _births(rng: np.random.Generator, world: World, k: int) -> People | None:
    """Up to ``k`` babies born in the last four weeks to mothers in existing family households."""
    people, sk = world.people, world.people.skeleton
    mother_ok = (world.gone == 0) & (sk.sex == "F") & (sk.age >= 18) & (sk.age <= 45)
    mother_ok &= np.isin(sk.role, (hh.HEAD, hh.PARTNER))
    mother_ok &= np.isin(sk.kind, (hh.COUPLE, hh.FAMILY, hh.LONE_PARENT, hh.MULTIGEN))
    eligible = np.flatnonzero(mother_ok)
    k = min(k, len(eligible))
    if k == 0:
        return None
    mothers = np.sort(rng.choice(eligible, size=k, replace=False))
    other = np.clip(np.where(sk.role[mothers] == hh.HEAD, mothers + 1, mothers - 1), 0, people.n - 1)
    has_other = (sk.household[other] == sk.household[mothers]) & np.isin(sk.role[other], (hh.HEAD, hh.PARTNER))
    has_other &= (other != mothers) & (world.gone[other] == 0)
    dob = world.date - rng.integers(1, 29, k).astype("timedelta64[D]")
    sex = np.where(rng.random(k) < 0.5, "F", "M").astype("<U1")
    group = people.group[mothers]
    forename = _draw_forenames(rng, group, sex, dob)
    middle = _draw_forenames(rng, group, sex, dob)
    has_middle = rng.random(k) < np.where(group == 0, 0.6, 0.45)
    middle = np.where(has_middle & (middle != forename), middle, "").astype(object)
    family = np.where(has_other & (rng.random(k) < 0.9), people.surname[other], people.surname[mothers])
    surname = _gendered(rng, family.astype(object), sex)
    age = np.maximum((hh.REFERENCE_DATE - dob).astype(np.int64) / 365.2425, 0.001)
    frailty = np.clip(0.8 / (1 + np.exp(-(age - 80) / 6)) + rng.normal(0, 0.08, k), 0, 1)
    empty_hh = np.zeros(0, dtype=np.int64)
    skeleton = hh.Skeleton(
        household=sk.household[mothers],
        position=np.full(k, -1, dtype=sk.position.dtype),
        role=np.full(k, hh.CHILD, dtype=np.int8),
        kind=sk.kind[mothers],
        age=age,
        dob=dob,
        sex=sex,
        hh_kind=empty_hh.astype(np.int8),
        hh_size=empty_hh,
        hh_start=empty_hh,
    )
    blank = np.full(k, "", dtype=object)
    return People(
        skeleton=skeleton,
        group=group,
        forename=forename,
        middle=middle,
        surname=surname,
        maiden=blank.copy(),
        known_by_middle=np.zeros(k, dtype=bool),
        twin=np.zeros(k, dtype=bool),
        jr_sr=np.zeros(k, dtype=bool),
        nhs=allocate_more(rng, world.nhs_used, k, np.zeros((0, 2), dtype=np.int64)),
        relative=mothers.astype(np.int64),
        frailty=frailty,
        address=hh.Addresses(*(getattr(people.address, f)[mothers] for f in hh.Addresses.__dataclass_fields__)),
        moved=np.zeros(k, dtype=bool),
        old_address=hh.Addresses(blank.copy(), blank.copy(), blank.copy(), blank.copy()),
    )


# --------------------------------------------------------------------------------------------- night


class _Night:
    """Applies one night's departures, updates, arrivals and new records to a world, in place."""

    def __init__(self, world: World, night: int, seed: int) -> None:
        self.world = world
        self.night = night
        world.date = world.date + np.timedelta64(1, "D")
        world.extracts = [_full(ex) for ex in world.extracts]
        self.previous = [len(ex.pid) for ex in world.extracts]
        seq = np.random.SeedSequence(seed, spawn_key=(NIGHT_SPAWN_KEY, night))
        streams = [np.random.Generator(np.random.PCG64(s)) for s in seq.spawn(1 + 4 * len(SOURCES))]
        self.rng_people = streams[0]
        purposes = ("delete", "update", "new", "activity")
        self.rng = [dict(zip(purposes, streams[1 + 4 * i : 5 + 4 * i], strict=True)) for i in range(len(SOURCES))]
        self.stats: dict[str, dict] = {
            spec.name: {
                "new_by_reason": dict.fromkeys(NEW_REASONS, 0),
                "updated_by_kind": dict.fromkeys(UPDATE_KINDS, 0),
                "deleted_by_reason": dict.fromkeys(DELETE_REASONS, 0),
                "activity_removed": 0,
                "activity_added": 0,
            }
            for spec in SOURCES
        }
        self.people_stats = {"born": 0, "moved_in": 0, "died": 0, "left": 0, "moved_house": 0, "married": 0}

    # -- departures ------------------------------------------------------------------------------

    def delete(self, i: int) -> None:
        """Delete about DELETE_RATE of source i's records: departures and merged duplicates."""
        w, rng = self.world, self.rng[i]["delete"]
        ex = w.extracts[i]
        pid = ex.pid
        quota = int(rng.binomial(self.previous[i], DELETE_RATE))
        alive = w.gone[pid] == 0
        dup_rows = np.flatnonzero(ex.cases["duplicate"] & alive)
        merges = min(int(rng.binomial(quota, MERGE_SHARE)), len(dup_rows))
        merge_rows = np.sort(rng.choice(dup_rows, size=merges, replace=False)) if merges else _EMPTY
        rest = quota - merges
        per_person = np.bincount(pid, minlength=w.people.n)
        lingering = np.flatnonzero((per_person > 0) & (w.gone > 0))
        budget = int(round(rest * LINGER_SHARE))
        taken = _EMPTY
        if budget and len(lingering):
            order = rng.permutation(lingering)
            counts = per_person[order]
            starts = np.cumsum(counts) - counts
            taken = order[: int(np.searchsorted(starts, budget, side="left"))]
        rest -= int(per_person[taken].sum())
        holder = (per_person > 0) & (w.gone == 0)
        holder[pid[merge_rows]] = False
        candidates = np.flatnonzero(holder)
        leaving = min(max(rest, 0), len(candidates))
        dead = left = _EMPTY
        if leaving:
            deaths = int(rng.binomial(leaving, DEATH_SHARE))
            weight = w.people.frailty[candidates] ** 3 + 0.001
            dead = np.sort(rng.choice(candidates, size=deaths, replace=False, p=weight / weight.sum()))
            holder[dead] = False
            left = np.sort(rng.choice(np.flatnonzero(holder), size=leaving - deaths, replace=False))
            w.gone[dead] = 1
            w.gone[left] = 2
            self.people_stats["died"] += len(dead)
            self.people_stats["left"] += len(left)
        drop = np.isin(pid, np.concatenate([taken, dead, left]))
        merged = np.zeros(len(pid), dtype=bool)
        merged[merge_rows] = True
        stats = self.stats[ex.spec.name]
        stats["deleted_by_reason"]["died"] = int((drop & (w.gone[pid] == 1)).sum())
        stats["deleted_by_reason"]["left"] = int((drop & (w.gone[pid] == 2)).sum())
        stats["deleted_by_reason"]["merged"] = int(merged.sum())
        drop |= merged
        if drop.any():
            gone_ids = pl.Series(ex.record_id[drop], dtype=pl.Utf8)
            act = w.activity[i]
            kept = act.filter(~pl.col(ex.spec.id_column).is_in(gone_ids.implode()))
            stats["activity_removed"] = len(act) - len(kept)
            w.activity[i] = kept
            w.extracts[i] = _take(ex, ~drop)

    # -- person-level events ---------------------------------------------------------------------

    def _label_everywhere(self, persons: np.ndarray, label: str) -> None:
        for ex in self.world.extracts:
            ex.cases[label] |= np.isin(ex.pid, persons)

    def move_households(self, rng: np.random.Generator, persons: np.ndarray) -> None:
        """Move each person's household (members still at the same address) to a new address."""
        people = self.world.people
        addr, old = people.address, people.old_address
        household = people.skeleton.household
        order = np.argsort(household, kind="stable")
        sorted_hh = household[order]
        care = people.care_home
        done = np.zeros(people.n, dtype=bool)
        groups = []
        for p in persons:
            if done[p]:
                continue
            lo, hi = np.searchsorted(sorted_hh, household[p], "left"), np.searchsorted(sorted_hh, household[p], "right")
            members = order[lo:hi]
            same = (addr.street[members] == addr.street[p]) & (addr.postcode[members] == addr.postcode[p])
            members = members[same & (self.world.gone[members] == 0) & ~care[members] & ~done[members]]
            members = np.union1d(members, [p]).astype(np.int64)
            done[members] = True
            groups.append(members)
        if not groups:
            return
        new = hh.random_addresses(rng, len(groups))
        for g, members in enumerate(groups):
            for f in hh.Addresses.__dataclass_fields__:
                getattr(old, f)[members] = getattr(addr, f)[members]
                getattr(addr, f)[members] = getattr(new, f)[g]
        movers = np.flatnonzero(done)
        people.moved[movers] = True
        self.world.moved_here[movers] = True
        self.people_stats["moved_house"] += len(movers)
        self._label_everywhere(movers, "moved")

    def marry(self, rng: np.random.Generator, persons: np.ndarray) -> None:
        """Give each person a new surname: their partner's where it differs, else one of their tradition."""
        people = self.world.people
        sk = people.skeleton
        pools = reference.surname_pools()
        for p in persons:
            new = ""
            for q in (p - 1, p + 1) if sk.role[p] in (hh.HEAD, hh.PARTNER) else ():
                if (
                    0 <= q < people.n
                    and sk.household[q] == sk.household[p]
                    and sk.role[q] in (hh.HEAD, hh.PARTNER)
                    and people.surname[q] != people.surname[p]
                ):
                    new = people.surname[q]
                    break
            pool = pools[reference.GROUPS[int(people.group[p])]]
            while not new or new == people.surname[p]:
                new = pool.names[rng.choice(len(pool.names), p=pool.probabilities)]
            people.maiden[p] = people.surname[p]
            people.surname[p] = new
        self.world.married_here[persons] = True
        self.people_stats["married"] += len(persons)
        self._label_everywhere(persons, "marriage")

    # -- updates ---------------------------------------------------------------------------------

    def _choose(self, rng: np.random.Generator, ex: Extract, quota: int) -> tuple[np.ndarray, np.ndarray]:
        """Pick about ``quota`` records to update and a kind for each; return (rows ascending, kinds).

        Each kind gets its share of the quota among the records it applies to; a shortfall goes to
        moves. Records still showing an address or surname their person changed during the nights are
        CATCH_UP_WEIGHT times likelier to be picked for the matching kind.
        """
        w, people = self.world, self.world.people
        c, p = ex.cases, ex.pid
        alive = w.gone[p] == 0
        swap = c["swap_names"]
        care = people.care_home[p]
        age = people.skeleton.age[p]
        marriageable = (people.skeleton.sex[p] == "F") & (age >= 18) & (age <= 60) & ~care
        marriageable &= (people.maiden[p] == "") & ~w.married_here[p]
        behind_address = c["moved"] & w.moved_here[p]
        behind_surname = c["marriage"] & w.married_here[p]
        applies = {
            "moved": ~care | c["moved"],
            "nhs": np.logical_or.reduce([c[k] for k in _NHS_CASES]),
            "surname": ~swap & (c["marriage"] | marriageable),
            "typo": ((c["typo_given"] | c["typo_family"]) & ~swap) | c["postcode_typo"],
            "dob": np.logical_or.reduce([c[k] for k in _DOB_CASES]),
        }
        weight = {
            "moved": np.where(behind_address, CATCH_UP_WEIGHT, 1.0),
            "surname": np.where(behind_surname, CATCH_UP_WEIGHT, 1.0),
        }
        targets = dict(zip(UPDATE_KINDS, rng.multinomial(quota, KIND_SHARES).tolist(), strict=True))
        taken = np.zeros(len(p), dtype=bool)
        kinds = np.full(len(p), -1, dtype=np.int64)
        shortfall = 0
        for kind in ("nhs", "surname", "typo", "dob", "moved"):
            want = targets[kind] + (shortfall if kind == "moved" else 0)
            pool = np.flatnonzero(applies[kind] & alive & ~taken)
            k = min(want, len(pool))
            shortfall += want - k
            if k == 0:
                continue
            wt = weight.get(kind, np.ones(len(p)))[pool]
            pick = rng.choice(pool, size=k, replace=False, p=wt / wt.sum())
            taken[pick] = True
            kinds[pick] = UPDATE_KINDS.index(kind)
        rows = np.flatnonzero(taken)
        return rows, kinds[rows]

    def update(self, i: int) -> None:
        """Update about UPDATE_RATE of source i's records in place (record ids kept)."""
        w, rng = self.world, self.rng[i]["update"]
        ex = w.extracts[i]
        spec, people, cols = ex.spec, w.people, ex.spec.columns
        rows, kinds = self._choose(rng, ex, int(rng.binomial(self.previous[i], UPDATE_RATE)))
        if not len(rows):
            return
        c, raw = ex.cases, ex.raw
        is_kind = {kind: kinds == k for k, kind in enumerate(UPDATE_KINDS)}
        # Person-level events first: households moving house, people marrying.
        moving = rows[is_kind["moved"] & ~c["moved"][rows]]
        self.move_households(rng, np.unique(ex.pid[moving]))
        marrying = rows[is_kind["surname"] & ~c["marriage"][rows]]
        self.marry(rng, np.unique(ex.pid[marrying]))

        pid = ex.pid[rows]
        swap = c["swap_names"][rows]
        fix = {
            "address": is_kind["moved"],
            "postcode": is_kind["moved"] | (is_kind["typo"] & c["postcode_typo"][rows]),
            "nhs": is_kind["nhs"],
            "family": is_kind["surname"] | (is_kind["typo"] & c["typo_family"][rows] & ~swap),
            "given": is_kind["typo"] & c["typo_given"][rows] & ~swap,
            "dob": is_kind["dob"],
        }
        # Re-format the corrected fields in the source's own style, one call per kind of field.
        addr = people.address
        moved = is_kind["moved"]
        blank = np.full(len(rows), "", dtype=object)
        address_parts = {
            f: np.where(moved, getattr(addr, f)[pid], blank if f != "postcode" else raw["postcode"][rows])
            for f in hh.Addresses.__dataclass_fields__
        }
        address, postcode = formats.format_addresses(rng, _recordset(spec, people, pid, **address_parts))
        family_now = np.where(is_kind["surname"], people.surname[pid], raw["family"][rows])
        given, family, titled = formats.format_names(
            rng, _recordset(spec, people, pid, given=raw["given"][rows], family=family_now)
        )
        nhs = formats.format_nhs(rng, _recordset(spec, people, pid, nhs=people.nhs[pid].astype(str).astype(object)))
        dob = formats.format_dates(people.skeleton.dob[pid], spec.date_format)
        before = ex.frame.select(pl.all().gather(rows))
        frame = ex.frame
        for field, column, values in (
            ("address", "address", address),
            ("postcode", "postcode", postcode),
            ("nhs", "nhs_number", nhs),
            ("family", "family_name", family),
            ("given", "given_name", given),
            ("dob", "date_of_birth", dob),
        ):
            mask = fix[field]
            frame = _scatter(frame, cols[column], rows[mask], values.filter(pl.Series(mask)))

        # The records now say what the person's details are; relabel what was fixed.
        r = rows[fix["postcode"]]
        raw["postcode"][r] = address_parts["postcode"][fix["postcode"]]
        for label in ("postcode_typo", "postcode_missing"):
            c[label][r] = False
        c["moved"][rows[moved]] = False
        for label in _NHS_CASES:
            c[label][rows[fix["nhs"]]] = False
        r = rows[is_kind["surname"]]
        raw["family"][r] = people.surname[ex.pid[r]]
        for label in ("marriage", "surname_part", "typo_family"):
            c[label][r] = False
        c["typo_family"][rows[fix["family"]]] = False
        c["typo_given"][rows[fix["given"]]] = False
        c["title"][rows[fix["given"]]] = titled[fix["given"]]
        for label in _DOB_CASES:
            c[label][rows[fix["dob"]]] = False

        after = frame.select(pl.all().gather(rows))
        changed = np.zeros(len(rows), dtype=bool)
        for col in frame.columns:
            changed |= before[col].ne_missing(after[col]).to_numpy()
        stats = self.stats[spec.name]["updated_by_kind"]
        for kind in UPDATE_KINDS:
            hit = rows[is_kind[kind] & changed]
            c[f"updated_{kind}"][hit] = True
            stats[kind] = len(hit)
        ex.frame = frame

    # -- arrivals and new records ----------------------------------------------------------------

    def arrive(self) -> dict[str, np.ndarray]:
        """Add tonight's births and households moving in; return the new people each source holds."""
        w, rng = self.world, self.rng_people
        base = w.people.n
        arrivals = int(rng.binomial(int((w.gone == 0).sum()), ARRIVAL_RATE))
        births = int(rng.binomial(arrivals, BIRTH_SHARE))
        babies = _births(rng, w, births) if births else None
        if babies is not None:
            w.people = _concat_people(w.people, babies)
        incomers = _households_moving_in(rng, w, arrivals - births) if arrivals > births else None
        if incomers is not None:
            w.people = _concat_people(w.people, incomers)
        n_new = w.people.n - base
        self.people_stats["born"] = 0 if babies is None else babies.n
        self.people_stats["moved_in"] = 0 if incomers is None else incomers.n
        self.arrival_kind = np.zeros(w.people.n, dtype=np.int8)  # 1 born, 2 moved in
        self.arrival_kind[base : base + self.people_stats["born"]] = 1
        self.arrival_kind[base + self.people_stats["born"] :] = 2
        extra = consent.person_consent(rng, n_new)
        w.consent = consent.PersonConsent(
            *(np.concatenate([getattr(w.consent, f), getattr(extra, f)]) for f in ("ndop", "type1", "stance"))
        )
        w.gone = np.concatenate([w.gone, np.zeros(n_new, dtype=np.int8)])
        w.moved_here = np.concatenate([w.moved_here, np.zeros(n_new, dtype=bool)])
        w.married_here = np.concatenate([w.married_here, np.zeros(n_new, dtype=bool)])
        new = np.arange(base, w.people.n)
        people = w.people
        chosen = np.zeros((len(SOURCES), n_new), dtype=bool)
        for i, spec in enumerate(SOURCES):
            p = coverage_probability(spec, people.skeleton.age[new], people.frailty[new], people.care_home[new])
            chosen[i] = rng.random(n_new) < p
        chosen[0, ~chosen.any(axis=0)] = True
        return {spec.name: new[chosen[i]] for i, spec in enumerate(SOURCES)}

    def _fresh_ids(self, rng: np.random.Generator, i: int, n: int) -> np.ndarray:
        spec, used = SOURCES[i], self.world.used_ids[i]
        out: list[str] = []
        while len(out) < n:
            k = 2 * (n - len(out)) + 8
            if spec.id_prefix:
                values = rng.integers(0, 10**spec.id_digits, k)
                ids = [spec.id_prefix + str(v).zfill(spec.id_digits) for v in values.tolist()]
            else:
                values = 10 ** (spec.id_digits - 1) + rng.integers(0, 9 * 10 ** (spec.id_digits - 1), k)
                ids = [str(v) for v in values.tolist()]
            for rid in ids:
                if rid not in used:
                    used.add(rid)
                    out.append(rid)
                    if len(out) == n:
                        break
        return np.array(out, dtype=object)

    def add(self, i: int, arrived: np.ndarray) -> np.ndarray:
        """Add source i's new records: arrivals, topped up to about NEW_RATE; return the new record ids."""
        w, rng = self.world, self.rng[i]["new"]
        ex, spec, people = w.extracts[i], SOURCES[i], w.people
        quota = int(rng.binomial(self.previous[i], NEW_RATE))
        top_up = max(quota - len(arrived), 0)
        k_dup = int(rng.binomial(top_up, DUPLICATE_SHARE))
        per_person = np.bincount(ex.pid, minlength=people.n)
        here = (w.gone == 0) & (self.arrival_kind == 0)
        candidates = np.flatnonzero(here & (per_person == 0))
        k_reg = min(top_up - k_dup, len(candidates))
        regs = _EMPTY
        if k_reg:
            p = coverage_probability(
                spec, people.skeleton.age[candidates], people.frailty[candidates], people.care_home[candidates]
            )
            regs = rng.choice(candidates, size=k_reg, replace=False, p=p / p.sum())
        holders = np.flatnonzero(here & (per_person > 0))
        k_dup = min(k_dup, len(holders))
        dups = np.sort(rng.choice(holders, size=k_dup, replace=False)) if k_dup else _EMPTY
        first = np.sort(np.concatenate([arrived, regs])).astype(np.int64)
        members = np.concatenate([first, dups])
        if not len(members):
            return np.zeros(0, dtype=object)
        records = build_records(rng, spec, people, members)
        records.cases["duplicate"][len(first) : len(members)] = True  # second registrations in this source
        new = _full(assemble(rng, records, people, w.consent))
        ids = self._fresh_ids(rng, i, len(new.pid))
        new.record_id = ids
        new.frame = new.frame.with_columns(pl.Series(spec.id_column, ids, dtype=pl.Utf8))
        kind = self.arrival_kind[new.pid]
        reasons = self.stats[spec.name]["new_by_reason"]
        dup = new.cases["duplicate"]
        reasons["duplicate"] = int(dup.sum())
        reasons["birth"] = int((~dup & (kind == 1)).sum())
        reasons["moved_in"] = int((~dup & (kind == 2)).sum())
        reasons["registration"] = int((~dup & (kind == 0)).sum())
        w.extracts[i] = _concat([ex, new])
        return ids

    def activity(self, i: int, new_ids: np.ndarray) -> None:
        """Add a day's activity for the records still held, and first contacts for new records."""
        w, rng = self.world, self.rng[i]["activity"]
        ex, spec = w.extracts[i], SOURCES[i]
        ids = pl.Series(ex.record_id, dtype=pl.Utf8)
        is_new = ids.is_in(pl.Series(new_ids, dtype=pl.Utf8).implode()).to_numpy()
        factor = 0.3 + 1.7 * w.people.frailty[ex.pid]
        mean = np.where(is_new, NEW_ACTIVITY_MEAN * factor, spec.activity_mean * factor / ACTIVITY_DAYS)
        counts = np.where(w.gone[ex.pid] == 0, np.minimum(rng.poisson(mean), 10), 0)
        row_of = np.repeat(np.arange(len(ex.pid)), counts)
        p = np.array(spec.activity_weights) / sum(spec.activity_weights)
        kinds = np.array(spec.activity_types, dtype=object)[rng.choice(len(p), size=len(row_of), p=p)]
        day = np.full(len(row_of), w.date - np.timedelta64(1, "D"))
        added = activity_frame(spec, ex.record_id[row_of], day, kinds)
        self.stats[spec.name]["activity_added"] = len(added)
        both = pl.concat([w.activity[i], added], how="vertical")
        w.activity[i] = both.sort([spec.id_column, "activity_date"], maintain_order=True)

    # -- the whole night -------------------------------------------------------------------------

    def run(self) -> dict:
        """Apply the night and return its changes.json content."""
        for i in range(len(SOURCES)):
            self.delete(i)
        for i in range(len(SOURCES)):
            self.update(i)
        arrived = self.arrive()
        for i, spec in enumerate(SOURCES):
            new_ids = self.add(i, arrived[spec.name])
            self.activity(i, new_ids)
        mark_consent_conflicts(self.world)
        return self.changes()

    def changes(self) -> dict:
        w = self.world
        sources = {}
        for i, ex in enumerate(w.extracts):
            s = self.stats[ex.spec.name]
            sources[ex.spec.name] = {
                "previous_records": self.previous[i],
                "records": len(ex.pid),
                "new": sum(s["new_by_reason"].values()),
                "updated": sum(s["updated_by_kind"].values()),
                "deleted": sum(s["deleted_by_reason"].values()),
                **s,
                "activity_rows": len(w.activity[i]),
            }
        return _changes_document(self.night, w, sources, self.people_stats)


def _changes_document(night: int, world: World, sources: dict, people: dict) -> dict:
    totals = {k: sum(s[k] for s in sources.values()) for k in ("records", "new", "updated", "deleted")}
    return {
        "night": night,
        "date": str(world.date),
        "previous": None if night == 1 else f"night_{night - 1:02d}",
        "totals": totals,
        "people": {**people, "present": int((world.gone == 0).sum())},
        "sources": sources,
    }


def _baseline_changes(world: World) -> dict:
    sources = {}
    for ex, act in zip(world.extracts, world.activity, strict=True):
        n = len(ex.pid)
        sources[ex.spec.name] = {
            "previous_records": 0,
            "records": n,
            "new": n,
            "updated": 0,
            "deleted": 0,
            "activity_rows": len(act),
        }
    people = {"born": 0, "moved_in": 0, "died": 0, "left": 0, "moved_house": 0, "married": 0}
    return _changes_document(1, world, sources, people)


def night_folder(out_dir: Path, night: int) -> Path:
    """The folder of one night: ``out_dir/night_01`` and so on."""
    return Path(out_dir) / f"night_{night:02d}"


def _write_night(out_dir: Path, world: World, seed: int, night: int, changes: dict) -> SynthSummary:
    folder = night_folder(out_dir, night)
    summary = write_world(folder, world, seed, night=night, changes=changes)
    path = folder / "changes.json"
    path.write_text(json.dumps(changes, indent=2) + "\n", encoding="utf-8")
    return SynthSummary(
        people=summary.people,
        seed=seed,
        households=summary.households,
        records_per_source=summary.records_per_source,
        activity_per_source=summary.activity_per_source,
        files=[*summary.files, path],
        night=night,
        changes=changes,
    )


def generate_nights(out_dir: Path, people: int, seed: int, nights: int) -> list[SynthSummary]:
    """Generate ``nights`` nightly deliveries of one synthetic partnership.

    Writes ``out_dir/night_01``, ``night_02``, ... each a complete partnership folder in the format
    ``generate_partnership`` writes (night 1 is byte-identical to it), plus ``changes.json`` with the
    night's counts of new, updated and deleted records per source. Night ``k`` is dated
    ``REFERENCE_DATE + (k - 1)`` days (its pipeline.yaml ``reference_date``).

    Args:
        out_dir: directory to write the night folders into (created if missing; overwritten).
        people: number of true people on night 1.
        seed: random seed; the same seed and size give byte-identical folders (night k does not
            depend on how many nights follow it).
        nights: number of nights, at least 1.

    Returns:
        One summary per night, with ``night`` and ``changes`` set.
    """
    if nights < 1:
        raise ValueError("nights must be at least 1")
    started = time.perf_counter()
    world = build_baseline(people, seed)
    summaries = [_write_night(out_dir, world, seed, 1, _baseline_changes(world))]
    for night in range(2, nights + 1):
        changes = _Night(world, night, seed).run()
        summaries.append(_write_night(out_dir, world, seed, night, changes))
        log.info(
            "night %d: %d new, %d updated, %d deleted records (%.1fs)",
            night,
            changes["totals"]["new"],
            changes["totals"]["updated"],
            changes["totals"]["deleted"],
            time.perf_counter() - started,
        )
    return summaries
