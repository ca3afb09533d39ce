"""Synthetic partnership generator: five partner extracts about one UK-like population.

``generate_partnership(out_dir, people, seed)`` writes, into ``out_dir``:

* ``gp.csv``, ``acute.csv``, ``community.parquet``, ``social_care.csv`` (latin-1) and
  ``voluntary.csv``: each partner's extract in its own columns, formats and error rates;
* ``<source>_activity.csv``: dated contacts per record over the three years before 2026-11-01;
* ``truth.csv``: ``source,record_id,entity_id,cases`` for every record (see ``ALL_CASES``);
* ``pipeline.yaml``: the carelink configuration that describes the files.

Output is byte-identical for the same seed and size.

Case labels in truth.csv (``;``-separated, in ``ALL_CASES`` order, empty when clean):

* about the person, on every record of them: ``twin``, ``jr_sr`` (father and son with the same
  forename and surname at one address), ``care_home``;
* about the record: ``duplicate`` (a second registration in the same source), ``moved`` (a previous
  address), ``marriage`` (a previous surname), ``surname_part`` (one half of a double-barrelled
  surname), ``known_by_middle``, ``nickname``, ``middle_name`` (forename and middle name together),
  ``typo_given``, ``typo_family``, ``swap_names``, ``dob_swap`` (day and month swapped), ``dob_typo``,
  ``default_dob`` (1900-01-01), ``dob_missing``, ``sex_error``, ``sex_unknown``, ``nhs_missing``,
  ``nhs_mistyped`` (fails the check digit), ``placeholder_nhs``, ``relative_nhs`` (another household
  member's number), ``postcode_typo``, ``postcode_missing``, ``title`` (e.g. "Mrs" in the forename),
  ``consent_conflict`` (shared-care consent granted in one source, refused or withdrawn in another).

Cosmetic variation (letter case, spacing, punctuation, accents, postcode and NHS-number layout, address
layout and abbreviations) is not labelled.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from carelink.synth import consent
from carelink.synth.errors import RECORD_CASES, build_records
from carelink.synth.extracts import (
    ALL_CASES,
    EXTRA_CASES,
    PERSON_CASES,
    assemble,
    pipeline_config,
    write_activity,
    write_extract,
    write_pipeline_yaml,
    write_truth,
)
from carelink.synth.households import REFERENCE_DATE
from carelink.synth.nhs import (
    PLACEHOLDER_NHS_NUMBERS,
    is_test_range,
    is_valid_nhs_number,
    nhs_check_digit,
    valid_test_numbers,
)
from carelink.synth.people import build_people
from carelink.synth.reference import load_nicknames
from carelink.synth.sources import SOURCES, SourceSpec, select_members

__all__ = [
    "ALL_CASES",
    "EXTRA_CASES",
    "PERSON_CASES",
    "PLACEHOLDER_NHS_NUMBERS",
    "RECORD_CASES",
    "REFERENCE_DATE",
    "SOURCES",
    "SourceSpec",
    "SynthSummary",
    "generate_partnership",
    "is_test_range",
    "is_valid_nhs_number",
    "load_nicknames",
    "nhs_check_digit",
    "pipeline_config",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthSummary:
    """What ``generate_partnership`` wrote."""

    people: int
    seed: int
    households: int
    records_per_source: dict[str, int]
    activity_per_source: dict[str, int]
    files: list[Path] = field(default_factory=list)

    @property
    def records(self) -> int:
        """Total records across all extracts."""
        return sum(self.records_per_source.values())


def generate_partnership(out_dir: Path, people: int, seed: int) -> SynthSummary:
    """Generate a synthetic five-partner integrated-care dataset.

    Args:
        out_dir: directory to write into (created if missing; existing files are overwritten).
        people: number of true people, 1 to about 909,000 (the size of the 999 NHS test range).
        seed: random seed; the same seed and size give byte-identical files.

    Returns:
        A summary with record counts per source and the files written.
    """
    if people < 1:
        raise ValueError("people must be at least 1")
    capacity = len(valid_test_numbers())
    if people > capacity:
        raise ValueError(f"people must be at most {capacity}, the number of valid NHS numbers in the 999 test range")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
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
    conflict = consent.conflicts(population.n, [(ex.pid, ex.consent) for ex in extracts if ex.consent is not None])
    for ex in extracts:
        has_consent = np.zeros(len(ex.pid), dtype=bool) if ex.consent is None else ex.consent != ""
        ex.cases["consent_conflict"] = conflict[ex.pid] & has_consent
    log.info("built %d records (%.1fs)", sum(len(ex.pid) for ex in extracts), time.perf_counter() - started)

    files: list[Path] = []
    activity: dict[str, int] = {}
    for i, ex in enumerate(extracts):
        files.append(write_extract(out_dir, ex))
        path, rows = write_activity(streams[5 + 3 * i], out_dir, ex, population)
        files.append(path)
        activity[ex.spec.name] = rows
    files.append(write_truth(out_dir, extracts))
    files.append(write_pipeline_yaml(out_dir))
    summary = SynthSummary(
        people=population.n,
        seed=seed,
        households=len(population.skeleton.hh_kind),
        records_per_source={ex.spec.name: len(ex.pid) for ex in extracts},
        activity_per_source=activity,
        files=files,
    )
    log.info(
        "wrote %d records and %d activity rows to %s (%.1fs)",
        summary.records,
        sum(activity.values()),
        out_dir,
        time.perf_counter() - started,
    )
    return summary
