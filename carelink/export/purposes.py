"""Export purposes as data: the shipped profiles (``carelink/data/purposes.yaml``) and a partnership's own.

A purpose is a set of flags saying what withholds a person (or their activity) from an export made for it. The
same parser reads the shipped file and the ``purposes:`` mapping of a pipeline file, so both obey one contract.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

import yaml

#: Flags every purpose must state: what withholds a person (or, for Type 1, their activity).
REQUIRED_FLAGS = (
    "honours_ndop",
    "honours_type1",
    "requires_shared_care_consent_not_refused",
    "requires_research_consent",
    "excludes_sensitive",
)
#: Flags a purpose may state; they default to false.
OPTIONAL_FLAGS = ("record_map", "withholds_research_refusal", "accepts_legal_basis")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True)
class PurposeRules:
    """What one purpose includes: people filters, activity filters and the tables it receives."""

    name: str
    description: str
    honours_ndop: bool
    honours_type1: bool
    requires_shared_care_consent_not_refused: bool
    requires_research_consent: bool
    excludes_sensitive: bool
    record_map: bool
    withholds_research_refusal: bool = False
    accepts_legal_basis: bool = False

    def flags(self) -> dict[str, bool]:
        """The rule flags by name (everything but name and description)."""
        return {flag: getattr(self, flag) for flag in REQUIRED_FLAGS + OPTIONAL_FLAGS}

    def under_legal_basis(self, reference: str) -> PurposeRules:
        """The rules that apply when an export records a legal basis standing in for research consent.

        People without a research consent statement are included; an explicit refusal still withholds.

        Raises:
            ValueError: If this purpose does not accept a legal basis.
        """
        if not self.accepts_legal_basis:
            raise ValueError(f"purpose {self.name!r} does not accept a legal basis")
        return replace(
            self,
            description=f"{self.description} Under the legal basis {reference}, people without a research consent "
                        "statement are included; an explicit refusal withholds.",
            requires_research_consent=False,
            withholds_research_refusal=True,
        )


class PurposeError(ValueError):
    """A purpose profile is malformed; ``key`` names the field at fault within the purpose (None: the purpose)."""

    def __init__(self, key: str | None, problem: str):
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


def parse_purpose(name: Any, data: Any) -> PurposeRules:
    """Validate one purpose profile (a mapping of ``description`` and flags) into ``PurposeRules``.

    Raises:
        PurposeError: Naming the field at fault.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise PurposeError(None, "a purpose name must start with a lower-case letter and hold only a-z, 0-9 and '_'")
    if not isinstance(data, dict):
        raise PurposeError(None, f"expected a mapping, got {type(data).__name__}")
    allowed = ("description",) + REQUIRED_FLAGS + OPTIONAL_FLAGS
    unknown = sorted(set(data) - set(allowed), key=str)
    if unknown:
        raise PurposeError(str(unknown[0]), f"unknown key (allowed: {', '.join(allowed)})")
    description = data.get("description")
    if not isinstance(description, str) or not description.strip():
        raise PurposeError("description", "must be a non-empty string")
    flags: dict[str, bool] = {}
    for flag in REQUIRED_FLAGS + OPTIONAL_FLAGS:
        value = data.get(flag, False if flag in OPTIONAL_FLAGS else None)
        if value is None:
            raise PurposeError(flag, "is required (true or false)")
        if not isinstance(value, bool):
            raise PurposeError(flag, "must be true or false")
        flags[flag] = value
    if flags["accepts_legal_basis"] and not flags["requires_research_consent"]:
        raise PurposeError("accepts_legal_basis", "only a purpose that requires research consent can accept a legal basis")
    return PurposeRules(name=name, description=" ".join(description.split()), **flags)


def parse_purposes(data: Any) -> dict[str, PurposeRules]:
    """Validate a mapping of purpose name → profile.

    Raises:
        PurposeError: With ``key`` prefixed by the purpose's name.
    """
    if not isinstance(data, dict):
        raise PurposeError(None, f"expected a mapping of purpose name to profile, got {type(data).__name__}")
    purposes = {}
    for name, body in data.items():
        try:
            purposes[name] = parse_purpose(name, body)
        except PurposeError as exc:
            raise PurposeError(f"{name}.{exc.key}" if exc.key else str(name), exc.problem) from None
    return purposes


def load_shipped_purposes() -> dict[str, PurposeRules]:
    """The profiles shipped in ``carelink/data/purposes.yaml`` (direct care, planning, research)."""
    text = resources.files("carelink.data").joinpath("purposes.yaml").read_text(encoding="utf-8")
    return parse_purposes(yaml.safe_load(text))


#: The shipped profiles, by name.
SHIPPED_PURPOSES: dict[str, PurposeRules] = load_shipped_purposes()
