"""The export stage writes the same bytes as the reference implementation (``tests/export/frozen``, the stage before
its speed-up) for the same inputs and keys: every table, summary, report, dictionary and the manifest.

The inputs are a random partnership built to hit the awkward cases: people with up to 12 records (several in one
source), consent statements with ties on date, rank and source, undated statements, both opt-out resolutions,
sealed columns in some sources only, activity rows with missing dates and types, activity of records not in the
registry, edges inside and across people, and purposes that withhold nobody, some people, or everyone.
"""

from __future__ import annotations

import datetime as dt
import hmac
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from carelink.config import ExportConfig
from carelink.errors import ConfigError
from carelink.export import consent, people, pseudonyms, stage
from carelink.export.purposes import SHIPPED_PURPOSES, parse_purpose
from carelink.keys import Key

from .frozen import consent as frozen_consent
from .frozen import stage as frozen_stage

KEY = Key.from_secret_for_tests("export", bytes(range(1, 33)))
SOURCES = ("acute", "asc", "gp", "vcs")
SEALED = {"gp": ("record_id_sealed", "nhs_number_sealed"), "acute": ("record_id_sealed",)}
AUDIT = parse_purpose("local_audit", {
    "description": "Audit with everything on", "honours_ndop": True, "honours_type1": True,
    "excludes_sensitive": True, "requires_shared_care_consent_not_refused": True,
    "requires_research_consent": False, "record_map": True, "withholds_research_refusal": True})
PURPOSES = {**SHIPPED_PURPOSES, "local_audit": AUDIT}
EXPORTS = [
    ExportConfig("cct", "direct_care"),
    ExportConfig("ics", "planning"),
    ExportConfig("uni", "research"),
    ExportConfig("uni_cag", "research", "CAG 21/CAG/0001"),
    ExportConfig("audit", "local_audit"),
]
RESOLUTIONS = [None, {"ndop_opt_out": "latest", "type1_opt_out": "latest"}]


def _pick(rng: np.random.Generator, values: list, n: int, null_share: float) -> list:
    """``n`` values drawn from ``values``, a share of them null."""
    drawn = [values[i] for i in rng.integers(0, len(values), n)]
    return [None if hidden else value for value, hidden in zip(drawn, rng.random(n) < null_share, strict=True)]


def partnership(seed: int, people: int = 600) -> dict:
    """Registry, nodes, activity and edges of a random partnership (dense in ties and nulls)."""
    rng = np.random.default_rng(seed)
    sizes = rng.choice([1, 1, 2, 2, 3, 4, 5, 8, 12], people)
    person_ids = np.repeat([f"P{i:07d}" for i in range(people)], sizes)
    n = len(person_ids)
    tokens = [f"{int(x):032x}" for x in rng.choice(1 << 60, n, replace=False)]
    order = rng.permutation(n)  # registry rows not grouped by person
    sources = _pick(rng, list(SOURCES), n, 0)
    dates = [dt.date(2020, 1, 1) + dt.timedelta(days=d) for d in (0, 0, 30, 400)]
    nodes = pl.DataFrame({
        "record_token": tokens, "source": sources,
        "source_kind": ["health"] * n,
        "age_band": _pick(rng, ["5-9", "10-14", "40-44", "90+"], n, 0.2),
        "postcode_district": _pick(rng, ["LS6", "LS10", "LS1", "BD3"], n, 0.2),
        "ndop_opt_out": _pick(rng, [True, False], n, 0.6),
        "ndop_opt_out_date": _pick(rng, dates, n, 0.4),
        "type1_opt_out": _pick(rng, [True, False], n, 0.6),
        "type1_opt_out_date": _pick(rng, dates, n, 0.4),
        "shared_care_consent": _pick(rng, ["granted", "refused", "withdrawn"], n, 0.5),
        "shared_care_consent_date": _pick(rng, dates, n, 0.4),
        "research_consent": _pick(rng, [True, False, True], n, 0.5),
        "research_consent_date": _pick(rng, dates, n, 0.4),
        "sensitive_category": _pick(rng, [True, False, False, False], n, 0.5),
    }, schema_overrides={name: pl.Date for name in ("ndop_opt_out_date", "type1_opt_out_date",
                                                    "shared_care_consent_date", "research_consent_date")})
    for column in ("record_id_sealed", "nhs_number_sealed"):
        holders = [s for s, sealed in SEALED.items() if column in sealed]
        values = [f"sealed-{column[:3]}-{i}" if s in holders else None for i, s in enumerate(sources)]
        nodes = nodes.with_columns(pl.Series(column, values, dtype=pl.String))
    nodes = nodes[order]
    person_map = pl.DataFrame({"record_token": tokens, "person_id": person_ids, "first_run": "r1", "last_run": "r1",
                               "source": sources})[rng.permutation(n)]
    # activity: 0-6 rows per record, a few rows of records not in the registry
    per_record = rng.integers(0, 7, n)
    activity_tokens = np.repeat(tokens, per_record).tolist() + [f"{int(x):032x}" for x in rng.integers(1 << 61, 1 << 62, 5)]
    rows = len(activity_tokens)
    source_of = dict(zip(tokens, sources, strict=True))
    activity = pl.DataFrame({
        "record_token": activity_tokens,
        "source": [source_of.get(t, "vcs") for t in activity_tokens],
        "activity_date": _pick(rng, [dt.date(2025, 1, 1) + dt.timedelta(days=d) for d in range(40)], rows, 0.1),
        "activity_type": _pick(rng, ["contact", "admission", "referral", "A&E", "home visit"], rows, 0.1),
    }, schema_overrides={"activity_date": pl.Date})[rng.permutation(rows)]
    # edges: pairs inside people (some records with several) and across people
    left = rng.integers(0, n, 3 * n)
    right = np.clip(left + rng.integers(-3, 4, 3 * n), 0, n - 1)
    keep = left != right
    edges = pl.DataFrame({
        "record_token_l": [tokens[i] for i in left[keep]], "record_token_r": [tokens[i] for i in right[keep]],
        "match_weight": rng.normal(size=int(keep.sum())),
        "match_probability": np.round(rng.random(int(keep.sum())), 2),
    }).unique(["record_token_l", "record_token_r"], keep="first", maintain_order=True)
    return {"person_map": person_map, "nodes": nodes, "edges": edges,
            "activity": {s: activity.filter(pl.col("source") == s) for s in SOURCES}}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("resolution", RESOLUTIONS, ids=["sticky", "latest"])
