"""The five partner extracts: their layouts, who appears in each, and their error rates."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from carelink.synth.people import People


@dataclass(frozen=True)
class ErrorRates:
    """Per-record probabilities of each data-quality problem in one source.

    Rates named ``given ...`` apply only where the person has the trait (a maiden name, a move,
    a middle name, a nickname, a double-barrelled surname, a day of birth of 12 or less).
    """

    typo_given: float
    typo_family: float
    nickname: float  # given a nickname exists for the forename
    swap_names: float
    middle_name: float  # given a middle name
    known_by_middle: float  # given the person goes by their middle name
    marriage: float  # given a maiden name
    moved: float  # given a previous address
    surname_part: float  # given a double-barrelled surname
    dob_swap: float  # given day <= 12 and day != month
    dob_typo: float
    default_dob: float
    dob_missing: float
    sex_error: float
    sex_unknown: float
    nhs_missing: float
    nhs_mistyped: float
    placeholder_nhs: float
    relative_nhs: float
    postcode_typo: float
    postcode_missing: float


@dataclass(frozen=True)
class Style:
    """Cosmetic formatting habits of one source (never labelled in the truth file)."""

    given_case: tuple[float, float, float]  # P(upper), P(title), P(lower)
    family_case: tuple[float, float, float]
    postcode: tuple[float, float, float, float]  # "LS6 1AB", "LS61AB", "ls61ab", "ls6 1ab"
    nhs_spaced: float  # "999 123 4567" instead of "9991234567"
    title: float  # "Mrs Margaret" in the forename field
    messy_spaces: float
    punctuation_dropped: float  # O'BRIEN -> OBRIEN / O BRIEN, SMITH-JONES -> SMITH JONES
    accents_kept: float
    address: str  # line1 | full | full_upper | abbreviated | informal
    sex_codes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceSpec:
    """Everything that makes one partner's extract what it is."""

    name: str
    kind: str  # health | social_care | voluntary
    path: str
    format: str  # csv | parquet
    encoding: str
    date_format: str | None  # None: dates are a real Date column
    columns: dict[str, str]
    id_prefix: str
    id_digits: int
    coverage: tuple[float, float, float, float]  # base, per unit frailty, under-5 bonus, care home
    duplicate_rate: float
    rates: ErrorRates
    style: Style
    activity_types: tuple[str, ...]
    activity_weights: tuple[float, ...]
    activity_mean: float
    activity_date_format: str = "%Y-%m-%d"

    @property
    def id_column(self) -> str:
        """The extract's record-id column."""
        return self.columns["record_id"]


def _cols(*names: str, consent: bool = False, opt_outs: bool = False) -> dict[str, str]:
    canonical = ("record_id", "nhs_number", "given_name", "family_name", "date_of_birth", "sex", "address", "postcode")
    cols = dict(zip(canonical, names, strict=True))
    if opt_outs:
        cols.update(ndop_opt_out="ndop_opt_out", type1_opt_out="type1_opt_out")
    if consent:
        cols.update(shared_care_consent="scr_consent", shared_care_consent_date="scr_consent_date")
    return cols


#: Error rates per source, in the order gp, acute, community, social_care, voluntary.
RATE_TABLE: dict[str, tuple[float, float, float, float, float]] = {
    "typo_given": (0.008, 0.02, 0.02, 0.04, 0.05),
    "typo_family": (0.008, 0.02, 0.02, 0.04, 0.05),
    "nickname": (0.005, 0.01, 0.03, 0.06, 0.12),
    "swap_names": (0.002, 0.005, 0.005, 0.01, 0.01),
    "middle_name": (0.01, 0.04, 0.03, 0.05, 0.03),
    "known_by_middle": (0.05, 0.25, 0.5, 0.6, 0.8),
    "marriage": (0.05, 0.15, 0.15, 0.3, 0.35),
    "moved": (0.08, 0.2, 0.25, 0.35, 0.45),
    "surname_part": (0.15, 0.3, 0.3, 0.4, 0.5),
    "dob_swap": (0.003, 0.01, 0.01, 0.02, 0.03),
    "dob_typo": (0.003, 0.008, 0.01, 0.02, 0.03),
    "default_dob": (0.0, 0.0, 0.0, 0.005, 0.02),
    "dob_missing": (0.0, 0.0, 0.0, 0.003, 0.03),
    "sex_error": (0.001, 0.002, 0.002, 0.004, 0.005),
    "sex_unknown": (0.002, 0.005, 0.005, 0.01, 0.02),
    "nhs_missing": (0.01, 0.025, 0.02, 0.12, 0.50),
    "nhs_mistyped": (0.002, 0.004, 0.003, 0.01, 0.015),
    "placeholder_nhs": (0.0, 0.0, 0.0, 0.01, 0.02),
    "relative_nhs": (0.0005, 0.001, 0.001, 0.003, 0.005),
    "postcode_typo": (0.002, 0.005, 0.005, 0.01, 0.02),
    "postcode_missing": (0.002, 0.005, 0.01, 0.02, 0.08),
}


