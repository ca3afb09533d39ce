"""The whole chain on a small generated partnership: accuracy, reconciliation, no plaintext at the hub, exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from carelink.config import load_config
from carelink.link.evaluate import evaluate_run
from carelink.pipeline import run_all
from carelink.synth import generate_partnership
from carelink.workspace import Workspace

PEOPLE = 800


@pytest.fixture(scope="module")
def partnership(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("e2e")
    generate_partnership(root / "data", people=PEOPLE, seed=11)
    config = load_config(root / "data" / "pipeline.yaml")
    workspace = Workspace(root / "workspace")
    report = run_all(config, workspace)
    return {"root": root, "config": config, "workspace": workspace, "report": report}


def test_linkage_accuracy_against_truth(partnership: dict) -> None:
    scores = evaluate_run(partnership["report"].run.folder, partnership["root"] / "data" / "truth.csv")
    assert scores["f1"] >= 0.95, scores
    assert scores["precision"] >= 0.95, scores
    assert scores["truth_records_not_in_run"] == sum(
        r.records.rows_quarantined for r in partnership["report"].ingest
    )


def test_people_by_source_count_counts_every_linked_person_once(partnership: dict) -> None:
    report = partnership["report"]
    person_map = pl.read_parquet(report.run.link / "person_map.parquet")
    held = person_map.group_by("person_id").agg(pl.col("source").n_unique().alias("n"))
    assert report.people_by_source_count == dict(sorted(held.group_by("n").len().iter_rows()))
    assert sum(report.people_by_source_count.values()) == report.link.people
    assert len(report.people_by_source_count) >= 3  # people held by one, two and more sources


def test_rows_reconcile_for_every_source(partnership: dict) -> None:
    run = partnership["report"].run
    for source in partnership["config"].sources:
        validation = json.loads((run.ingest / source.name / "validation.json").read_text())
        records = validation["records"]
        assert records["rows_in"] == records["standardised"] + records["quarantined"]
        raw_rows = (pl.read_parquet(source.table.path) if source.table.format == "parquet"
                    else pl.read_csv(source.table.path, infer_schema=False, encoding="utf8-lossy")).height
        assert records["rows_in"] == raw_rows
        activity = validation["activity"]
        assert activity["rows_in"] == activity["standardised"] + activity["quarantined"]


def _raw_identifier_values(config) -> set[str]:
    """Every identifier value in the raw extracts, upper-cased, with NHS numbers also as bare digits."""
    values: set[str] = set()
    for source in config.sources:
        spec = source.table
        frame = (pl.read_parquet(spec.path).with_columns(pl.all().cast(pl.String))
                 if spec.format == "parquet" else
                 pl.read_csv(spec.path, infer_schema=False, encoding="utf8-lossy"))
        for field in ("nhs_number", "given_name", "family_name", "date_of_birth", "postcode", "address", "record_id"):
            if field in spec.columns:
                column = frame[spec.columns[field]].drop_nulls().str.strip_chars().str.to_uppercase()
                values.update(v for v in column.to_list() if len(v) >= 3)
                if field == "nhs_number":
                    values.update(re.sub(r"\D", "", v) for v in column.to_list() if len(re.sub(r"\D", "", v)) == 10)
    return values


def _hub_files(run_folder: Path) -> list[Path]:
    hub = [p for p in (run_folder / "pseudonymise").glob("*/*.parquet") if p.name != "reid_map.parquet"]
    hub += list((run_folder / "link").rglob("*")) + list((run_folder / "export").rglob("*"))
    return [p for p in hub if p.is_file()]


def test_no_plaintext_identifier_reaches_the_hub(partnership: dict) -> None:
    identifiers = _raw_identifier_values(partnership["config"])
    assert len(identifiers) > 1000
    files = _hub_files(partnership["report"].run.folder)
    assert any(p.name == "nodes.parquet" for p in files) and any(p.name == "person.parquet" for p in files)
    for path in files:
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            for column in frame.columns:
                series = frame[column]
                if series.dtype == pl.String:
                    cells = set(series.drop_nulls().str.to_uppercase().to_list())
                elif series.dtype == pl.List(pl.String):
                    cells = set(series.explode().drop_nulls().str.to_uppercase().to_list())
                elif series.dtype.is_integer():
                    cells = set(series.drop_nulls().cast(pl.String).to_list())
                else:
                    continue
                leaked = cells & identifiers
                assert not leaked, f"{path.name}.{column} holds identifier values such as {sorted(leaked)[:3]}"
        else:
            text = path.read_text(encoding="utf-8").upper()
            words = set(re.findall(r"[A-Z0-9][A-Z0-9 '\-/]*[A-Z0-9]", text))
            digits = set(re.findall(r"\b\d{10}\b", text))
            assert not (digits & identifiers), path
            leaked = {w for w in words if w in identifiers and len(w) >= 6 and any(c.isdigit() for c in w)}
            assert not leaked, f"{path} holds {sorted(leaked)[:3]}"


def test_exports_have_one_row_per_person_and_unjoinable_ids(partnership: dict) -> None:
    run = partnership["report"].run
    folders = {(e.recipient, e.purpose): e.folder for e in partnership["report"].exports}
    assert len(folders) >= 2
    id_sets = []
    for folder in folders.values():
        person = pl.read_parquet(folder / "person.parquet")
        assert person["person_id"].n_unique() == person.height
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["counts"]["people"] == person.height
        id_sets.append(set(person["person_id"]))
    assert len(set.intersection(*id_sets)) == 0
    registry_people = pl.read_parquet(run.link / "person_map.parquet")["person_id"].n_unique()
    direct = folders[next(k for k in folders if k[1] == "direct_care")]
    withheld = json.loads((direct / "manifest.json").read_text())["counts"]["people_withheld"]
    assert pl.read_parquet(direct / "person.parquet").height + withheld == registry_people


def test_rerun_keeps_person_ids_and_export_content(partnership: dict) -> None:
    first = partnership["report"]
    second = run_all(partnership["config"], partnership["workspace"])
    before = pl.read_parquet(first.run.link / "person_map.parquet").select("record_token", "person_id").sort("record_token")
    after = pl.read_parquet(second.run.link / "person_map.parquet").select("record_token", "person_id").sort("record_token")
    assert before.equals(after)
    assert second.link is not None and not second.link.trained
    for old, new in zip(first.exports, second.exports, strict=True):
        assert pl.read_parquet(old.folder / "person.parquet").equals(pl.read_parquet(new.folder / "person.parquet"))
    assert partnership["workspace"].current_run().run_id == second.run.run_id


EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//|@import|<script[^>]+src""",
                      re.IGNORECASE)


def test_linkage_report_is_self_contained_and_consistent(partnership: dict) -> None:
    link = partnership["report"].run.link
    page = (link / "linkage_report.html").read_text(encoding="utf-8")
    assert not EXTERNAL.search(page), "the report must not load anything from outside the file"
    assert "<h2>Model</h2>" in page and "Warnings" in page
    figures = json.loads((link / "linkage_report.json").read_text())
    person_map = pl.read_parquet(link / "person_map.parquet")
    assert figures["counts"]["people"] == person_map["person_id"].n_unique()
    assert sum(figures["person_size_histogram"].values()) == figures["counts"]["people"]
    assert figures["counts"]["records"] == person_map.height
    edges = pl.read_parquet(link / "edges.parquet")
    assert sum(h["count"] for h in figures["match_weight_histogram"]) == edges.height
    assert 0.9 <= figures["estimates_without_labels"]["expected_precision"] <= 1.0
    assert {r["source"] for r in figures["link_rate_by_source"]} == {s.name for s in partnership["config"].sources}