@pytest.mark.parametrize("seed", [1, 2])
def test_every_file_is_byte_identical_to_the_reference(seed: int, resolution: dict | None, tmp_path: Path) -> None:
    inputs = partnership(seed)
    for target in EXPORTS:
        written = {}
        for name, module in (("new", stage), ("reference", frozen_stage)):
            result = module.export(target, tmp_path / name, export_key=KEY, type1_sources=frozenset({"gp", "acute"}),
                                   provenance={"partnership": "test", "model_sha256": "0" * 64},
                                   purposes=PURPOSES, consent_resolution=resolution, **inputs)
            written[name] = _files(result.folder)
        assert written["new"].keys() == written["reference"].keys(), target
        different = [name for name in written["new"] if written["new"][name] != written["reference"][name]]
        assert not different, (target, different)


def test_people_are_byte_identical_too() -> None:
    """The intermediate person table (before withholding) matches row for row, once sorted."""
    inputs = partnership(3)
    for resolution in RESOLUTIONS:
        new = people.people_table(inputs["person_map"], inputs["nodes"], inputs["edges"], resolution)
        old = frozen_stage._people(inputs["person_map"], inputs["nodes"], inputs["edges"], resolution)
        assert new.columns == old.columns
        assert new.sort("person_id").equals(old.sort("person_id"))


@pytest.mark.parametrize("resolution", RESOLUTIONS, ids=["sticky", "latest"])
def test_consent_resolution_matches_the_reference(resolution: dict | None) -> None:
    records = partnership(4)["nodes"].join(partnership(4)["person_map"].select("record_token", "person_id"),
                                           on="record_token")
    new = consent.resolve_consent(records, resolution)
    old = frozen_consent.resolve_consent(records, resolution)
    assert new.schema == old.schema
    assert new.sort("person_id").equals(old.sort("person_id"))


def test_an_empty_partnership_matches_the_reference(tmp_path: Path) -> None:
    inputs = partnership(5, people=10)
    empty = {"person_map": inputs["person_map"].clear(), "nodes": inputs["nodes"].clear(),
             "edges": inputs["edges"].clear(), "activity": {s: rows.clear() for s, rows in inputs["activity"].items()}}
    for target in EXPORTS[:2]:
        written = {}
        for name, module in (("new", stage), ("reference", frozen_stage)):
            result = module.export(target, tmp_path / name, export_key=KEY, provenance={"partnership": "test"},
                                   purposes=PURPOSES, **empty)
            written[name] = _files(result.folder)
        assert written["new"] == written["reference"], target