def _rates(i: int) -> ErrorRates:
    return ErrorRates(**{name: values[i] for name, values in RATE_TABLE.items()})


GP = SourceSpec(
    name="gp",
    kind="health",
    path="gp.csv",
    format="csv",
    encoding="utf-8",
    date_format="%Y-%m-%d",
    columns=_cols(
        "patient_id",
        "nhs_no",
        "forename",
        "surname",
        "dob",
        "gender",
        "address_line_1",
        "postcode",
        consent=True,
        opt_outs=True,
    ),
    id_prefix="G",
    id_digits=7,
    coverage=(0.93, 0.06, 0.0, 0.99),
    duplicate_rate=0.01,
    rates=_rates(0),
    style=Style(
        given_case=(0.05, 0.95, 0.0),
        family_case=(0.05, 0.95, 0.0),
        postcode=(0.97, 0.03, 0.0, 0.0),
        nhs_spaced=0.0,
        title=0.0,
        messy_spaces=0.002,
        punctuation_dropped=0.02,
        accents_kept=0.8,
        address="line1",
        sex_codes={"M": "M", "F": "F", "U": "U"},
    ),
    activity_types=("consultation", "home visit", "medication review"),
    activity_weights=(0.75, 0.08, 0.17),
    activity_mean=3.0,
    activity_date_format="%Y-%m-%d",
)
ACUTE = SourceSpec(
    name="acute",
    kind="health",
    path="acute.csv",
    format="csv",
    encoding="utf-8",
    date_format="%d/%m/%Y",
    columns=_cols(
        "hospital_number",
        "NHS Number",
        "PATIENT_FORENAME",
        "PATIENT_SURNAME",
        "DATE_OF_BIRTH",
        "SEX",
        "ADDRESS",
        "POSTCODE",
        consent=True,
    ),
    id_prefix="RX",
    id_digits=7,
    coverage=(0.46, 0.90, 0.12, 0.85),
    duplicate_rate=0.03,
    rates=_rates(1),
    style=Style(
        given_case=(0.3, 0.7, 0.0),
        family_case=(1.0, 0.0, 0.0),
        postcode=(0.95, 0.05, 0.0, 0.0),
        nhs_spaced=0.6,
        title=0.0,
        messy_spaces=0.005,
        punctuation_dropped=0.1,
        accents_kept=0.5,
        address="full_upper",
        sex_codes={"M": "Male", "F": "Female", "U": "Unknown"},
    ),
    activity_types=("admission", "ED attendance", "outpatient"),
    activity_weights=(0.2, 0.35, 0.45),
    activity_mean=1.6,
    activity_date_format="%d/%m/%Y",
)
COMMUNITY = SourceSpec(
    name="community",
    kind="health",
    path="community.parquet",
    format="parquet",
    encoding="utf-8",
    date_format=None,
    columns=_cols("client_ref", "nhs_number", "first_name", "last_name", "birth_date", "sex", "address", "post_code"),
    id_prefix="C",
    id_digits=8,
    coverage=(0.25, 0.90, 0.30, 0.90),
    duplicate_rate=0.02,
    rates=_rates(2),
    style=Style(
        given_case=(0.15, 0.85, 0.0),
        family_case=(0.15, 0.85, 0.0),
        postcode=(0.85, 0.15, 0.0, 0.0),
        nhs_spaced=0.0,
        title=0.0,
        messy_spaces=0.005,
        punctuation_dropped=0.1,
        accents_kept=0.6,
        address="full",
        sex_codes={"M": "1", "F": "2", "U": "9"},
    ),
    activity_types=("district nursing visit", "physio"),
    activity_weights=(0.7, 0.3),
    activity_mean=2.5,
    activity_date_format="%Y-%m-%d",
)
SOCIAL_CARE = SourceSpec(
    name="social_care",
    kind="social_care",
    path="social_care.csv",
    format="csv",
    encoding="latin-1",
    date_format="%d-%m-%Y",
    columns=_cols("id", "nhs", "forename", "surname", "dob", "sex", "address", "postcode", consent=True),
    id_prefix="",
    id_digits=7,
    coverage=(0.17, 0.80, 0.03, 0.97),
    duplicate_rate=0.025,
    rates=_rates(3),
    style=Style(
        given_case=(0.5, 0.45, 0.05),
        family_case=(0.55, 0.4, 0.05),
        postcode=(0.30, 0.15, 0.45, 0.10),
        nhs_spaced=0.2,
        title=0.08,
        messy_spaces=0.02,
        punctuation_dropped=0.3,
        accents_kept=0.95,
        address="abbreviated",
        sex_codes={"M": "M", "F": "F", "U": ""},
    ),
    activity_types=("assessment", "care package start", "review"),
    activity_weights=(0.35, 0.2, 0.45),
    activity_mean=2.0,
    activity_date_format="%d-%m-%Y",
)
VOLUNTARY = SourceSpec(
    name="voluntary",
    kind="voluntary",
    path="voluntary.csv",
    format="csv",
    encoding="utf-8",
    date_format="%d/%m/%Y",
    columns=_cols(
        "member_id", "nhs_number", "first_name", "family_name", "date_of_birth", "gender", "address", "postcode"
    ),
    id_prefix="VOL-",
    id_digits=6,
    coverage=(0.14, 0.50, 0.0, 0.45),
    duplicate_rate=0.02,
    rates=_rates(4),
    style=Style(
        given_case=(0.2, 0.6, 0.2),
        family_case=(0.2, 0.6, 0.2),
        postcode=(0.6, 0.15, 0.1, 0.15),
        nhs_spaced=0.3,
        title=0.1,
        messy_spaces=0.05,
        punctuation_dropped=0.3,
        accents_kept=0.7,
        address="informal",
        sex_codes={"M": "male", "F": "female", "U": "other"},
    ),
    activity_types=("befriending call", "meal delivery"),
    activity_weights=(0.55, 0.45),
    activity_mean=3.0,
    activity_date_format="%d/%m/%Y",
)

