"""The fast implementations give exactly what the original construction gave (``legacy.py``, frozen before the
speed-up): the same tokens, Bloom-filter words, leak-scan findings and risk figures, on frames full of edge cases."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal, assert_series_equal

from carelink.keys import Key
from carelink.pseudonymise import encodings as enc
from carelink.pseudonymise import leakscan, risk
from carelink.pseudonymise.features import FEATURES, build_nodes
from carelink.pseudonymise.stage import CATEGORICAL

from . import legacy

KEY = Key.from_secret_for_tests("linkage", b"k" * 32)
REF = dt.date(2026, 11, 1)

GIVEN = ["CATHERINE", "PEGGY", "PEGGY SUE", "JOSÉ", "ZOË", "A", "", "ANN  MARIE", "MARY-JANE", "李", "O'NEIL"]
FAMILY = ["SMITH", "O BRIEN", "SMITH-JONES", "NGUYỄN", "Ó SÚILLEABHÁIN", "X", "", "WHITFIELD", "PEMBERTON"]
ADDRESS = ["12 HYDE PARK ROAD, LEEDS", "FLAT 3 12A HIGH STREET", "12 HIGH STREET LEEDS", "THE COTTAGE", "",
           "40 KIRKLANDC IRCUIT", "7 RUE DE L'ÉGLISE", "1 " + "LONG ROAD " * 30, "FLAT 10B 221B BAKER STREET"]
POSTCODE = ["LS6 1AB", "LS61AB", "XYZ", "LS2 9JT", "M1 1AA", "EC1A 1BB", ""]
DATES = [dt.date(1950, 6, 5), dt.date(1900, 1, 1), dt.date(2000, 2, 29), dt.date(1984, 9, 17), dt.date(2026, 3, 1),
         dt.date(1931, 11, 23), dt.date(1972, 3, 14), dt.date(2026, 11, 2), dt.date(1936, 11, 1)]
EVENTS = [dt.date(2024, 1, 2) + dt.timedelta(days=d) for d in range(0, 700, 7)]
STATUSES = ["valid", "missing", "invalid_format", "failed_check_digit"]


def standardised_frame(rows: int, seed: int) -> pl.DataFrame:
    """A standardised source with repeats, nulls, empty strings, non-ASCII text and the awkward dates."""
    rng = np.random.default_rng(seed)

    def pick(pool: list, null_share: float = 0.1) -> list:
        values = [pool[i] for i in rng.integers(0, len(pool), rows)]
        return [None if rng.random() < null_share else v for v in values]

    nhs = [f"{rng.integers(0, 10**10):010d}" for _ in range(rows // 2)] + ["9434765919", "0123456789"]
    return pl.DataFrame({
        "source": ["gp"] * rows,
        "record_id": [f"G{i:07d}" if i % 7 else f"gp-{i} x" for i in range(rows)],
        "source_row": list(range(rows)),
        "nhs_number": pick(nhs),
        "nhs_number_status": pick(STATUSES, 0.0),
        "shared_id": pick([f"LA{i}" for i in range(40)] + ["LA-77812", "12345678"], 0.5),
        "given_name": pick(GIVEN),
        "family_name": pick(FAMILY),
        "date_of_birth": pl.Series(pick(DATES), dtype=pl.Date),
        "date_of_birth_status": pick(["valid", "missing"], 0.0),
        "sex": pick(["M", "F", "U"]),
        "address": pick(ADDRESS + [f"{i} ACACIA AVENUE" for i in range(60)]),
        "postcode": pick(POSTCODE),
        "postcode_status": pick(["valid", "missing"], 0.0),
        "ndop_opt_out": pick([True, False]),
        "ndop_opt_out_date": pl.Series(pick(EVENTS, 0.8), dtype=pl.Date),
        "type1_opt_out": pick([True, False]),
        "type1_opt_out_date": pl.Series(pick(EVENTS, 0.8), dtype=pl.Date),
        "shared_care_consent": pick(["granted", "refused", "withdrawn"], 0.5),
        "shared_care_consent_date": pl.Series(pick(EVENTS, 0.5), dtype=pl.Date),
        "research_consent": pick([True, False]),
        "research_consent_date": pl.Series(pick(EVENTS, 0.8), dtype=pl.Date),
        "sensitive_category": pick([True, False]),
    })


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return standardised_frame(3000, seed=7)


@pytest.fixture(scope="module")
def nodes(frame: pl.DataFrame) -> pl.DataFrame:
    return build_nodes(frame, KEY, REF, "health")


# ---------------------------------------------------------------------------------------------- features


def test_nodes_equal_the_original_construction(frame: pl.DataFrame, nodes: pl.DataFrame) -> None:
    assert_frame_equal(nodes, legacy.build_nodes(frame, KEY, REF, "health"))


@pytest.mark.parametrize("rows", [0, 1, 2])
def test_tiny_and_empty_sources_equal_the_original(frame: pl.DataFrame, rows: int) -> None:
    small = frame.head(rows)
    assert_frame_equal(build_nodes(small, KEY, REF, "health"), legacy.build_nodes(small, KEY, REF, "health"))


def test_all_null_columns_equal_the_original(frame: pl.DataFrame) -> None:
    empty = frame.head(50).with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in (
        "nhs_number", "shared_id", "given_name", "family_name", "address", "postcode", "sex")).with_columns(
        pl.lit(None, dtype=pl.Date).alias("date_of_birth"))
    assert_frame_equal(build_nodes(empty, KEY, REF, "health"), legacy.build_nodes(empty, KEY, REF, "health"))


names = st.one_of(st.none(), st.text(alphabet=st.sampled_from("ABCXYZ -'ÉÖ李\x1f"), max_size=12))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(names, names, names, names), min_size=1, max_size=25))
def test_random_values_equal_the_original(rows: list[tuple]) -> None:
    frame = standardised_frame(len(rows), seed=len(rows)).with_columns(
        pl.Series("given_name", [r[0] for r in rows], dtype=pl.String),
        pl.Series("family_name", [r[1] for r in rows], dtype=pl.String),
        pl.Series("address", [r[2] for r in rows], dtype=pl.String),
        pl.Series("shared_id", [r[3] for r in rows], dtype=pl.String),
    )
    assert_frame_equal(build_nodes(frame, KEY, REF, "health"), legacy.build_nodes(frame, KEY, REF, "health"))


# ------------------------------------------------------------------------------------------ building blocks


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=100), st.lists(st.binary(max_size=80), max_size=20))
def test_keyed_hash_is_hmac_sha256(key: bytes, values: list[bytes]) -> None:
    keyed = enc.KeyedHash(key)
    assert [keyed.digest(v) for v in values] == [hmac.new(key, v, hashlib.sha256).digest() for v in values]
    assert keyed.prefixes(values, 8) == b"".join(hmac.new(key, v, hashlib.sha256).digest()[:8] for v in values)


def test_factorize_survives_a_hash_collision(monkeypatch: pytest.MonkeyPatch) -> None:
    series = pl.Series("v", ["B", None, "A", "B", "C", None])
    monkeypatch.setattr(pl.Series, "hash", lambda self, *a, **k: pl.Series([0] * self.len(), dtype=pl.UInt64))
    distinct = enc.factorize(series)
    assert sorted(distinct.values.to_list()) == ["A", "B", "C"]
    assert distinct.back(distinct.values).to_list() == series.to_list()
    assert enc.tokens(series, b"k").to_list() == [None if v is None else enc.token_of(b"k", v) for v in series]


def test_record_tokens_equal_the_original_with_nulls() -> None:
    values = pl.Series(["gp\x1fA1", None, "gp\x1fA2", "gp\x1fA1", ""])
    assert_series_equal(enc.record_tokens(values, KEY.field_key("record_id")),
                        legacy.record_tokens(values, KEY.field_key("record_id")))


@pytest.mark.parametrize("index", ["every bigram", "dense", "sorted"])
def test_bloom_filters_equal_the_original_across_blocks(monkeypatch: pytest.MonkeyPatch, index: str) -> None:
    # More values than one block, lengths from 0 to 3,000, characters from several scripts; each bigram index.
    monkeypatch.setattr(enc, "_BLOCK_CHARS", 50_000)
    monkeypatch.setattr(enc, "_ALL_GRAMS", 1 << 20 if index == "every bigram" else 0)
    if index == "sorted":
        monkeypatch.setattr(enc, "_DENSE_KEYS", 0)
    rng = np.random.default_rng(3)
    alphabet = list("ABCDEFGHIJ KLMNOP-'ÉÖÜ李王") + [chr(0x4E00 + i) for i in range(40)]
    values = ["".join(rng.choice(alphabet, size=rng.integers(0, 80))) for _ in range(enc._BLOCK + 500)]
    values += ["".join(rng.choice(alphabet, size=3000)), "A" * 200]  # one very long value gets a narrow block
    field_key = KEY.field_key("address_bf")
    series = pl.Series("address", values + [None])
    assert_series_equal(enc.BloomEncoder(field_key, 1024, 8).encode_series(series),
                        legacy.BloomEncoder(field_key, 1024, 8).encode_series(series))


def test_bloom_filter_of_a_size_not_a_power_of_two() -> None:
    field_key = KEY.field_key("x")
    values = pl.Series(["SMITH", "CATHERINE", "A", ""])
    assert_series_equal(enc.BloomEncoder(field_key, 192, 5).encode_series(values),
                        legacy.BloomEncoder(field_key, 192, 5).encode_series(values))


def test_deletion_tokens_equal_the_original() -> None:
    values = pl.Series(["12345", None, "12345", "7", "", "1122"])
    assert_series_equal(enc.deletion_tokens(values, b"k" * 32), legacy.deletion_tokens(values, b"k" * 32))


# ------------------------------------------------------------------------------------- leak scan and risk


def _leaky(frame: pl.DataFrame, nodes: pl.DataFrame) -> pl.DataFrame:
    """Nodes with identifiers planted the ways a bug would plant them."""
    return nodes.with_columns(
        frame["nhs_number"].cast(pl.Int64, strict=False).alias("nhs_number_token"),
        frame["nhs_number"].cast(pl.Int64, strict=False).reverse().alias("dob_token"),
        pl.concat_list(pl.col("given_name_bf").list.slice(0, 7), frame["nhs_number"].cast(pl.Int64, strict=False))
        .alias("given_name_bf"),
        pl.concat_list(pl.col("address_bf").list.slice(0, 3),
                       frame["date_of_birth"].dt.strftime("%Y%m%d").cast(pl.Int64)).alias("address_bf"),
        (pl.lit("seen ") + frame["postcode"] + " here").alias("postcode_district"),
        frame["family_name"].str.to_lowercase().alias("leak_text"),
        frame["date_of_birth"].alias("ndop_opt_out_date"),
        frame["nhs_number"].cast(pl.UInt64, strict=False).alias("leak_unsigned"),
        pl.concat_list(frame["nhs_number"]).alias("leak_texts"),
    )


@pytest.mark.parametrize("aligned", [("nodes",), ()])
@pytest.mark.parametrize("plant", [False, True])
def test_leak_scan_equals_the_original(frame: pl.DataFrame, nodes: pl.DataFrame, plant: bool,
                                       aligned: tuple[str, ...]) -> None:
    types = ["GP appointment", "seen 943 476 5919", "12", "LS6 1AB"] if plant else ["GP appointment", "12", "A&E"]
    activity = pl.DataFrame({"record_token": nodes["record_token"].head(120), "activity_type": types * (120 // len(types))})
    outputs = {"nodes": _leaky(frame, nodes) if plant else nodes, "activity": activity}
    fast = leakscan.scan(outputs, frame, CATEGORICAL, aligned=aligned).to_dict()
    assert "records_compared_before" not in fast  # nothing carried
    assert fast == legacy.scan(outputs, frame, CATEGORICAL, aligned=aligned).to_dict()
    assert fast["passed"] is not plant


def test_carried_rows_skip_only_the_own_identifier_comparison(frame: pl.DataFrame, nodes: pl.DataFrame) -> None:
    # a record's NHS number planted in its own Bloom filter: found where the row is fresh, not where it was carried
    planted = nodes.with_columns(pl.concat_list(pl.col("given_name_bf").list.slice(0, 7),
                                                frame["nhs_number"].cast(pl.Int64, strict=False)).alias("given_name_bf"))
    spellings = leakscan.identifier_spellings(frame)
    valid = np.flatnonzero(frame["nhs_number"].is_not_null().to_numpy())
    fresh = leakscan.scan_with({"nodes": planted}, frame, spellings, CATEGORICAL, ("nodes",), valid[:3])
    assert fresh.leaks == [{"table": "nodes", "column": "given_name_bf", "cells": 3}]
    assert fresh.records_compared_before == frame.height - 3
    none_fresh = np.flatnonzero(frame["nhs_number"].is_null().to_numpy())
    carried = leakscan.scan_with({"nodes": planted}, frame, spellings, CATEGORICAL, ("nodes",), none_fresh)
    assert carried.passed
    # the other comparisons still cover every row: an NHS number as a token is found wherever it is
    tokens = nodes.with_columns(frame["nhs_number"].cast(pl.Int64, strict=False).alias("nhs_number_token"))
    assert not leakscan.scan_with({"nodes": tokens}, frame, spellings, CATEGORICAL, ("nodes",), none_fresh).passed


def test_identifier_spellings_equal_the_original(frame: pl.DataFrame) -> None:
    assert sorted(leakscan.identifier_spellings(frame).to_list()) == sorted(legacy.identifier_spellings(frame).to_list())


def test_risk_figures_equal_the_original(frame: pl.DataFrame, nodes: pl.DataFrame) -> None:
    columns = [f.column for f in FEATURES if f.method == "keyed token"]
    assert risk.assess(frame, nodes, columns) == legacy.assess(frame, nodes, columns)


def test_leak_scan_of_empty_and_all_null_columns_equals_the_original(frame: pl.DataFrame, nodes: pl.DataFrame) -> None:
    outputs = {"nodes": nodes.head(0),
               "activity": pl.DataFrame({"note": pl.Series([None, None], dtype=pl.String),
                                         "code": pl.Series([None, None], dtype=pl.Int64),
                                         "words": pl.Series([None, []], dtype=pl.List(pl.Int64))})}
    fast = leakscan.scan(outputs, frame, CATEGORICAL, aligned=("nodes",)).to_dict()
    assert fast == legacy.scan(outputs, frame, CATEGORICAL, aligned=("nodes",)).to_dict()
    empty = frame.head(0)
    assert leakscan.scan({"nodes": nodes.head(0)}, empty).to_dict() == legacy.scan({"nodes": nodes.head(0)}, empty).to_dict()


def test_leak_scan_of_lists_with_null_rows_and_elements_equals_the_original(frame: pl.DataFrame) -> None:
    own = frame["nhs_number"].cast(pl.Int64, strict=False).to_list()
    cells = [None if i % 3 == 0 else [None, 7, own[i]] if i % 3 == 1 else [] for i in range(frame.height)]
    outputs = {"nodes": pl.DataFrame({"words": pl.Series(cells, dtype=pl.List(pl.Int64))}).slice(0)}
    fast = leakscan.scan(outputs, frame, aligned=("nodes",)).to_dict()
    assert fast == legacy.scan(outputs, frame, aligned=("nodes",)).to_dict()
    assert 0 < fast["leaks"][0]["cells"] <= sum(1 for i in range(frame.height) if i % 3 == 1 and own[i] is not None)


def test_leak_scan_counts_every_cell_of_a_repeated_hex_column_equal_to_a_spelling(frame: pl.DataFrame) -> None:
    # a family name spelled in hex letters, lower-cased into a column of repeated hex values (told apart before
    # grouping): each of its cells counts
    named = frame.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("FACE")).otherwise("family_name")
                               .alias("family_name"))
    codes = pl.DataFrame({"code": ["face", "0a1b", "0a1b", "c0de"] * 30})
    fast = leakscan.scan({"activity": codes}, named).to_dict()
    assert fast == legacy.scan({"activity": codes}, named).to_dict()
    assert fast["leaks"] == [{"table": "activity", "column": "code", "cells": 30}]
