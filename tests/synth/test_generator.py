"""Tests of the synthetic partnership generator: files, determinism, truth, and realism figures."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from carelink.synth import (
    ALL_CASES,
    PLACEHOLDER_NHS_NUMBERS,
    SOURCES,
    generate_partnership,
    is_test_range,
    is_valid_nhs_number,
    nhs,
)

SPECS = {s.name: s for s in SOURCES}
POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9]{1,2} [0-9][ABDEFGHJLNPQRSTUWXYZ]{2}$")


def read_extract(folder: Path, source: str) -> pl.DataFrame:
    """Read one extract as strings (dates stay Date in the parquet extract)."""
    spec = SPECS[source]
    path = folder / spec.path
    if spec.format == "parquet":
        return pl.read_parquet(path)
    text = path.read_bytes().decode(spec.encoding)
    return pl.read_csv(text.encode("utf-8"), infer_schema=False)


def with_truth(folder: Path, truth: pl.DataFrame, source: str) -> pl.DataFrame:
    """Join an extract to its truth rows, with ``cases`` as a list of labels."""
    df = read_extract(folder, source)
    labels = pl.col("cases").fill_null("").str.split(";").list.eval(pl.element().filter(pl.element() != ""))
    t = truth.filter(pl.col("source") == source).with_columns(labels)
    return df.join(t, left_on=SPECS[source].id_column, right_on="record_id", how="inner", maintain_order="left")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synth2000")
    summary = generate_partnership(folder, people=2000, seed=11)
    truth = pl.read_csv(folder / "truth.csv", infer_schema=False)
    return folder, summary, truth


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synth5000")
    summary = generate_partnership(folder, people=5000, seed=3)
    truth = pl.read_csv(folder / "truth.csv", infer_schema=False)
    return folder, summary, truth


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    a = generate_partnership(tmp_path / "a", people=300, seed=5)
    b = generate_partnership(tmp_path / "b", people=300, seed=5)
    generate_partnership(tmp_path / "c", people=300, seed=6)
    names = sorted(p.name for p in a.files)
    assert names == sorted(p.name for p in b.files)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert a.records_per_source == b.records_per_source and a.activity_per_source == b.activity_per_source
    changed = [n for n in names if (tmp_path / "a" / n).read_bytes() != (tmp_path / "c" / n).read_bytes()]
    assert set(changed) >= {"gp.csv", "acute.csv", "community.parquet", "social_care.csv", "voluntary.csv", "truth.csv"}


def test_summary_matches_files(small):
    folder, summary, truth = small
    assert summary.people == 2000
    assert set(summary.records_per_source) == set(SPECS)
    for source, count in summary.records_per_source.items():
        assert len(read_extract(folder, source)) == count
    assert all(p.exists() and p.parent == folder for p in summary.files)
    assert {p.name for p in summary.files} >= {"truth.csv", "pipeline.yaml", "gp_activity.csv"}
    # Each person is in 1-5 sources; around 2.4 records per person on average.
    assert 2.0 < summary.records / summary.people < 2.9
    per_person = truth.group_by("entity_id").agg(pl.col("source").n_unique().alias("n"))
    assert per_person["n"].min() >= 1 and per_person["n"].max() <= 5
    assert per_person.height == 2000


def test_truth_covers_every_record_exactly_once(small):
    folder, summary, truth = small
    assert truth.columns == ["source", "record_id", "entity_id", "cases"]
    assert truth.select("source", "record_id").is_unique().all()
    assert truth.height == summary.records
    for source in SPECS:
        ids = read_extract(folder, source)[SPECS[source].id_column].cast(pl.Utf8)
        assert ids.is_unique().all()
        assert set(ids) == set(truth.filter(pl.col("source") == source)["record_id"])
    labels = {label for c in truth["cases"].drop_nulls() for label in c.split(";")}
    assert labels <= set(ALL_CASES)


def test_nhs_numbers_are_valid_test_range_unless_deliberately_bad(small):
    folder, _, truth = small
    seen_bad = Counter()
    for source in SPECS:
        df = with_truth(folder, truth, source)
        col = SPECS[source].columns["nhs_number"]
        for value, cases in zip(df[col], df["cases"], strict=True):
            if value is None:
                continue
            if "nhs_mistyped" in cases:
                assert not is_valid_nhs_number(value)
                seen_bad["mistyped"] += 1
            elif "placeholder_nhs" in cases:
                assert value.replace(" ", "") in PLACEHOLDER_NHS_NUMBERS
                seen_bad["placeholder"] += 1
            else:
                assert is_valid_nhs_number(value) and is_test_range(value), (source, value)
                assert len(set(value.replace(" ", ""))) > 1  # never a repeated-digit placeholder
    assert seen_bad["mistyped"] > 0 and seen_bad["placeholder"] > 0


def test_true_nhs_number_identifies_the_person(small):
    folder, _, truth = small
    pairs = set()
    for source in SPECS:
        df = with_truth(folder, truth, source)
        col = SPECS[source].columns["nhs_number"]
        bad = {"nhs_mistyped", "placeholder_nhs", "relative_nhs", "nhs_missing"}
        for value, entity, cases in zip(df[col], df["entity_id"], df["cases"], strict=True):
            if not bad & set(cases):
                pairs.add((entity, value.replace(" ", "")))
    entities = Counter(e for e, _ in pairs)
    numbers = Counter(n for _, n in pairs)
    assert max(entities.values()) == 1 and max(numbers.values()) == 1


def test_missing_nhs_rates_per_source(medium):
    folder, _, truth = medium
    expected = {"gp": (0.004, 0.025), "acute": (0.012, 0.045), "community": (0.008, 0.04),
                "social_care": (0.09, 0.17), "voluntary": (0.42, 0.58)}  # fmt: skip
    for source, (lo, hi) in expected.items():
        df = read_extract(folder, source)
        rate = df[SPECS[source].columns["nhs_number"]].is_null().mean()
        assert lo <= rate <= hi, (source, rate)
        labelled = with_truth(folder, truth, source)["cases"].list.contains("nhs_missing").mean()
        assert labelled == pytest.approx(rate)


def test_social_care_is_latin1_with_accented_names(small):
    folder, _, _ = small
    raw = (folder / "social_care.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # accented letters are single latin-1 bytes, not UTF-8 sequences
    text = raw.decode("latin-1")
    accented = {ch for ch in text if ord(ch) > 127}
    assert accented and accented <= set("ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝàáâãäåæçèéêëìíîïñòóôõöøùúûüý")
    for source in ("gp", "acute", "voluntary", "truth"):
        path = folder / (SPECS[source].path if source in SPECS else "truth.csv")
        path.read_bytes().decode("utf-8")


def test_case_labels_for_households_and_duplicates(small):
    folder, _, truth = small
    counts = Counter(label for c in truth["cases"].drop_nulls() for label in c.split(";"))
    for label in ("duplicate", "twin", "care_home", "jr_sr", "moved", "nickname", "typo_given", "dob_swap",
                  "nhs_missing", "middle_name", "swap_names", "known_by_middle", "marriage", "default_dob"):  # fmt: skip
        assert counts[label] > 0, label
    # A duplicate is a second record of the same person in the same source.
    dups = truth.filter(pl.col("cases").str.contains("duplicate"))
    per_source = truth.group_by("source", "entity_id").len()
    joined = dups.join(per_source, on=["source", "entity_id"])
    assert (joined["len"] >= 2).all()


def test_twins_share_surname_dob_and_postcode_with_consecutive_nhs(small):
    folder, _, truth = small
    gp = with_truth(folder, truth, "gp").filter(pl.col("cases").list.len() == 1, pl.col("cases").list.first() == "twin")
    groups = gp.group_by(pl.col("surname").str.to_uppercase(), "dob", "postcode").agg(
        pl.col("entity_id").n_unique().alias("people"), pl.col("forename").str.to_uppercase(), pl.col("nhs_no")
    )
    pairs = groups.filter(pl.col("people") == 2)
    assert pairs.height > 0
    pool = nhs.valid_test_numbers()
    for names, numbers in zip(pairs["forename"], pairs["nhs_no"], strict=True):
        assert names[0] != names[1]
        positions = sorted(int(np.searchsorted(pool, int(x))) for x in numbers)
        assert positions[1] - positions[0] == 1  # the next valid number after the co-twin's


def test_care_homes_hold_many_elderly_residents_at_one_address(small):
    folder, _, truth = small
    gp = with_truth(folder, truth, "gp").filter(
        pl.col("cases").list.len() == 1, pl.col("cases").list.first() == "care_home"
    )
    homes = gp.group_by("postcode").agg(pl.col("entity_id").n_unique().alias("residents"), pl.col("address_line_1"),
                                        pl.col("dob").str.to_date("%Y-%m-%d").min().alias("oldest"),
                                        pl.col("dob").str.to_date("%Y-%m-%d").max().alias("youngest"))  # fmt: skip
    biggest = homes.sort("residents", descending=True).row(0, named=True)
    assert biggest["residents"] >= 10
    assert Counter(biggest["address_line_1"]).most_common(1)[0][1] >= 10
    assert biggest["youngest"] <= dt.date(1966, 1, 1)


def test_jr_sr_share_forename_surname_and_address(small):
    folder, _, truth = small
    gp = with_truth(folder, truth, "gp").filter(
        pl.col("cases").list.len() == 1, pl.col("cases").list.first() == "jr_sr"
    )
    groups = gp.group_by(pl.col("forename").str.to_uppercase(), pl.col("surname").str.to_uppercase(), "postcode").agg(
        pl.col("entity_id").n_unique().alias("people"), pl.col("dob").n_unique().alias("dobs")
    )
    assert groups.filter((pl.col("people") == 2) & (pl.col("dobs") == 2)).height > 0


def test_population_is_uk_like_and_elderly(medium):
    folder, _, truth = medium
    gp = with_truth(folder, truth, "gp").filter(pl.col("cases").list.len() == 0)
    age = gp.select((pl.lit(dt.date(2026, 11, 1)) - pl.col("dob").str.to_date("%Y-%m-%d")).dt.total_days() / 365.25)
    age = age.to_series()
    assert 0 <= age.min() and age.max() < 105
    assert 0.2 < (age >= 65).mean() < 0.5
    assert gp["postcode"].str.contains(POSTCODE.pattern).mean() > 0.9
    compact = gp["postcode"].str.replace(" ", "", literal=True).str.to_uppercase()
    assert compact.str.contains(POSTCODE.pattern.replace(" ", "")).all()
    assert gp["gender"].is_in(["M", "F", "U"]).all()
    surnames = Counter(gp["surname"].str.to_uppercase())
    top = [name for name, _ in surnames.most_common(25)]
    assert "SMITH" in top[:10] and ("KHAN" in top or "PATEL" in top)
    assert surnames.most_common(1)[0][1] / gp.height < 0.04  # skewed but not absurdly so
    assert gp["address_line_1"].str.contains(r"^(\w[\w' ]+, )?\d+ [A-Z]").mean() > 0.95


def test_sources_differ_in_format(small):
    folder, _, _ = small
    acute = read_extract(folder, "acute")
    assert acute["DATE_OF_BIRTH"].drop_nulls().str.contains(r"^\d{2}/\d{2}/\d{4}$").all()
    assert acute["SEX"].is_in(["Male", "Female", "Unknown"]).all()
    assert acute["NHS Number"].drop_nulls().str.contains(r"^\d{3} \d{3} \d{4}$").any()
    assert (acute["PATIENT_SURNAME"] == acute["PATIENT_SURNAME"].str.to_uppercase()).all()
    assert acute["hospital_number"].str.contains(r"^RX\d{7}$").all()
    community = read_extract(folder, "community")
    assert community.schema["birth_date"] == pl.Date
    social = read_extract(folder, "social_care")
    assert social["dob"].drop_nulls().str.contains(r"^\d{2}-\d{2}-\d{4}$").all()
    assert social["postcode"].drop_nulls().str.contains(r"^[a-z]{1,2}\d{1,2}\d[a-z]{2}$").mean() > 0.3
    voluntary = read_extract(folder, "voluntary")
    assert set(voluntary["gender"].drop_nulls()) <= {"male", "female", "other"}
    assert (voluntary["date_of_birth"] == "01/01/1900").any() or (social["dob"] == "01-01-1900").any()


def test_activity_files(small):
    folder, summary, _ = small
    start, end = dt.date(2023, 11, 1), dt.date(2026, 11, 1)
    for source, spec in SPECS.items():
        act = pl.read_csv(folder / f"{source}_activity.csv", infer_schema=False)
        assert act.columns == [spec.id_column, "activity_date", "activity_type"]
        ids = set(read_extract(folder, source)[spec.id_column].cast(pl.Utf8))
        assert set(act[spec.id_column]) <= ids
        assert act.group_by(spec.id_column).len()["len"].max() <= 10
        dates = act["activity_date"].str.to_date(spec.activity_date_format)
        assert dates.min() >= start and dates.max() < end
        assert set(act["activity_type"]) <= set(spec.activity_types)
        assert summary.activity_per_source[source] == act.height


def test_consent_fields(medium):
    folder, _, truth = medium
    gp = read_extract(folder, "gp")
    assert 0.02 < (gp["ndop_opt_out"] == "Y").mean() < 0.08
    assert 0.01 < (gp["type1_opt_out"] == "Y").mean() < 0.06
    for source in ("gp", "acute", "social_care"):
        df = read_extract(folder, source)
        assert set(df["scr_consent"].drop_nulls()) <= {"granted", "withdrawn", "refused"}
        assert (df["scr_consent"] == "granted").sum() > (df["scr_consent"] == "withdrawn").sum() > 0
        assert (df["scr_consent"].is_null() == df["scr_consent_date"].is_null()).all()
    assert truth["cases"].str.contains("consent_conflict").any()


def test_pipeline_yaml_lists_the_five_sources(small):
    folder, _, _ = small
    config = yaml.safe_load((folder / "pipeline.yaml").read_text(encoding="utf-8"))
    assert config["partnership"] == "demo" and str(config["reference_date"]) == "2026-11-01"
    assert [s["name"] for s in config["sources"]] == ["gp", "acute", "community", "social_care", "voluntary"]
    for entry in config["sources"]:
        assert entry["kind"] in ("health", "social_care", "voluntary")
        assert (folder / entry["path"]).is_file() and (folder / entry["activity"]["path"]).is_file()
        header = read_extract(folder, entry["name"]).columns
        assert set(entry["columns"].values()) <= set(header)
        assert entry["format"] == ("parquet" if entry["name"] == "community" else "csv")
        assert ("date_format" in entry) == (entry["format"] == "csv")
    assert config["sources"][3]["encoding"] == "latin-1"
    assert {e["purpose"] for e in config["exports"]} == {"direct_care", "planning"}


def test_tiny_and_invalid_sizes(tmp_path):
    summary = generate_partnership(tmp_path, people=1, seed=0)
    assert summary.people == 1 and summary.records >= 1
    with pytest.raises(ValueError):
        generate_partnership(tmp_path, people=0, seed=0)
    assert np.isfinite(summary.records)