#: The five partner extracts, in the order they are written and listed.
SOURCES: tuple[SourceSpec, ...] = (GP, ACUTE, COMMUNITY, SOCIAL_CARE, VOLUNTARY)


def coverage_probability(spec: SourceSpec, age: np.ndarray, frailty: np.ndarray, care: np.ndarray) -> np.ndarray:
    """Return the probability that ``spec`` holds each person, from age, frailty and care-home residence."""
    base, frail, under5, care_p = spec.coverage
    p = np.clip(base + frail * frailty + under5 * (age < 5), 0, 0.995)
    return np.where(care, care_p, p)


def select_members(rng: np.random.Generator, people: People) -> dict[str, np.ndarray]:
    """Decide which sources hold each person; everyone is in at least one.

    Older, frailer people appear in more sources; care-home residents in nearly all; GP covers
    most people and the voluntary sector fewest.

    Returns:
        Source name -> ascending person indices.
    """
    chosen = np.zeros((len(SOURCES), people.n), dtype=bool)
    for i, spec in enumerate(SOURCES):
        p = coverage_probability(spec, people.skeleton.age, people.frailty, people.care_home)
        chosen[i] = rng.random(people.n) < p
    nowhere = ~chosen.any(axis=0)
    chosen[0, nowhere] = True  # registered with a GP at least
    return {spec.name: np.flatnonzero(chosen[i]) for i, spec in enumerate(SOURCES)}
