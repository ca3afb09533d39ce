"""The export stage on a constructed partnership with hand-computed outcomes: per-purpose withholding and its
report, per-recipient IDs, whole-folder publishing, and ``verify``."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from carelink.config import ExportConfig
from carelink.errors import DataQualityError
from carelink.export import stage
from carelink.export.purposes import SHIPPED_PURPOSES, parse_purpose
from carelink.export.stage import export, pseudonym_map, verify_export
from carelink.keys import Key
from carelink.tables import read_parquet_metadata, write_json, write_parquet

CAG = "CAG 21/CAG/0001"
KEY = Key.from_secret_for_tests("export", bytes(range(32)))
CONSENT = {
    "ndop_opt_out": pl.Boolean, "ndop_opt_out_date": pl.Date, "type1_opt_out": pl.Boolean,
    "type1_opt_out_date": pl.Date, "shared_care_consent": pl.String, "shared_care_consent_date": pl.Date,
    "research_consent": pl.Boolean, "research_consent_date": pl.Date, "sensitive_category": pl.Boolean,
}
D = dt.date.fromisoformat

# person, source, consent statements, activity rows of the record
RECORDS = [
    ("P1", "gp", {}, 2),
    ("P1", "asc", {}, 1),
    ("P2", "gp", {"ndop_opt_out": True, "ndop_opt_out_date": D("2020-01-01")}, 1),
    ("P2", "asc", {}, 2),
    ("P3", "asc", {"shared_care_consent": "refused", "shared_care_consent_date": D("2024-01-01")}, 1),
    ("P3", "vcs", {}, 1),
    ("P4", "gp", {"type1_opt_out": True}, 3),
    ("P5", "vcs", {"sensitive_category": True}, 2),
    ("P6", "gp", {"research_consent": True, "research_consent_date": D("2023-05-01")}, 1),
    ("P6", "asc", {}, 0),
    ("P7", "asc", {"research_consent": False, "research_consent_date": D("2022-01-01")}, 1),
]


def _token(index: int) -> str:
    return f"{index + 1:032x}"


@pytest.fixture(scope="module")
def inputs() -> dict:
    """Registry, nodes, activity and edges of the constructed partnership (7 people, 11 records, 15 activity rows)."""
    person_map = pl.DataFrame([(_token(i), person, source) for i, (person, source, _, _) in enumerate(RECORDS)],
                              schema={"record_token": pl.String, "person_id": pl.String, "source": pl.String},
                              orient="row")
    nodes = pl.DataFrame(
        [{"record_token": _token(i), "source": source, "age_band": "40-44", "postcode_district": "LS6",
          **{name: consent.get(name) for name in CONSENT}} for i, (_, source, consent, _) in enumerate(RECORDS)],
        schema={"record_token": pl.String, "source": pl.String, "age_band": pl.String, "postcode_district": pl.String,
                **CONSENT})
    activity_rows = [(_token(i), source, D("2025-01-01") + dt.timedelta(days=n), "contact")
                     for i, (_, source, _, count) in enumerate(RECORDS) for n in range(count)]
    activity_rows = activity_rows[::-1]  # out of order: the export sorts them
    activity = pl.DataFrame(activity_rows, schema=["record_token", "source", "activity_date", "activity_type"],
                            orient="row")
    edges = pl.DataFrame({"record_token_l": [_token(0), _token(2)], "record_token_r": [_token(1), _token(3)],
                          "match_probability": [0.99, 0.97]})
    return {
        "person_map": person_map, "nodes": nodes, "edges": edges,
        "activity": {source: activity.filter(pl.col("source") == source) for source in ("asc", "gp", "vcs")},
    }


def run(inputs: dict, out: Path, recipient: str, purpose: str, legal_basis: str | None = None, **options) -> Path:
    result = export(ExportConfig(recipient, purpose, legal_basis), out, export_key=KEY, type1_sources=frozenset({"gp"}),
                    provenance={"partnership": "test"}, **inputs, **options)
    return result.folder


def report(folder: Path) -> dict:
    return json.loads((folder / "export_report.json").read_text())


def withheld(folder: Path) -> dict[str, tuple]:
    return {e["reason"]: (e["scope"], e["rule"], e["people"], e["records"], e["activity_rows"], e["decided_by_source"])
            for e in report(folder)["withheld"]}


def totals(folder: Path) -> tuple:
    r = report(folder)
    return tuple((r[k]["total"], r[k]["exported"], r[k]["withheld"]) for k in ("people", "records", "activity_rows"))


# ------------------------------------------------------------------------------------ withheld counts


def test_direct_care_report(inputs: dict, tmp_path: Path) -> None:
    folder = run(inputs, tmp_path, "cct", "direct_care")
    assert totals(folder) == ((7, 6, 1), (11, 9, 2), (15, 13, 2))
    assert withheld(folder) == {
        "shared-care objection": ("person", "requires_shared_care_consent_not_refused", 1, 2, 2, {"asc": 1})}
    assert (folder / "record_map.parquet").is_file()
    assert pl.read_parquet(folder / "record_map.parquet").height == 9


def test_planning_report(inputs: dict, tmp_path: Path) -> None:
    folder = run(inputs, tmp_path, "ics", "planning")
    assert totals(folder) == ((7, 5, 2), (11, 8, 3), (15, 7, 8))
    assert withheld(folder) == {
        "sensitive category": ("person", "excludes_sensitive", 1, 1, 2, {"vcs": 1}),
        "National Data Opt-out": ("person", "honours_ndop", 1, 2, 3, {"gp": 1}),
        "GP Type 1 objection": ("activity", "honours_type1", 1, 0, 3, {"gp": 1}),
    }
    assert list(withheld(folder)) == ["sensitive category", "National Data Opt-out", "GP Type 1 objection"]
    assert not (folder / "record_map.parquet").exists()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"] == {
        "people": 5, "people_withheld": 2, "records": 8, "records_withheld": 3, "activity_rows": 7,
        "activity_rows_withheld": 8, "withheld_by_reason": {"National Data Opt-out": 1, "sensitive category": 1}}
    markdown = (folder / "export_report.md").read_text()
    assert "| National Data Opt-out | person | honours_ndop |" in markdown and "| people | 7 | 5 | 2 |" in markdown


def test_research_requires_consent(inputs: dict, tmp_path: Path) -> None:
    folder = run(inputs, tmp_path, "uni", "research")
    assert totals(folder) == ((7, 1, 6), (11, 2, 9), (15, 1, 14))
    assert withheld(folder) == {
        "no research consent": ("person", "requires_research_consent", 6, 9, 14, {"(no statement)": 5, "asc": 1})}
    assert json.loads((folder / "manifest.json").read_text())["legal_basis"] is None


def test_research_under_a_legal_basis(inputs: dict, tmp_path: Path) -> None:
    folder = run(inputs, tmp_path, "uni", "research", CAG)
    assert totals(folder) == ((7, 4, 3), (11, 7, 4), (15, 6, 9))
    assert withheld(folder) == {
        "research consent refused": ("person", "withholds_research_refusal", 1, 1, 1, {"asc": 1}),
        "sensitive category": ("person", "excludes_sensitive", 1, 1, 2, {"vcs": 1}),
        "National Data Opt-out": ("person", "honours_ndop", 1, 2, 3, {"gp": 1}),
        "GP Type 1 objection": ("activity", "honours_type1", 1, 0, 3, {"gp": 1}),
    }
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["legal_basis"] == CAG and CAG in manifest["purpose_rules"]
    assert manifest["purpose_flags"]["requires_research_consent"] is False
    assert report(folder)["legal_basis"] == CAG and CAG in (folder / "export_report.md").read_text()
    assert read_parquet_metadata(folder / "person.parquet")["legal_basis"] == CAG


def test_a_partnership_purpose_is_exported(inputs: dict, tmp_path: Path) -> None:
    audit = parse_purpose("local_audit", {
        "description": "Audit", "honours_ndop": True, "honours_type1": False, "excludes_sensitive": False,
        "requires_shared_care_consent_not_refused": False, "requires_research_consent": False})
    folder = run(inputs, tmp_path, "audit_team", "local_audit", purposes={**SHIPPED_PURPOSES, "local_audit": audit})
    assert folder == tmp_path / "audit_team" / "local_audit"
    assert totals(folder) == ((7, 6, 1), (11, 9, 2), (15, 12, 3))
    assert verify_export(folder) == []


def test_activity_of_an_unknown_record_is_counted_not_lost(inputs: dict, tmp_path: Path) -> None:
    stray = pl.DataFrame([("f" * 32, "vcs", D("2025-02-01"), "contact")],
                         schema=["record_token", "source", "activity_date", "activity_type"], orient="row")
    activity = {**inputs["activity"], "vcs": pl.concat([inputs["activity"]["vcs"], stray])}
    folder = run({**inputs, "activity": activity}, tmp_path, "cct", "direct_care")
    assert totals(folder)[2] == (16, 13, 3)
    assert withheld(folder)["record not in the registry"] == ("activity", None, 0, 0, 1, {})


# ------------------------------------------------------------------------------------- recipients' IDs


def test_recipients_ids_do_not_join_but_the_hub_maps_both_back(inputs: dict, tmp_path: Path) -> None:
    folders = {name: run(inputs, tmp_path, name, "planning") for name in ("team_a", "team_b")}
    people = {name: pl.read_parquet(folder / "person.parquet") for name, folder in folders.items()}
    assert not set(people["team_a"]["person_id"]) & set(people["team_b"]["person_id"])
    registry_ids = inputs["person_map"]["person_id"]
    back = {name: people[name].select("person_id").join(
        pseudonym_map(registry_ids, KEY, name).rename({"person_id": "registry_id", "recipient_id": "person_id"}),
        on="person_id") for name in folders}
    for name in folders:
        assert back[name].height == people[name].height
        assert sorted(back[name]["registry_id"]) == ["P1", "P3", "P4", "P6", "P7"]
    same_person = back["team_a"].join(back["team_b"], on="registry_id", suffix="_b")
    assert same_person.height == 5
    assert (same_person["person_id"] != same_person["person_id_b"]).all()
    for name, folder in folders.items():  # activity uses the same recipient's IDs
        activity_ids = set(pl.read_parquet(folder / "activity" / "asc.parquet")["person_id"])
        assert activity_ids <= set(people[name]["person_id"])


def test_activity_is_one_file_per_source_sorted_by_person_and_date(inputs: dict, tmp_path: Path) -> None:
    folder = run(inputs, tmp_path, "cct", "direct_care")
    assert sorted(p.name for p in (folder / "activity").iterdir()) == ["asc.parquet", "gp.parquet", "vcs.parquet"]
    gp = pl.read_parquet(folder / "activity" / "gp.parquet")
    assert gp.height == 7 and gp.equals(gp.sort("person_id", "activity_date"))
    assert set(gp["source"]) == {"gp"}


# ------------------------------------------------------------------------------------------- publishing


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir())


def test_a_new_export_replaces_the_old_folder_whole(inputs: dict, tmp_path: Path) -> None:
    folder = run(inputs, tmp_path, "ics", "planning")
    (folder / "stale.txt").write_text("left from an older export")
    assert run(inputs, tmp_path, "ics", "planning") == folder
    assert not (folder / "stale.txt").exists()
    assert _siblings(folder) == ["planning"]
    assert verify_export(folder) == []


def test_a_failed_export_leaves_the_previous_one_untouched(inputs: dict, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    folder = run(inputs, tmp_path, "ics", "planning")
    before = {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    def fail(_: dict) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(stage, "report_markdown", fail)  # fails after the tables are written
    with pytest.raises(OSError, match="disk full"):
        run(inputs, tmp_path, "ics", "planning")
    assert {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert _siblings(folder) == ["planning"]
    with pytest.raises(OSError):
        run(inputs, tmp_path, "ics_new", "planning")
    assert not (tmp_path / "ics_new" / "planning").exists() and _siblings(tmp_path / "ics_new" / "planning") == []


def test_a_table_failing_validation_is_never_published(inputs: dict, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    real = stage.summary_table

    def leaky(frame: pl.DataFrame, spec):  # publishes a small count
        table = real(frame, spec)
        return type(table)(table.frame.with_columns(pl.lit(3, dtype=pl.Int64).alias(spec.measure),
                                                    pl.lit(False).alias("suppressed")), table.cells, 0)

    monkeypatch.setattr(stage, "summary_table", leaky)
    with pytest.raises(DataQualityError, match="failed validation"):
        run(inputs, tmp_path, "ics", "planning")
    assert not (tmp_path / "ics").exists() or _siblings(tmp_path / "ics" / "planning") == []


# ----------------------------------------------------------------------------------------------- verify


@pytest.fixture()
def published(inputs: dict, tmp_path: Path) -> Path:
    return run(inputs, tmp_path, "cct", "direct_care")


def _relist(folder: Path, name: str) -> None:
    """Update the manifest's checksum of one file, as a careful tamperer would."""
    from carelink.export.publish import file_entries

    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][name] = file_entries(folder)[name]
    write_json(manifest, folder / "manifest.json")