@pytest.mark.parametrize("change", ["token_twice", "null_source", "many_sources", "hash_collision", "ends_outside"])
def test_people_on_the_fallback_paths_match_the_reference(change: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry holding a token twice (edges then join by token), a node without a source or more sources than
    the bits of an integer (sources then gather as lists), person IDs and record tokens whose hashes collide
    (people then numbered by their IDs, edge ends looked up by token), edges with ends outside the registry."""
    inputs = partnership(6, people=300)
    person_map, nodes, edges = inputs["person_map"], inputs["nodes"], inputs["edges"]
    if change == "ends_outside":  # both ends, either end, and an end whose partner is in the same person
        tokens = person_map["record_token"]
        outside = pl.DataFrame({"record_token_l": ["f" * 32, tokens[0], "e" * 32], "record_token_r": ["0" * 32, "1" * 32,
                                tokens[1]], "match_weight": [1.0, 2.0, 3.0], "match_probability": [0.99, 0.98, 0.97]})
        edges = pl.concat([edges, outside])
    elif change == "hash_collision":
        monkeypatch.setattr(pl.Series, "hash", lambda self, *args, **kwargs: (self.str.len_bytes() % 3).cast(pl.UInt64))
    elif change == "token_twice":
        person_map = pl.concat([person_map, person_map.head(50).with_columns(pl.lit("P9999999").alias("person_id"))])
    elif change == "null_source":
        nodes = nodes.with_columns(pl.when(pl.int_range(pl.len()) % 7 == 0).then(None).otherwise(pl.col("source"))
                                   .alias("source"))
    else:
        nodes = nodes.with_columns(("s" + (pl.int_range(pl.len()) % 70).cast(pl.String)).alias("source"))
    new = people.people_table(person_map, nodes, edges)
    old = frozen_stage._people(person_map, nodes, edges)
    assert new.columns == old.columns
    assert new.sort("person_id").equals(old.sort("person_id"))


@pytest.mark.parametrize("key", [b"", bytes(range(32)), bytes(range(64)), bytes(range(100))])
def test_digests_are_hmac_sha256(key: bytes) -> None:
    ids = ["P1", "P0000001", "é-ü", "x" * 300, ""]
    assert [bytes(row) for row in pseudonyms._digests(key, ids)] == [hmac.digest(key, i.encode(), "sha256")[:10]
                                                                    for i in ids]


def test_dense_rank_orders_as_the_recipient_ids() -> None:
    rng = np.random.default_rng(7)
    digests = rng.integers(0, 3, (500, 10), dtype=np.uint8)  # many ties, some equal
    ids = pseudonyms._recipient_ids(digests)
    assert pseudonyms._dense_rank(digests).to_list() == ids.rank("dense").cast(pl.UInt32).to_list()
    assert ids.to_list() == ["R" + bytes(d).hex() for d in digests]
    assert (pseudonyms._from_halves(*pseudonyms._halves(digests)) == digests).all()


def test_export_all_writes_what_each_reference_export_writes(tmp_path: Path) -> None:
    frames = partnership(8)
    options = {"export_key": KEY, "type1_sources": frozenset({"gp"}), "provenance": {"partnership": "test"},
               "purposes": PURPOSES, **frames}
    results = stage.export_all(EXPORTS, tmp_path / "all", _inputs(frames), export_key=KEY,
                               provenance={"partnership": "test"}, purposes=PURPOSES)
    assert [(r.recipient, r.purpose) for r in results] == [(e.recipient, e.purpose) for e in EXPORTS]
    for target, result in zip(EXPORTS, results, strict=True):
        reference = frozen_stage.export(target, tmp_path / "reference", **options)
        assert _files(result.folder) == _files(reference.folder), target
        assert (result.people, result.people_withheld, result.activity_rows) == (
            reference.people, reference.people_withheld, reference.activity_rows)


def test_export_all_with_an_id_store_writes_the_same_bytes_night_after_night(tmp_path: Path) -> None:
    store = pseudonyms.RecipientIdStore(tmp_path / "store")
    for night, seed in enumerate((8, 11)):  # the second night meets people known and new to the store
        frames = partnership(seed)
        options = {"export_key": KEY, "type1_sources": frozenset({"gp"}), "provenance": {"partnership": "test"},
                   "purposes": PURPOSES, **frames}
        results = stage.export_all(EXPORTS, tmp_path / f"night{night}", _inputs(frames), id_store=store,
                                   export_key=KEY, provenance={"partnership": "test"}, purposes=PURPOSES)
        for target, result in zip(EXPORTS, results, strict=True):
            reference = frozen_stage.export(target, tmp_path / f"reference{night}", **options)
            assert _files(result.folder) == _files(reference.folder), (night, target)


def test_export_all_checks_every_purpose_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown purpose"):
        stage.export_all([EXPORTS[0], ExportConfig("ics", "marketing")], tmp_path, _inputs(partnership(9, people=20)),
                         export_key=KEY, provenance={}, purposes=PURPOSES)
    assert list(tmp_path.iterdir()) == []


def _inputs(frames: dict) -> stage.ExportInputs:
    return stage.export_inputs(**frames, type1_sources=frozenset({"gp"}))
