"""Tests of the nightly deliveries: determinism, stable ids, change rates checked by diffing extracts."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from carelink.config import load_config
from carelink.synth import (
    ALL_CASES,
    SOURCES,
    UPDATE_CASES,
    generate_nights,
    generate_partnership,
    is_valid_nhs_number,
    night_folder,
)

SPECS = {s.name: s for s in SOURCES}
PEOPLE, SEED, NIGHTS = 1500, 11, 3


def read_extract(folder: Path, source: str) -> pl.DataFrame:
    """Read one extract with every column as a string (the parquet dates too)."""
    spec = SPECS[source]
    path = folder / spec.path
    if spec.format == "parquet":
        return pl.read_parquet(path).with_columns(pl.all().cast(pl.Utf8))
    text = path.read_bytes().decode(spec.encoding)
    return pl.read_csv(text.encode("utf-8"), infer_schema=False)


def read_truth(folder: Path) -> pl.DataFrame:
    return pl.read_csv(folder / "truth.csv", infer_schema=False)


def diff(before: pl.DataFrame, after: pl.DataFrame, id_col: str) -> dict[str, set[str]]:
    """Record ids new in ``after``, deleted from ``before`` and present in both with a changed row."""
    old, new = set(before[id_col]), set(after[id_col])
    both = before.join(after, on=id_col, how="inner", suffix="__new")
    changed = pl.lit(False)
    for col in before.columns:
        if col != id_col:
            changed = changed | pl.col(col).ne_missing(pl.col(f"{col}__new"))
    updated = set(both.filter(changed)[id_col])
    return {"new": new - old, "deleted": old - new, "updated": updated}


def labels(cases: str | None) -> set[str]:
    return set(cases.split(";")) if cases else set()


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    root = tmp_path_factory.mktemp("nights")
    summaries = generate_nights(root, people=PEOPLE, seed=SEED, nights=NIGHTS)
    return root, summaries


def test_layout_and_summaries(nights):
    root, summaries = nights
    assert [s.night for s in summaries] == [1, 2, 3]
    assert sorted(p.name for p in root.iterdir()) == ["night_01", "night_02", "night_03"]
    expected = {spec.path for spec in SOURCES} | {f"{name}_activity.csv" for name in SPECS}
    expected |= {"truth.csv", "pipeline.yaml", "changes.json"}
    for s in summaries:
        folder = night_folder(root, s.night)
        assert {p.name for p in folder.iterdir()} == expected
        assert {p.name for p in s.files} == expected and all(p.parent == folder for p in s.files)
        assert json.loads((folder / "changes.json").read_text(encoding="utf-8")) == s.changes
        for source, count in s.records_per_source.items():
            assert len(read_extract(folder, source)) == count == s.changes["sources"][source]["records"]
        assert s.people == read_truth(folder)["entity_id"].n_unique()
    first = summaries[0].changes
    assert first["night"] == 1 and first["previous"] is None
    assert all(c["new"] == c["records"] and c["updated"] == c["deleted"] == 0 for c in first["sources"].values())


def test_same_seed_gives_identical_folders_and_night_one_is_the_partnership(nights, tmp_path):
    root, _ = nights
    generate_nights(tmp_path / "again", people=PEOPLE, seed=SEED, nights=NIGHTS)
    generate_nights(tmp_path / "shorter", people=PEOPLE, seed=SEED, nights=2)
    for night in (1, 2, 3):
        a = night_folder(root, night)
        for path in a.iterdir():
            assert path.read_bytes() == (night_folder(tmp_path / "again", night) / path.name).read_bytes(), path
            if night <= 2:  # a night does not depend on how many nights follow it
                assert path.read_bytes() == (night_folder(tmp_path / "shorter", night) / path.name).read_bytes()
    generate_partnership(tmp_path / "single", people=PEOPLE, seed=SEED)
    for path in (tmp_path / "single").iterdir():
        assert path.read_bytes() == (night_folder(root, 1) / path.name).read_bytes(), path.name
    generate_nights(tmp_path / "other", people=PEOPLE, seed=SEED + 1, nights=2)
    for name in ("gp.csv", "truth.csv", "changes.json"):
        assert (night_folder(root, 2) / name).read_bytes() != (night_folder(tmp_path / "other", 2) / name).read_bytes()


def test_changes_match_a_diff_of_the_extracts_at_about_the_rates(nights):
    root, summaries = nights
    totals = {"previous": 0, "new": 0, "updated": 0, "deleted": 0}
    for night in range(2, NIGHTS + 1):
        before, after = night_folder(root, night - 1), night_folder(root, night)
        changes = summaries[night - 1].changes
        truth = read_truth(after)
        for source, spec in SPECS.items():
            old, new = read_extract(before, source), read_extract(after, source)
            d = diff(old, new, spec.id_column)
            figures = changes["sources"][source]
            assert figures["previous_records"] == len(old) and figures["records"] == len(new)
            for kind in ("new", "updated", "deleted"):
                assert figures[kind] == len(d[kind]), (night, source, kind)
            assert sum(figures["new_by_reason"].values()) == figures["new"]
            assert sum(figures["updated_by_kind"].values()) == figures["updated"]
            assert sum(figures["deleted_by_reason"].values()) == figures["deleted"]
            # The records labelled updated_* are exactly the ones whose row changed.
            t = truth.filter(pl.col("source") == source)
            flagged = {r for r, c in zip(t["record_id"], t["cases"], strict=True) if labels(c) & set(UPDATE_CASES)}
            assert flagged == d["updated"]
            for kind, count in figures["updated_by_kind"].items():
                assert t["cases"].str.contains(f"updated_{kind}").sum() == count
            totals["previous"] += len(old)
            for kind in ("new", "updated", "deleted"):
                totals[kind] += len(d[kind])
    rate = {k: totals[k] / totals["previous"] for k in ("new", "updated", "deleted")}
    assert 0.006 < rate["new"] < 0.015, rate
    assert 0.0025 < rate["updated"] < 0.008, rate
    assert 0.0005 < rate["deleted"] < 0.0045, rate
    assert sum(summaries[-1].changes["sources"]["gp"]["new_by_reason"].values()) > 0


def test_truth_covers_every_record_exactly_once_each_night(nights):
    root, _ = nights
    for night in range(1, NIGHTS + 1):
        folder = night_folder(root, night)
        truth = read_truth(folder)
        assert truth.columns == ["source", "record_id", "entity_id", "cases"]
        assert truth.select("source", "record_id").is_unique().all()
        for source, spec in SPECS.items():
            ids = read_extract(folder, source)[spec.id_column]
            assert ids.is_unique().all()
            assert set(ids) == set(truth.filter(pl.col("source") == source)["record_id"])
        seen = {label for c in truth["cases"].drop_nulls() for label in c.split(";")}
        assert seen <= set(ALL_CASES) | set(UPDATE_CASES)
        if night == 1:
            assert not seen & set(UPDATE_CASES)
        else:
            assert seen >= {"updated_moved", "updated_nhs"}


def test_record_ids_and_entity_ids_are_stable(nights):
    root, _ = nights
    entity_of: dict[tuple[str, str], str] = {}
    gone: set[tuple[str, str]] = set()
    entities_before: set[str] = set()
    for night in range(1, NIGHTS + 1):
        truth = read_truth(night_folder(root, night))
        current = {(s, r): e for s, r, e in truth.select("source", "record_id", "entity_id").iter_rows()}
        assert not set(current) & gone, "a deleted record id came back"
        for key, entity in current.items():
            assert entity_of.get(key, entity) == entity, key
        if night > 1:
            gone |= set(entity_of) - set(current)
            new_entities = set(current.values()) - entities_before
            assert new_entities, "no one arrived"
            assert new_entities.isdisjoint(entity_of.values())  # arrivals get entity ids never used before
        entity_of.update(current)
        entities_before = set(current.values())


def test_updates_change_what_they_say(nights):
    root, _ = nights
    checked = set()
    for night in range(2, NIGHTS + 1):
        truth = read_truth(night_folder(root, night)).filter(pl.col("cases").str.contains("updated_"))
        for source, spec in SPECS.items():
            cols = spec.columns
            old = read_extract(night_folder(root, night - 1), source)
            new = read_extract(night_folder(root, night), source)
            both = old.join(new, on=spec.id_column, suffix="__new")
            t = truth.filter(pl.col("source") == source)
            for record_id, cases in zip(t["record_id"], t["cases"], strict=True):
                row = both.filter(pl.col(spec.id_column) == record_id).row(0, named=True)
                changed = {c for c in old.columns if c != spec.id_column and row[c] != row[f"{c}__new"]}
                kinds = labels(cases) & set(UPDATE_CASES)
                assert len(kinds) == 1
                kind = kinds.pop()
                checked.add(kind)
                allowed = {
                    "updated_moved": {cols["address"], cols["postcode"]},
                    "updated_nhs": {cols["nhs_number"]},
                    "updated_surname": {cols["family_name"]},
                    "updated_typo": {cols["given_name"], cols["family_name"], cols["postcode"]},
                    "updated_dob": {cols["date_of_birth"]},
                }[kind]
                assert changed and changed <= allowed, (source, record_id, kind, changed)
                if kind == "updated_moved":
                    assert cols["postcode"] in changed and "moved" not in labels(cases)
                if kind == "updated_nhs":
                    assert is_valid_nhs_number(row[f"{cols['nhs_number']}__new"])
    assert checked >= {"updated_moved", "updated_nhs", "updated_surname"}


def test_every_night_loads_as_a_pipeline_config(nights):
    root, _ = nights
    for night in range(1, NIGHTS + 1):
        folder = night_folder(root, night)
        config = load_config(folder / "pipeline.yaml")
        assert config.reference_date == dt.date(2026, 11, 1) + dt.timedelta(days=night - 1)
        assert [s.name for s in config.sources] == list(SPECS)
        for name, spec in SPECS.items():
            assert (folder / spec.path).is_file() and (folder / f"{name}_activity.csv").is_file()


def test_activity_follows_the_records(nights):
    root, summaries = nights
    for night in range(2, NIGHTS + 1):
        day = dt.date(2026, 11, 1) + dt.timedelta(days=night - 2)  # the day before the delivery
        for source, spec in SPECS.items():
            before, after = night_folder(root, night - 1), night_folder(root, night)
            old = pl.read_csv(before / f"{source}_activity.csv", infer_schema=False)
            new = pl.read_csv(after / f"{source}_activity.csv", infer_schema=False)
            ids = set(read_extract(after, source)[spec.id_column])
            assert set(new[spec.id_column]) <= ids
            dates = new["activity_date"].str.to_date(spec.activity_date_format)
            assert dates.max() <= day
            carried = new.filter(dates < day)
            assert carried.equals(old.filter(pl.col(spec.id_column).is_in(list(ids))))
            figures = summaries[night - 1].changes["sources"][source]
            assert (
                figures["activity_rows"]
                == len(new)
                == len(old) - figures["activity_removed"] + figures["activity_added"]
            )


def test_invalid_nights(tmp_path):
    with pytest.raises(ValueError):
        generate_nights(tmp_path, people=10, seed=0, nights=0)
    with pytest.raises(ValueError):
        generate_nights(tmp_path, people=0, seed=0, nights=2)
