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

``generate_nights(out_dir, people, seed, nights)`` writes a sequence of nightly deliveries of the same
partnership, ``out_dir/night_01`` (the baseline, identical to ``generate_partnership``), ``night_02``,
... each a complete folder as above plus ``changes.json``; every night about 1 % of each source's
records are new, 0.5 % updated (same record id) and 0.2 % deleted (see ``carelink.synth.nights``).
Records changed that night also carry an ``updated_<kind>`` label (``UPDATE_CASES``): ``updated_moved``,
``updated_nhs``, ``updated_surname``, ``updated_typo``, ``updated_dob``.
"""

from __future__ import annotations

from carelink.synth.errors import RECORD_CASES
from carelink.synth.extracts import ALL_CASES, EXTRA_CASES, PERSON_CASES, UPDATE_CASES, pipeline_config
from carelink.synth.households import REFERENCE_DATE
from carelink.synth.nhs import (
    PLACEHOLDER_NHS_NUMBERS,
    is_test_range,
    is_valid_nhs_number,
    nhs_check_digit,
)
from carelink.synth.nights import generate_nights, night_folder
from carelink.synth.partnership import SynthSummary, generate_partnership
from carelink.synth.reference import load_nicknames
from carelink.synth.sources import SOURCES, SourceSpec

__all__ = [
    "ALL_CASES",
    "EXTRA_CASES",
    "PERSON_CASES",
    "PLACEHOLDER_NHS_NUMBERS",
    "RECORD_CASES",
    "REFERENCE_DATE",
    "SOURCES",
    "UPDATE_CASES",
    "SourceSpec",
    "SynthSummary",
    "generate_nights",
    "generate_partnership",
    "is_test_range",
    "is_valid_nhs_number",
    "load_nicknames",
    "nhs_check_digit",
    "night_folder",
    "pipeline_config",
]
