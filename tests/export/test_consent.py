"""Tests for carelink.export.consent: resolving consent across a person's records, and per-purpose withholding."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from carelink.export.consent import PURPOSES, resolve_consent, withheld_reasons

SCHEMA = {
    "person_id": pl.String, "source": pl.String,
    "ndop_opt_out": pl.Boolean, "ndop_opt_out_date": pl.Date,
    "type1_opt_out": pl.Boolean, "type1_opt_out_date": pl.Date,
    "shared_care_consent": pl.String, "shared_care_consent_date": pl.Date,
    "research_consent": pl.Boolean, "research_consent_date": pl.Date,
    "sensitive_category": pl.Boolean,
}


def D(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def records(*rows: dict) -> pl.DataFrame:
    """Node-like consent records; unspecified fields are null."""
    return pl.DataFrame([{name: row.get(name) for name in SCHEMA} for row in rows], schema=SCHEMA)


def resolved(*rows: dict) -> dict[str, dict]:
    return {r["person_id"]: r for r in resolve_consent(records(*rows)).iter_rows(named=True)}


# ------------------------------------------------------------------------------------------ statements


def test_latest_dated_statement_wins() -> None:
    people = resolved(
        {"person_id": "P1", "source": "gp", "shared_care_consent": "granted", "shared_care_consent_date": D("2024-01-01")},
        {"person_id": "P1", "source": "asc", "shared_care_consent": "refused", "shared_care_consent_date": D("2025-01-01")},
        {"person_id": "P1", "source": "vcs", "shared_care_consent": "granted", "shared_care_consent_date": D("2023-06-30")},
    )
    p1 = people["P1"]
    assert (p1["shared_care_consent"], p1["shared_care_consent_date"], p1["shared_care_consent_source"]) == (
        "refused", D("2025-01-01"), "asc")


def test_withdrawn_then_granted_later_is_granted() -> None:
    p1 = resolved(
        {"person_id": "P1", "source": "asc", "shared_care_consent": "withdrawn", "shared_care_consent_date": D("2023-03-01")},
        {"person_id": "P1", "source": "gp", "shared_care_consent": "granted", "shared_care_consent_date": D("2024-09-15")},
    )["P1"]
    assert (p1["shared_care_consent"], p1["shared_care_consent_source"]) == ("granted", "gp")


def test_granted_then_withdrawn_later_is_withdrawn() -> None:
    p1 = resolved(
        {"person_id": "P1", "source": "gp", "shared_care_consent": "granted", "shared_care_consent_date": D("2023-03-01")},
        {"person_id": "P1", "source": "asc", "shared_care_consent": "withdrawn", "shared_care_consent_date": D("2023-03-02")},
    )["P1"]
    assert p1["shared_care_consent"] == "withdrawn"


def test_undated_statement_loses_to_a_dated_one() -> None:
    # Even a refusal: an undated statement cannot be placed in time, so any dated statement outranks it.
    p1 = resolved(
        {"person_id": "P1", "source": "asc", "shared_care_consent": "refused"},
        {"person_id": "P1", "source": "gp", "shared_care_consent": "granted", "shared_care_consent_date": D("2010-01-01")},
    )["P1"]
    assert (p1["shared_care_consent"], p1["shared_care_consent_date"], p1["shared_care_consent_source"]) == (
        "granted", D("2010-01-01"), "gp")


def test_among_undated_statements_the_refusal_wins() -> None:
    for source_of_refusal in ("aaa", "zzz"):  # whatever the source names' order
        p1 = resolved(
            {"person_id": "P1", "source": "mmm", "shared_care_consent": "granted"},
            {"person_id": "P1", "source": source_of_refusal, "shared_care_consent": "refused"},
        )["P1"]
        assert (p1["shared_care_consent"], p1["shared_care_consent_date"]) == ("refused", None)


def test_same_day_statements_resolve_to_the_restrictive_one() -> None:
    p1 = resolved(
        {"person_id": "P1", "source": "zzz", "shared_care_consent": "granted", "shared_care_consent_date": D("2024-05-05")},
        {"person_id": "P1", "source": "aaa", "shared_care_consent": "withdrawn", "shared_care_consent_date": D("2024-05-05")},
    )["P1"]
    assert p1["shared_care_consent"] == "withdrawn"


def test_null_statements_are_ignored() -> None:
    p1 = resolved(
        {"person_id": "P1", "source": "gp", "shared_care_consent": "granted", "shared_care_consent_date": D("2020-01-01")},
        {"person_id": "P1", "source": "asc", "shared_care_consent_date": D("2025-01-01")},  # a date without a value
        {"person_id": "P1", "source": "vcs"},
    )["P1"]
    assert (p1["shared_care_consent"], p1["shared_care_consent_source"]) == ("granted", "gp")
    nobody = resolved({"person_id": "P2", "source": "gp"})["P2"]
    assert (nobody["shared_care_consent"], nobody["research_consent"], nobody["research_consent_source"]) == (
        None, None, None)


def test_research_consent_latest_dated_wins_and_undated_loses() -> None:
    people = resolved(
        {"person_id": "P1", "source": "gp", "research_consent": True, "research_consent_date": D("2020-01-01")},
        {"person_id": "P1", "source": "asc", "research_consent": False, "research_consent_date": D("2021-01-01")},
        {"person_id": "P2", "source": "gp", "research_consent": False},
        {"person_id": "P2", "source": "asc", "research_consent": True, "research_consent_date": D("2019-01-01")},
        {"person_id": "P3", "source": "gp", "research_consent": True},
        {"person_id": "P3", "source": "asc", "research_consent": False},
    )
    assert (people["P1"]["research_consent"], people["P1"]["research_consent_source"]) == (False, "asc")
    assert (people["P2"]["research_consent"], people["P2"]["research_consent_date"]) == (True, D("2019-01-01"))
    assert people["P3"]["research_consent"] is False  # undated tie: the refusal


# ---------------------------------------------------------------------------------------------- sticky


def test_opt_out_from_any_source_sticks() -> None:
    p1 = resolved(
        {"person_id": "P1", "source": "vcs", "ndop_opt_out": True, "ndop_opt_out_date": D("2019-04-01")},
        {"person_id": "P1", "source": "gp", "ndop_opt_out": False, "ndop_opt_out_date": D("2025-01-01")},
        {"person_id": "P1", "source": "asc", "ndop_opt_out": None},
    )["P1"]
    assert p1["ndop_opt_out"] is True
    assert (p1["ndop_opt_out_source"], p1["ndop_opt_out_date"]) == ("vcs", D("2019-04-01"))


def test_latest_dated_opt_out_decides_and_undated_opt_out_still_counts() -> None:
    people = resolved(
        {"person_id": "P1", "source": "gp", "type1_opt_out": True, "type1_opt_out_date": D("2018-01-01")},
        {"person_id": "P1", "source": "asc", "type1_opt_out": True, "type1_opt_out_date": D("2022-01-01")},
        {"person_id": "P1", "source": "vcs", "type1_opt_out": True},
        {"person_id": "P2", "source": "gp", "type1_opt_out": True},
        {"person_id": "P2", "source": "asc", "type1_opt_out": False, "type1_opt_out_date": D("2024-01-01")},
    )
    assert (people["P1"]["type1_opt_out"], people["P1"]["type1_opt_out_source"],
            people["P1"]["type1_opt_out_date"]) == (True, "asc", D("2022-01-01"))
    assert (people["P2"]["type1_opt_out"], people["P2"]["type1_opt_out_source"],
            people["P2"]["type1_opt_out_date"]) == (True, "gp", None)


def test_no_opt_out_anywhere() -> None:
    p1 = resolved({"person_id": "P1", "source": "gp", "ndop_opt_out": False},
                  {"person_id": "P1", "source": "asc"})["P1"]
    assert (p1["ndop_opt_out"], p1["ndop_opt_out_source"], p1["ndop_opt_out_date"]) == (False, None, None)
    assert (p1["sensitive_category"], p1["sensitive_category_source"]) == (False, None)


def test_sensitive_category_sticks() -> None:
    p1 = resolved({"person_id": "P1", "source": "gp", "sensitive_category": False},
                  {"person_id": "P1", "source": "sh", "sensitive_category": True})["P1"]
    assert (p1["sensitive_category"], p1["sensitive_category_source"]) == (True, "sh")


def test_people_are_resolved_separately() -> None:
    people = resolved(
        {"person_id": "P1", "source": "gp", "ndop_opt_out": True},
        {"person_id": "P2", "source": "gp", "ndop_opt_out": False},
        {"person_id": "P2", "source": "asc", "shared_care_consent": "granted"},
    )
    assert set(people) == {"P1", "P2"}
    assert (people["P1"]["ndop_opt_out"], people["P2"]["ndop_opt_out"]) == (True, False)
    assert (people["P1"]["shared_care_consent"], people["P2"]["shared_care_consent"]) == (None, "granted")


# ------------------------------------------------------------------------------------------- purposes

PEOPLE = pl.DataFrame(
    [
        # person, research consent, sensitive, NDOP, shared care
        ("clean", None, False, False, None),
        ("ndop", None, False, True, None),
        ("sensitive", None, True, False, None),
        ("refused", None, False, False, "refused"),
        ("withdrawn", None, False, False, "withdrawn"),
        ("granted", None, False, False, "granted"),
        ("researcher", True, False, False, None),
        ("research_no", False, False, False, None),
        ("research_ndop", True, False, True, None),
        ("research_sensitive_ndop", True, True, True, None),
        ("research_refused_care", True, False, False, "refused"),
        ("everything", False, True, True, "refused"),
    ],
    schema={"person_id": pl.String, "research_consent": pl.Boolean, "sensitive_category": pl.Boolean,
            "ndop_opt_out": pl.Boolean, "shared_care_consent": pl.String},
    orient="row",
)


def reasons_under(rules) -> dict[str, str | None]:
    return dict(withheld_reasons(PEOPLE, rules).iter_rows())


def reasons(purpose: str) -> dict[str, str | None]:
    return reasons_under(PURPOSES[purpose])


def test_direct_care_ignores_ndop_and_sensitivity_but_honours_shared_care_objection() -> None:
    assert reasons("direct_care") == {
        "clean": None, "ndop": None, "sensitive": None,
        "refused": "shared-care objection", "withdrawn": "shared-care objection", "granted": None,
        "researcher": None, "research_no": None, "research_ndop": None, "research_sensitive_ndop": None,
        "research_refused_care": "shared-care objection", "everything": "shared-care objection",
    }


def test_planning_honours_ndop_and_withholds_sensitive() -> None:
    assert reasons("planning") == {
        "clean": None, "ndop": "National Data Opt-out", "sensitive": "sensitive category",
        "refused": None, "withdrawn": None, "granted": None,
        "researcher": None, "research_no": None, "research_ndop": "National Data Opt-out",
        "research_sensitive_ndop": "sensitive category", "research_refused_care": None,
        "everything": "sensitive category",
    }


def test_research_requires_research_consent() -> None:
    assert reasons("research") == {
        "clean": "no research consent", "ndop": "no research consent", "sensitive": "no research consent",
        "refused": "no research consent", "withdrawn": "no research consent", "granted": "no research consent",
        "researcher": None, "research_no": "no research consent", "research_ndop": "National Data Opt-out",
        "research_sensitive_ndop": "sensitive category", "research_refused_care": None,
        "everything": "no research consent",
    }


@pytest.mark.parametrize("purpose", sorted(PURPOSES))
def test_one_row_per_person(purpose: str) -> None:
    out = withheld_reasons(PEOPLE, PURPOSES[purpose])
    assert out.columns == ["person_id", "withheld_reason"]
    assert out["person_id"].to_list() == PEOPLE["person_id"].to_list()


def test_resolution_then_purpose_end_to_end() -> None:
    # NDOP from one source and a later research consent elsewhere: research withholds, direct care includes.
    people = resolve_consent(records(
        {"person_id": "P1", "source": "gp", "ndop_opt_out": True, "ndop_opt_out_date": D("2020-01-01")},
        {"person_id": "P1", "source": "uni", "research_consent": True, "research_consent_date": D("2024-01-01")},
        {"person_id": "P2", "source": "asc", "shared_care_consent": "granted", "shared_care_consent_date": D("2021-01-01")},
        {"person_id": "P2", "source": "gp", "shared_care_consent": "withdrawn", "shared_care_consent_date": D("2022-01-01")},
    )).sort("person_id")
    assert dict(withheld_reasons(people, PURPOSES["research"]).iter_rows()) == {
        "P1": "National Data Opt-out", "P2": "no research consent"}
    assert dict(withheld_reasons(people, PURPOSES["direct_care"]).iter_rows()) == {
        "P1": None, "P2": "shared-care objection"}
    assert dict(withheld_reasons(people, PURPOSES["planning"]).iter_rows()) == {
        "P1": "National Data Opt-out", "P2": None}


def test_research_under_a_legal_basis_includes_the_silent_but_withholds_refusals() -> None:
    rules = PURPOSES["research"].under_legal_basis("CAG 21/CAG/0001")
    assert reasons_under(rules) == {
        "clean": None, "ndop": "National Data Opt-out", "sensitive": "sensitive category",
        "refused": None, "withdrawn": None, "granted": None,
        "researcher": None, "research_no": "research consent refused", "research_ndop": "National Data Opt-out",
        "research_sensitive_ndop": "sensitive category", "research_refused_care": None,
        "everything": "research consent refused",
    }


def test_opt_out_resolution_is_configurable() -> None:
    # NDOP recorded in 2024 by the GP, withdrawn (N) in 2025 at the hospital.
    from carelink.export.consent import resolution_texts, resolve_consent

    records = pl.DataFrame({
        "person_id": ["P1", "P1"], "source": ["gp", "acute"],
        "ndop_opt_out": [True, False], "ndop_opt_out_date": [dt.date(2024, 1, 1), dt.date(2025, 1, 1)],
        "type1_opt_out": [None, None], "type1_opt_out_date": pl.Series([None, None], dtype=pl.Date),
        "sensitive_category": [None, None], "shared_care_consent": [None, None],
        "shared_care_consent_date": pl.Series([None, None], dtype=pl.Date),
        "research_consent": [None, None], "research_consent_date": pl.Series([None, None], dtype=pl.Date),
    }, schema_overrides={"type1_opt_out": pl.Boolean, "sensitive_category": pl.Boolean,
                         "shared_care_consent": pl.String, "research_consent": pl.Boolean})
    sticky = resolve_consent(records).row(0, named=True)
    assert sticky["ndop_opt_out"] is True and sticky["ndop_opt_out_source"] == "gp"
    latest = resolve_consent(records, {"ndop_opt_out": "latest"}).row(0, named=True)
    assert latest["ndop_opt_out"] is False and latest["ndop_opt_out_source"] == "acute"
    assert latest["type1_opt_out"] is False  # nothing stated: not opted out
    assert "later withdrawal" in resolution_texts({"ndop_opt_out": "latest"})["ndop_opt_out"]
