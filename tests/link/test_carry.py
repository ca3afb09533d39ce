"""Carrying last night's people for the components no change touched gives what clustering everyone gives."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest

from carelink.config import load_config
from carelink.link.clustering import COMPONENT, TALLIES
from carelink.pipeline import RunReport, run_all
from carelink.synth import generate_nights
from carelink.tables import read_parquet_metadata, write_parquet
from carelink.workspace import Workspace

NIGHTS = 3
#: The link stage's files that carrying people must leave as clustering everyone would write them.
COMPARED = ("registry.parquet", "history.parquet", "person_map.parquet", "population.parquet", "edges.parquet")


def _without_components(workspace: Workspace) -> None:
    """Make the current run's stored components unusable, as an earlier version's would be: the next night then
    clusters everyone, on the same scores."""
    path = workspace.current_run().link / "population.parquet"
    meta = read_parquet_metadata(path)
    del meta["clustering"]
    write_parquet(pl.read_parquet(path), path, meta)


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[RunReport, RunReport]]:
    """Each later night run twice from the same workspace: carrying people, and clustering everyone."""
    root = tmp_path_factory.mktemp("carry")
    generate_nights(root / "data", people=1200, seed=11, nights=NIGHTS)
    carrying = Workspace(root / "carrying")
    pairs = []
    for night in range(1, NIGHTS + 1):
        config = load_config(root / "data" / f"night_{night:02d}" / "pipeline.yaml")
        if night > 1:
            plain = Workspace(root / f"plain_{night}")
            shutil.copytree(carrying.root, plain.root)
            _without_components(plain)
            reference = run_all(config, plain)
        report = run_all(config, carrying)
        if night > 1:
            pairs.append((report, reference))
    return pairs


def _link_table(report: RunReport, name: str) -> pl.DataFrame:
    """A link file with tonight's run ID written as ``tonight`` (the two workspaces' runs have their own IDs)."""
    frame = pl.read_parquet(report.run.link / name)
    runs = [c for c in ("run_id", "first_run", "last_run") if c in frame.columns]
    return frame.with_columns(pl.col(c).replace(report.run.run_id, "tonight") for c in runs)


def test_carrying_people_writes_what_clustering_everyone_writes(nights: list[tuple[RunReport, RunReport]]) -> None:
    for carried, everyone in nights:
        assert carried.link is not None and everyone.link is not None
        for name in COMPARED:
            assert _link_table(carried, name).equals(_link_table(everyone, name)), name
        assert carried.link.cluster_stats == everyone.link.cluster_stats
        reports = [json.loads((r.run.link / "linkage_report.json").read_text(encoding="utf-8")) for r in (carried, everyone)]
        assert reports[0]["clustering"] == reports[1]["clustering"]


def test_most_records_keep_their_people_without_clustering_and_the_night_still_changes_people(
        nights: list[tuple[RunReport, RunReport]]) -> None:
    for carried, everyone in nights:
        assert carried.link is not None and everyone.link is not None
        assert everyone.link.records_with_people_carried == 0
        assert 0.5 * carried.link.records < carried.link.records_with_people_carried < carried.link.records
        events = _link_table(carried, "history.parquet").filter(pl.col("run_id") == "tonight")
        assert events.height and "created" in events["event"].to_list()  # the part clustered afresh did work


def test_stored_components_and_tallies_add_up_to_the_clustering_counts(
        nights: list[tuple[RunReport, RunReport]]) -> None:
    for carried, _ in nights:
        assert carried.link is not None and carried.link.cluster_stats is not None
        population = pl.read_parquet(carried.run.link / "population.parquet")
        assert population[COMPONENT].null_count() == 0
        sums = {tally: population[tally].sum() for tally in TALLIES}
        assert sums == vars(carried.link.cluster_stats)
        assert sums["edges_above_threshold"] > 0
