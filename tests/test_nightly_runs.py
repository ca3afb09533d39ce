"""Several nights of deliveries: person IDs stay stable, incremental runs agree with full rebuilds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from carelink.config import load_config
from carelink.link.evaluate import evaluate_run
from carelink.pipeline import run_all
from carelink.synth import generate_nights
from carelink.tables import file_sha256
from carelink.workspace import Workspace

NIGHTS = 3


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("nights")
    generate_nights(root / "data", people=1500, seed=4, nights=NIGHTS)
    incremental, full = Workspace(root / "incremental"), Workspace(root / "full")
    runs = []
    for night in range(1, NIGHTS + 1):
        folder = root / "data" / f"night_{night:02d}"
        config = load_config(folder / "pipeline.yaml")
        inc = run_all(config, incremental)
        if night == 1:  # the same keys, so the two workspaces differ only in incremental vs full linking
            shutil.copytree(root / "incremental" / "keys", root / "full" / "keys")
        ref = run_all(config, full, full=True)
        runs.append({"folder": folder, "incremental": inc, "full": ref})
    return {"root": root, "runs": runs, "incremental": incremental}


def _partition(run_folder: Path) -> pl.DataFrame:
    """Each record (by source and record id) and its fellow records."""
    reid = pl.concat([pl.read_parquet(p).with_columns(pl.lit(p.parent.name).alias("source"))
                      for p in (run_folder / "pseudonymise").glob("*/reid_map.parquet")])
    person_map = pl.read_parquet(run_folder / "link" / "person_map.parquet").select("record_token", "person_id")
    records = reid.join(person_map, on="record_token").with_columns(
        (pl.col("source") + ":" + pl.col("record_id")).alias("record"))
    groups = records.group_by("person_id").agg(pl.col("record").sort().str.join(",").alias("group"))
    return records.select("record", "person_id").join(groups, on="person_id")


def test_incremental_runs_score_only_what_changed(nights: dict) -> None:
    first, *later = nights["runs"]
    assert first["incremental"].link.records_rescored == first["incremental"].link.records
    for night in later:
        link = night["incremental"].link
        assert 0 < link.records_rescored < 0.05 * link.records


def test_incremental_agrees_with_a_full_rebuild(nights: dict) -> None:
    for night in nights["runs"]:
        inc = _partition(night["incremental"].run.folder)
        ref = _partition(night["full"].run.folder)
        same = inc.join(ref, on="record", suffix="_full").filter(pl.col("group") == pl.col("group_full"))
        assert same.height / inc.height >= 0.999


def test_existing_people_keep_their_ids_across_nights(nights: dict) -> None:
    runs = nights["runs"]
    for before, after in zip(runs, runs[1:], strict=False):
        old = pl.read_parquet(before["incremental"].run.folder / "link" / "person_map.parquet")
        new = pl.read_parquet(after["incremental"].run.folder / "link" / "person_map.parquet")
        both = old.join(new, on="record_token", suffix="_new")
        kept = (both["person_id"] == both["person_id_new"]).mean()
        assert kept >= 0.99
        changed_ids = set(both.filter(pl.col("person_id") != pl.col("person_id_new"))["person_id"])
        history = pl.read_parquet(after["incremental"].run.folder / "link" / "history.parquet")
        recorded = set(history.filter(pl.col("run_id") == after["incremental"].run.run_id)
                       .select(pl.concat_list("person_id", "related_person_id").explode()).to_series().drop_nulls())
        assert changed_ids <= recorded  # every ID that moved is explained by a merge or split event


def test_linkage_stays_accurate_every_night(nights: dict) -> None:
    for night in nights["runs"]:
        scores = evaluate_run(night["incremental"].run.folder, night["folder"] / "truth.csv")
        assert scores["f1"] >= 0.95, scores
        assert scores["truth_records_not_in_run"] == 0


def test_later_nights_carry_unchanged_records_and_deliver_the_same_files(nights: dict) -> None:
    first, *later = nights["runs"]
    assert all(r.records_carried == 0 for r in first["incremental"].pseudonymise)
    assert all(r.records_carried == 0 for r in first["incremental"].ingest)
    for night in later:
        inc, full = night["incremental"], night["full"]
        carried = sum(r.records_carried for r in inc.pseudonymise)
        records = sum(r.records for r in inc.pseudonymise)
        assert 0.9 * records < carried < records  # most records unchanged, some new or changed every night
        assert all(r.records_carried == 0 for r in full.pseudonymise)
        for result in inc.pseudonymise:
            scan = json.loads((result.folder / "pseudonymisation_report.json").read_text(encoding="utf-8"))["leak_scan"]
            assert scan["passed"] and scan["records_compared_before"] == result.records_carried
            for name in ("nodes.parquet", "activity.parquet", "reid_map.parquet"):
                ours = result.folder / name
                theirs = full.run.folder / "pseudonymise" / result.source / name
                assert file_sha256(ours) == file_sha256(theirs), (result.source, name)
        standardised = sum(r.records.rows_standardised for r in inc.ingest)
        assert 0.9 * standardised < sum(r.records_carried for r in inc.ingest) < standardised
        assert all(r.records_carried == 0 for r in full.ingest)
        counted = json.loads((inc.run.folder / "manifest.json").read_text(encoding="utf-8"))["counts"]["sources"]
        assert {name: c["carried_by_ingest"] for name, c in counted.items()} == {r.source: r.records_carried for r in inc.ingest}
        assert {name: c["carried_by_pseudonymise"] for name, c in counted.items()} == {
            r.source: r.records_carried for r in inc.pseudonymise}
        for result in inc.ingest:
            for name in ("standardised.parquet", "quarantine.parquet", "row_fingerprints.parquet",
                         "activity.parquet", "activity_quarantine.parquet"):
                ours = result.folder / name
                theirs = full.run.folder / "ingest" / result.source / name
                assert file_sha256(ours) == file_sha256(theirs), (result.source, name)


def test_recipient_ids_from_the_store_are_the_keyed_ids_every_night(nights: dict) -> None:
    """Each night's export, with recipient IDs from the store of earlier nights, carries the IDs the export key
    gives the registry's people."""
    from carelink.export.pseudonyms import pseudonym_map

    workspace = nights["incremental"]
    assert sorted(p.name for p in (workspace.state / "recipient_ids").iterdir()) == [
        "cct_analytics.ids", "cct_direct_care.ids"]
    for night in nights["runs"]:
        export_key = workspace.resolve_key(load_config(night["folder"] / "pipeline.yaml"), "export")
        run = night["incremental"].run
        records = pl.read_parquet(run.export / "cct_direct_care" / "direct_care" / "record_map.parquet")
        registry = pl.read_parquet(run.link / "person_map.parquet").select("record_token", "person_id")
        expected = pseudonym_map(registry["person_id"], export_key, "cct_direct_care")
        joined = (records.select("record_token", pl.col("person_id").alias("exported"))
                  .join(registry, on="record_token").join(expected, on="person_id"))
        assert joined.height == records.height > 0
        assert (joined["exported"] == joined["recipient_id"]).all()
