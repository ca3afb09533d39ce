"""Build the baseline partnership (population, extracts, activity) and write a partnership folder."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from carelink.synth import consent
from carelink.synth import households as hh
from carelink.synth.errors import build_records
from carelink.synth.extracts import (
    Extract,
    assemble,
    make_activity,
    write_activity_frame,
    write_extract,
    write_pipeline_yaml,
    write_truth,
)
from carelink.synth.nhs import pool_for, valid_test_numbers
from carelink.synth.people import People, build_people
from carelink.synth.sources import SOURCES, select_members

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthSummary:
    """What ``generate_partnership`` (or one night of ``generate_nights``) wrote."""

    people: int
    seed: int
    households: int
    records_per_source: dict[str, int]
    activity_per_source: dict[str, int]
    files: list[Path] = field(default_factory=list)
    #: Night number (1 = baseline) for ``generate_nights``; None for ``generate_partnership``.
    night: int | None = None
    #: The night's changes.json content (empty for ``generate_partnership``).
    changes: dict = field(default_factory=dict)

    @property
    def records(self) -> int:
        """Total records across all extracts."""
        return sum(self.records_per_source.values())


@dataclass
class World:
    """Everything the partnership holds on one night; ``generate_nights`` carries it forward."""

    people: People
    consent: consent.PersonConsent
    extracts: list[Extract]
    activity: list[pl.DataFrame]  # per source: record id, activity_date (Date), activity_type
    date: np.datetime64  # the delivery's reference date
    gone: np.ndarray  # per person: 0 still here, 1 died, 2 left the area
    moved_here: np.ndarray  # per person: moved house during the nights
    married_here: np.ndarray  # per person: changed surname during the nights
    nhs_used: np.ndarray  # mask over the population's number pool (nhs.pool_for) of numbers ever issued
    used_ids: list[set[str]]  # per source: every record id ever issued


def check_size(people: int) -> None:
    """Raise ValueError unless ``people`` is a size the generator supports."""
    if people < 1:
        raise ValueError("people must be at least 1")
    capacity = len(valid_test_numbers(wide=True))
    if people > capacity:
        raise ValueError(f"people must be at most {capacity}, the number of valid synthetic NHS numbers")


def mark_consent_conflicts(world: World) -> None:
    """(Re)label ``consent_conflict`` on every record with a consent value, across the current extracts."""
    extracts = world.extracts
    conflict = consent.conflicts(world.people.n, [(ex.pid, ex.consent) for ex in extracts if ex.consent is not None])
    for ex in extracts:
        has_consent = np.zeros(len(ex.pid), dtype=bool) if ex.consent is None else ex.consent != ""
        ex.cases["consent_conflict"] = conflict[ex.pid] & has_consent


def build_baseline(people: int, seed: int) -> World:
    """Build the population, the five extracts and their activity for ``people`` and ``seed``."""
    check_size(people)
    started = time.perf_counter()
    streams = [
        np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence(seed).spawn(3 + 3 * len(SOURCES))
    ]
    population = build_people(streams[0], people)
    members = select_members(streams[1], population)
    person_consent = consent.person_consent(streams[2], population.n)
    log.info(
        "built %d people in %d households (%.1fs)",
        population.n,
        len(population.skeleton.hh_kind),
        time.perf_counter() - started,
    )
    extracts = []
    for i, spec in enumerate(SOURCES):
        records = build_records(streams[3 + 3 * i], spec, population, members[spec.name])
        extracts.append(assemble(streams[4 + 3 * i], records, population, person_consent))
    pool = pool_for(people)
    used = np.zeros(len(pool), dtype=bool)
    used[np.searchsorted(pool, population.nhs)] = True
    world = World(
        people=population,
        consent=person_consent,
        extracts=extracts,
        activity=[make_activity(streams[5 + 3 * i], ex, population) for i, ex in enumerate(extracts)],
        date=hh.REFERENCE_DATE,
        gone=np.zeros(population.n, dtype=np.int8),
        moved_here=np.zeros(population.n, dtype=bool),
        married_here=np.zeros(population.n, dtype=bool),
        nhs_used=used,
        used_ids=[set(ex.record_id.tolist()) for ex in extracts],
    )
    mark_consent_conflicts(world)
    log.info("built %d records (%.1fs)", sum(len(ex.pid) for ex in extracts), time.perf_counter() - started)
    return world


def write_world(
    out_dir: Path, world: World, seed: int, night: int | None = None, changes: dict | None = None
) -> SynthSummary:
    """Write the extracts, activity files, truth.csv and pipeline.yaml of ``world`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    activity: dict[str, int] = {}
    for ex, act in zip(world.extracts, world.activity, strict=True):
        files.append(write_extract(out_dir, ex))
        files.append(write_activity_frame(out_dir, ex.spec, act))
        activity[ex.spec.name] = len(act)
    files.append(write_truth(out_dir, world.extracts))
    files.append(write_pipeline_yaml(out_dir, reference_date=world.date))
    entities = np.unique(np.concatenate([ex.pid for ex in world.extracts]))
    return SynthSummary(
        people=len(entities),
        seed=seed,
        households=len(np.unique(world.people.skeleton.household[entities])),
        records_per_source={ex.spec.name: len(ex.pid) for ex in world.extracts},
        activity_per_source=activity,
        files=files,
        night=night,
        changes=changes or {},
    )


def generate_partnership(out_dir: Path, people: int, seed: int) -> SynthSummary:
    """Generate a synthetic five-partner integrated-care dataset.

    Args:
        out_dir: directory to write into (created if missing; existing files are overwritten).
        people: number of true people, 1 to about 9.1 million (above ~909,000 the NHS numbers extend below the
            999 test range, see ``nhs.valid_test_numbers``).
        seed: random seed; the same seed and size give byte-identical files.

    Returns:
        A summary with record counts per source and the files written.
    """
    started = time.perf_counter()
    world = build_baseline(people, seed)
    summary = write_world(out_dir, world, seed)
    log.info(
        "wrote %d records and %d activity rows to %s (%.1fs)",
        summary.records,
        sum(summary.activity_per_source.values()),
        out_dir,
        time.perf_counter() - started,
    )
    return summary
