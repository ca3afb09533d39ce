"""Tests for carelink.pseudonymise.hardening: salted, balanced and XOR-folded Bloom filters."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import numpy as np
import polars as pl
import pytest

from carelink.errors import ConfigError
from carelink.keys import Key
from carelink.pseudonymise import encodings as enc
from carelink.pseudonymise import hardening as hard
from carelink.pseudonymise.features import build_nodes, describe_bloom

KEY = Key.from_secret_for_tests("linkage", b"k" * 32)
OTHER_KEY = Key.from_secret_for_tests("linkage", b"q" * 32)
HARDENED = ("salted", "balanced", "xor_fold")


def encoder(hardening: str, field: str = "family_name_bf", key: Key = KEY) -> enc.BloomEncoder:
    layout = enc.BLOOM_LAYOUTS[field]
    return enc.BloomEncoder(key.field_key(field), layout.bits, layout.hashes, hardening)


def salt_for(hardening: str, salt: str = "1950") -> str | None:
    return salt if hardening == "salted" else None


def plain_bits(field_key: bytes, value: str, bits: int, hashes: int) -> int:
    """The unhardened filter as one integer, computed here from its description."""
    padded, filter_bits = f" {value} ", 0
    for gram in {padded[i:i + 2] for i in range(len(padded) - 1)}:
        digest = hmac.new(field_key, gram.encode("utf-8"), hashlib.sha256).digest()
        h1, h2 = int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:16], "big") | 1
        for i in range(hashes):
            filter_bits |= 1 << ((h1 + i * h2) % bits)
    return filter_bits


def as_bits(words: tuple[int, ...]) -> int:
    return sum((w & (2**64 - 1)) << (64 * i) for i, w in enumerate(words))


def popcount(words: tuple[int, ...]) -> int:
    return bin(as_bits(words)).count("1")


# ----------------------------------------------------------------------------------------------- choices


def test_unknown_hardening_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bloom_hardening: must be one of none, salted, balanced, xor_fold"):
        hard.check("rot13")
    with pytest.raises(ConfigError):
        enc.BloomEncoder(b"k" * 32, hardening="xor")


@pytest.mark.parametrize(("hardening", "factor"), [("none", 1), ("salted", 1), ("balanced", 2), ("xor_fold", 0.5)])
def test_layouts_expose_the_stored_length(hardening: str, factor: float) -> None:
    for column, base in enc.BLOOM_LAYOUTS.items():
        layout = enc.bloom_layouts(hardening)[column]
        assert (layout.bits, layout.hashes) == (base.bits, base.hashes)
        assert layout.words == int(base.words * factor) == len(encoder(hardening, column).encode("SMITH", salt_for(hardening)))
    assert enc.bloom_layouts("none") == enc.BLOOM_LAYOUTS  # the default is unhardened


def test_salts_are_needed_exactly_when_salted() -> None:
    with pytest.raises(ValueError, match="salts"):
        encoder("salted").encode("SMITH")
    with pytest.raises(ValueError, match="salts"):
        encoder("none").encode("SMITH", "1950")


# ------------------------------------------------------------------------------------- construction


def test_salted_filter_is_the_plain_filter_under_the_salt_key() -> None:
    field_key = KEY.field_key("family_name_bf")
    salt_key = hmac.new(field_key, b"carelink/bloom/salt/1950", hashlib.sha256).digest()
    assert hard.salt_key(field_key, "1950") == salt_key
    assert as_bits(encoder("salted").encode("CATHERINE", "1950")) == plain_bits(salt_key, "CATHERINE", 512, 15)


def test_xor_fold_is_first_half_xor_second_half() -> None:
    full = plain_bits(KEY.field_key("family_name_bf"), "CATHERINE", 512, 15)
    assert as_bits(encoder("xor_fold").encode("CATHERINE")) == (full & (2**256 - 1)) ^ (full >> 256)


def test_balanced_is_a_keyed_permutation_of_the_filter_and_its_complement() -> None:
    field_key = KEY.field_key("family_name_bf")
    full = plain_bits(field_key, "CATHERINE", 512, 15)
    both = full | ((~full & (2**512 - 1)) << 512)  # the filter, then its complement
    perm = hard.permutation(field_key, 1024)
    assert sorted(perm.tolist()) == list(range(1024))
    balanced = as_bits(encoder("balanced").encode("CATHERINE"))
    assert all((balanced >> j) & 1 == (both >> int(perm[j])) & 1 for j in range(1024))


def test_permutation_is_keyed_and_stable() -> None:
    a = hard.permutation(KEY.field_key("family_name_bf"), 1024)
    assert np.array_equal(a, hard.permutation(KEY.field_key("family_name_bf"), 1024))
    assert not np.array_equal(a, hard.permutation(OTHER_KEY.field_key("family_name_bf"), 1024))
    assert not np.array_equal(a, hard.permutation(KEY.field_key("given_name_bf"), 1024))


# ---------------------------------------------------------------------------------------------- properties


@pytest.mark.parametrize("hardening", HARDENED)
def test_deterministic_across_encoders_and_paths(hardening: str) -> None:
    values = pl.Series(["SMITH", None, "CATHERINE", "SMITH", ""])
    salts = pl.Series(["1950", "1950", None, "1950", "2001"]) if hardening == "salted" else None
    first = encoder(hardening).encode_series(values, salts)
    assert first.to_list() == encoder(hardening).encode_series(values, salts).to_list()
    expected = [None if v is None else list(encoder(hardening).encode(v, None if salts is None else (salts[i] or "")))
                for i, v in enumerate(values)]
    assert first.to_list() == expected


@pytest.mark.parametrize("hardening", HARDENED)
def test_key_separation(hardening: str) -> None:
    salt = salt_for(hardening)
    ours, theirs = encoder(hardening, key=KEY), encoder(hardening, key=OTHER_KEY)
    assert ours.encode("SMITH", salt) != theirs.encode("SMITH", salt)
    # Unrelated keys give filters no more alike than unrelated names under one key.
    unrelated = enc.dice(ours.encode("CATHERINE", salt), ours.encode("OKONKWO", salt))
    assert enc.dice(ours.encode("CATHERINE", salt), theirs.encode("CATHERINE", salt)) < unrelated + 0.15


@pytest.mark.parametrize("value", ["A", "ANN", "CATHERINE", "12 HYDE PARK ROAD, LEEDS", ""])
def test_balanced_filters_all_have_the_same_popcount(value: str) -> None:
    for column, layout in enc.BLOOM_LAYOUTS.items():
        assert popcount(encoder("balanced", column).encode(value)) == layout.bits


def test_salted_same_name_different_salt_is_unrelated() -> None:
    e = encoder("salted")
    assert e.encode("CATHERINE", "1950") == e.encode("CATHERINE", "1950")
    assert enc.dice(e.encode("CATHERINE", "1950"), e.encode("CATHERINE", "1950")) == 1.0
    for other in ("1951", "", "1905"):
        assert enc.dice(e.encode("CATHERINE", "1950"), e.encode("CATHERINE", other)) < 0.5


@pytest.mark.parametrize("hardening", ("none", *HARDENED))
@pytest.mark.parametrize("field", sorted(enc.BLOOM_LAYOUTS))
def test_dice_still_ranks_similar_above_dissimilar(hardening: str, field: str) -> None:
    e, salt = encoder(hardening, field), salt_for(hardening)
    close = [("CATHERINE", "CATHARINE"), ("STEPHENSON", "STEVENSON"), ("JOHNSTON", "JOHNSON"), ("MACDONALD", "MCDONALD")]
    far = [("CATHERINE", "OKONKWO"), ("JONATHAN", "MOHAMMED"), ("STEPHENSON", "PATEL"), ("MACDONALD", "WU")]
    lowest_close = min(enc.dice(e.encode(a, salt), e.encode(b, salt)) for a, b in close)
    highest_far = max(enc.dice(e.encode(a, salt), e.encode(b, salt)) for a, b in far)
    assert lowest_close > highest_far


def test_xor_fold_and_balance_keep_an_empty_value_well_formed() -> None:
    for hardening in ("balanced", "xor_fold"):
        words = encoder(hardening).encode("")
        assert len(words) == enc.bloom_layouts(hardening)["family_name_bf"].words
        assert all(-(2**63) <= w < 2**63 for w in words)


# --------------------------------------------------------------------------------------------- pipeline


def test_nodes_carry_hardened_filters_of_the_layout_length() -> None:
    frame = pl.DataFrame({
        "source": ["gp"] * 3, "record_id": ["A1", "A2", "A3"], "nhs_number": [None] * 3,
        "nhs_number_status": ["missing"] * 3, "shared_id": [None] * 3,
        "given_name": ["CATHERINE", "CATHERINE", None], "family_name": ["SMITH", "SMITH", "JONES"],
        "date_of_birth": [dt.date(1950, 6, 5), dt.date(1951, 6, 5), None], "sex": ["F"] * 3,
        "address": ["12 HYDE PARK ROAD", None, "7 MANOR COURT"], "postcode": ["LS6 1AB"] * 3,
        **{name: [None] * 3 for name in ("ndop_opt_out", "ndop_opt_out_date", "type1_opt_out", "type1_opt_out_date",
                                         "shared_care_consent", "shared_care_consent_date", "research_consent",
                                         "research_consent_date", "sensitive_category")},
    }).with_columns(pl.col("nhs_number", "shared_id").cast(pl.String))
    for hardening in hard.HARDENINGS:
        nodes = build_nodes(frame, KEY, dt.date(2026, 11, 1), "health", bloom_hardening=hardening)
        for column, layout in enc.bloom_layouts(hardening).items():
            assert nodes[column].drop_nulls().list.len().unique().to_list() == [layout.words]
        same_name = nodes["family_name_bf"].to_list()
        assert (same_name[0] == same_name[1]) is (hardening != "salted")  # salted by year of birth: 1950 vs 1951
        assert nodes["given_name_bf"][2] is None and nodes["address_bf"][1] is None
    assert "salted with the year of birth" in describe_bloom("address_bf", "salted")
    assert "XOR-folded to 256 bits" in describe_bloom("given_name_bf", "xor_fold")
