"""Export purposes as data: the shipped profiles, a partnership's own purposes, and a recorded legal basis."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import polars as pl
import pytest
import yaml

from carelink.config import ExportConfig, load_config
from carelink.errors import ConfigError
from carelink.export.consent import PURPOSES, withheld_reasons
from carelink.export.purposes import SHIPPED_PURPOSES, PurposeError, PurposeRules, parse_purpose, parse_purposes
from carelink.export.stage import purpose_rules

CAG = "CAG 21/CAG/0001"
LOCAL_AUDIT = {
    "description": "Local clinical audit: opt-outs honoured, sensitive categories kept.",
    "honours_ndop": True,
    "honours_type1": True,
    "requires_shared_care_consent_not_refused": False,
    "requires_research_consent": False,
    "excludes_sensitive": False,
}


# ------------------------------------------------------------------------------------------ shipped file


def test_shipped_profiles_are_the_three_documented_purposes() -> None:
    assert list(SHIPPED_PURPOSES) == ["direct_care", "planning", "research"]
    assert PURPOSES is SHIPPED_PURPOSES
    direct, planning, research = (SHIPPED_PURPOSES[name] for name in ("direct_care", "planning", "research"))
    assert (direct.honours_ndop, direct.requires_shared_care_consent_not_refused, direct.record_map) == (False, True, True)
    assert (planning.honours_ndop, planning.honours_type1, planning.excludes_sensitive, planning.record_map) == (
        True, True, True, False)
    assert (research.requires_research_consent, research.accepts_legal_basis) == (True, True)
    assert not planning.accepts_legal_basis and not direct.accepts_legal_basis


def test_profiles_file_is_package_data() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["carelink"]
    assert any(fnmatch.fnmatch("data/purposes.yaml", pattern) for pattern in patterns)


def test_flags_list_every_rule() -> None:
    flags = SHIPPED_PURPOSES["planning"].flags()
    assert set(flags) == {"honours_ndop", "honours_type1", "requires_shared_care_consent_not_refused",
                          "requires_research_consent", "excludes_sensitive", "record_map",
                          "withholds_research_refusal", "accepts_legal_basis"}
    assert all(isinstance(v, bool) for v in flags.values())


# --------------------------------------------------------------------------------------------- parsing


def test_optional_flags_default_to_false() -> None:
    rules = parse_purpose("local_audit", LOCAL_AUDIT)
    assert rules == PurposeRules("local_audit", LOCAL_AUDIT["description"], True, True, False, False, False, False,
                                 withholds_research_refusal=False, accepts_legal_basis=False)


@pytest.mark.parametrize(
    ("name", "change", "key", "problem"),
    [
        ("Audit", {}, None, "lower-case letter"),
        ("audit/..", {}, None, "lower-case letter"),
        ("audit", {"honours_ndop": None}, "honours_ndop", "is required"),
        ("audit", {"honours_ndop": "yes"}, "honours_ndop", "true or false"),
        ("audit", {"description": " "}, "description", "non-empty string"),
        ("audit", {"marketing": True}, "marketing", "unknown key"),
        ("audit", {"accepts_legal_basis": True}, "accepts_legal_basis", "requires research consent"),
    ],
)
def test_malformed_profiles_name_the_field(name: str, change: dict, key: str | None, problem: str) -> None:
    body = {k: v for k, v in {**LOCAL_AUDIT, **change}.items() if v is not None}
    with pytest.raises(PurposeError) as info:
        parse_purpose(name, body)
    assert info.value.key == key and problem in info.value.problem


def test_errors_in_a_mapping_are_prefixed_by_the_purpose() -> None:
    with pytest.raises(PurposeError) as info:
        parse_purposes({"audit": {**LOCAL_AUDIT, "excludes_sensitive": 1}})
    assert info.value.key == "audit.excludes_sensitive"


# ---------------------------------------------------------------------------------------- pipeline file


def _pipeline(folder: Path, **extra) -> Path:
    (folder / "gp.csv").write_text("id\n", encoding="utf-8")
    data = {"partnership": "leeds", "reference_date": "2026-11-01",
            "sources": [{"name": "gp", "path": "gp.csv", "columns": {"record_id": "id"}}], **extra}
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_a_partnership_adds_its_own_purpose(tmp_path: Path) -> None:
    config = load_config(_pipeline(tmp_path, purposes={"local_audit": LOCAL_AUDIT},
                                   exports=[{"recipient": "audit_team", "purpose": "local_audit"}]))
    assert config.exports == (ExportConfig("audit_team", "local_audit"),)
    assert config.purposes == {"local_audit": parse_purpose("local_audit", LOCAL_AUDIT)}
    assert list(config.purpose_profiles()) == ["direct_care", "planning", "research", "local_audit"]
    assert config.to_dict()["purposes"]["local_audit"]["honours_ndop"] is True


def test_research_export_records_a_legal_basis(tmp_path: Path) -> None:
    config = load_config(_pipeline(tmp_path, exports=[
        {"recipient": "uni", "purpose": "research", "legal_basis": CAG}, {"recipient": "uni2", "purpose": "research"}]))
    assert config.exports == (ExportConfig("uni", "research", CAG), ExportConfig("uni2", "research"))


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        ({"purposes": {"research": LOCAL_AUDIT}}, "purposes.research", "cannot be redefined"),
        ({"purposes": {"audit": {**LOCAL_AUDIT, "honours_type1": "no"}}}, "purposes.audit.honours_type1", "true or false"),
        ({"purposes": ["audit"]}, "purposes", "expected a mapping"),
        ({"exports": [{"recipient": "x", "purpose": "local_audit"}]}, "exports[0].purpose", "is not one of"),
        ({"exports": [{"recipient": "x", "purpose": "planning", "legal_basis": CAG}]}, "exports[0].legal_basis",
         "does not accept a legal basis"),
        ({"exports": [{"recipient": "x", "purpose": "research", "legal_basis": ""}]}, "exports[0].legal_basis",
         "non-empty string"),
        ({"exports": [{"recipient": "x", "purpose": "research", "legal_basis": "a\nb"}]}, "exports[0].legal_basis",
         "one line"),
        ({"exports": [{"recipient": "x"}, {"recipient": "x", "purpose": "planning"}]}, "exports",
         "share a recipient and purpose"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, extra: dict, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_pipeline(tmp_path, **extra))
    assert f": {key}: " in str(info.value) and problem in str(info.value), str(info.value)


# ------------------------------------------------------------------------------------------ legal basis

PEOPLE = pl.DataFrame(
    [
        # person, research consent, sensitive, NDOP, shared care
        ("no_statement", None, False, False, None),
        ("consented", True, False, False, None),
        ("refused", False, False, False, None),
        ("no_statement_ndop", None, False, True, None),
        ("consented_sensitive", True, True, False, None),
        ("refused_care", None, False, False, "refused"),
    ],
    schema={"person_id": pl.String, "research_consent": pl.Boolean, "sensitive_category": pl.Boolean,
            "ndop_opt_out": pl.Boolean, "shared_care_consent": pl.String},
    orient="row",
)


def test_legal_basis_stands_in_for_consent_but_not_for_a_refusal() -> None:
    rules = purpose_rules(ExportConfig("uni", "research", CAG))
    assert (rules.requires_research_consent, rules.withholds_research_refusal) == (False, True)
    assert CAG in rules.description
    assert dict(withheld_reasons(PEOPLE, rules).iter_rows()) == {
        "no_statement": None, "consented": None, "refused": "research consent refused",
        "no_statement_ndop": "National Data Opt-out", "consented_sensitive": "sensitive category", "refused_care": None,
    }


def test_without_a_legal_basis_research_still_requires_consent() -> None:
    rules = purpose_rules(ExportConfig("uni", "research"))
    assert rules is SHIPPED_PURPOSES["research"]
    assert dict(withheld_reasons(PEOPLE, rules).iter_rows())["no_statement"] == "no research consent"


def test_legal_basis_refused_where_the_purpose_does_not_accept_one() -> None:
    with pytest.raises(ConfigError, match="does not accept a legal basis"):
        purpose_rules(ExportConfig("ics", "planning", CAG))
    with pytest.raises(ConfigError, match="unknown purpose 'audit'"):
        purpose_rules(ExportConfig("ics", "audit"))


def test_custom_purpose_rules_apply() -> None:
    audit = parse_purpose("local_audit", LOCAL_AUDIT)
    rules = purpose_rules(ExportConfig("audit_team", "local_audit"), {**SHIPPED_PURPOSES, "local_audit": audit})
    assert dict(withheld_reasons(PEOPLE, rules).iter_rows()) == {
        "no_statement": None, "consented": None, "refused": None, "no_statement_ndop": "National Data Opt-out",
        "consented_sensitive": None, "refused_care": None,
    }