def test_a_fresh_export_verifies(published: Path) -> None:
    assert verify_export(published) == []
    manifest = json.loads((published / "manifest.json").read_text())
    assert {"person.parquet", "record_map.parquet", "export_report.json", "export_report.md", "data_dictionary.json",
            "activity/gp.parquet", "summary/people_by_postcode_district.parquet"} <= set(manifest["files"])


def test_verify_detects_a_tampered_file(published: Path) -> None:
    path = published / "activity" / "gp.parquet"
    path.write_bytes(path.read_bytes() + b"x")
    assert verify_export(published) == [f"{path}: checksum does not match the manifest"]


def test_verify_detects_an_extra_file(published: Path) -> None:
    (published / "summary" / "names.csv").write_text("P1,JOHN SMITH\n")
    assert verify_export(published) == [f"{published / 'summary' / 'names.csv'}: not in the manifest (unexpected file)"]


def test_verify_detects_a_missing_file(published: Path) -> None:
    (published / "export_report.md").unlink()
    assert verify_export(published) == [f"{published / 'export_report.md'}: missing"]


def test_verify_checks_summary_schemas(published: Path) -> None:
    path = published / "summary" / "people_by_postcode_district.parquet"
    frame = pl.read_parquet(path).with_columns(pl.lit(3, dtype=pl.Int64).alias("people"), pl.lit(False).alias("suppressed"))
    write_parquet(frame, path, read_parquet_metadata(path))
    _relist(published, "summary/people_by_postcode_district.parquet")
    problems = verify_export(published)
    assert len(problems) == 1 and "schema check failed" in problems[0]


def test_verify_checks_activity_schemas(published: Path) -> None:
    path = published / "activity" / "asc.parquet"
    write_parquet(pl.read_parquet(path).with_columns(pl.lit("P1").alias("person_id")), path, read_parquet_metadata(path))
    _relist(published, "activity/asc.parquet")
    problems = verify_export(published)
    assert len(problems) == 1 and "schema check failed" in problems[0]


def test_verify_detects_a_table_from_another_recipient(inputs: dict, published: Path, tmp_path: Path) -> None:
    other = run(inputs, tmp_path / "other", "someone_else", "direct_care")
    shutil.copy(other / "person.parquet", published / "person.parquet")
    _relist(published, "person.parquet")
    assert verify_export(published) == [f"{published / 'person.parquet'}: made for another recipient"]


def test_verify_refuses_a_folder_without_a_manifest(tmp_path: Path) -> None:
    assert verify_export(tmp_path) == [f"{tmp_path / 'manifest.json'}: missing"]
    (tmp_path / "manifest.json").write_text("[]")
    assert verify_export(tmp_path) == [f"{tmp_path / 'manifest.json'}: not a carelink export manifest"]
