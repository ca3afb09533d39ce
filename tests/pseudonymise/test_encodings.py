"""Tests for carelink.pseudonymise.encodings: keyed tokens, record tokens and bigram Bloom filters."""

from __future__ import annotations

import hashlib
import hmac

import polars as pl
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from carelink.keys import Key
from carelink.pseudonymise import encodings as enc

KEY = Key.from_secret_for_tests("linkage", b"k" * 32)
OTHER_KEY = Key.from_secret_for_tests("linkage", b"q" * 32)


def independent_token(key: Key, field: str, value: str) -> int:
    """HMAC-SHA256 under the field key, first 8 bytes as a big-endian signed integer, computed here."""
    digest = hmac.new(key.field_key(field), value.encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# ----------------------------------------------------------------------------------------------- tokens


def test_field_key_is_hkdf_sha256_of_the_linkage_key() -> None:
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"carelink/field/nhs_number").derive(b"k" * 32)
    assert KEY.field_key("nhs_number") == expected
    assert expected.hex() == "75ce2227970867634903e33bf83a89ad5f85827cb3c3576591bc43171ab1e60c"


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("nhs_number", "9434765919", 8996129727056504916),
        ("nhs_number", "4010232137", 6844323663106974445),
        ("family_name", "SMITH", -8351778151205301428),  # high bit set: the token is signed
        ("given_name", "ANN", -8826349003476234948),
        ("date_of_birth", "1950-06-05", -8823391430457685118),
    ],
)
def test_known_answer_vectors(field: str, value: str, expected: int) -> None:
    assert independent_token(KEY, field, value) == expected  # the vector itself, recomputed here
    assert enc.token_of(KEY.field_key(field), value) == expected
    series = pl.Series([value, None, value])
    assert enc.tokens(series, KEY.field_key(field)).to_list() == [expected, None, expected]


def test_record_token_known_answer() -> None:
    digest = hmac.new(KEY.field_key("record_id"), b"gp\x1fA1", hashlib.sha256).digest()
    assert enc.record_token_of(KEY.field_key("record_id"), "gp\x1fA1") == digest[:16].hex()
    assert digest[:16].hex() == "dbfa8fd924a15e7eeb450b3a6f2cc331"
    out = enc.record_tokens(pl.Series(["gp\x1fA1", "gp\x1fA2"]), KEY.field_key("record_id"))
    assert out.to_list()[0] == "dbfa8fd924a15e7eeb450b3a6f2cc331"
    assert out.str.len_chars().to_list() == [32, 32] and out.n_unique() == 2


def test_tokens_deterministic_for_same_key_and_value() -> None:
    values = pl.Series(["SMITH", "JONES", None, "SMITH", "O BRIEN", "SMITH"])
    first = enc.tokens(values, KEY.field_key("family_name"))
    again = enc.tokens(values, Key.from_secret_for_tests("linkage", b"k" * 32).field_key("family_name"))
    assert first.to_list() == again.to_list()
    assert first.dtype == pl.Int64
    assert first[0] == first[3] == first[5] and first[0] != first[1] and first[2] is None
    assert first.to_list() == [None if v is None else independent_token(KEY, "family_name", v) for v in values]


def test_tokens_differ_across_fields() -> None:
    # The same text in two fields gives unrelated tokens (per-field keys), so columns cannot be joined.
    values = ["SMITH", "1950-06-05", "9434765919", "M"]
    for value in values:
        per_field = {enc.token_of(KEY.field_key(f), value) for f in ("given_name", "family_name", "nhs_number", "sex")}
        assert len(per_field) == 4


def test_tokens_differ_across_keys() -> None:
    for field, value in (("family_name", "SMITH"), ("nhs_number", "9434765919")):
        assert enc.token_of(KEY.field_key(field), value) != enc.token_of(OTHER_KEY.field_key(field), value)
    assert enc.record_token_of(KEY.field_key("record_id"), "gp\x1fA1") != enc.record_token_of(
        OTHER_KEY.field_key("record_id"), "gp\x1fA1")


def test_tokens_of_an_all_null_or_empty_column() -> None:
    assert enc.tokens(pl.Series([None, None], dtype=pl.String), KEY.field_key("x")).to_list() == [None, None]
    assert enc.tokens(pl.Series([], dtype=pl.String), KEY.field_key("x")).to_list() == []


@settings(max_examples=50, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=12)), max_size=30))
def test_series_tokens_equal_one_by_one_tokens_in_order(values: list[str | None]) -> None:
    out = enc.tokens(pl.Series(values, dtype=pl.String), KEY.field_key("given_name")).to_list()
    assert out == [None if v is None else independent_token(KEY, "given_name", v) for v in values]


# ------------------------------------------------------------------------------------------ Bloom filters


def encoder(field: str = "family_name_bf", key: Key = KEY) -> enc.BloomEncoder:
    layout = enc.BLOOM_LAYOUTS[field]
    return enc.BloomEncoder(key.field_key(field), layout.bits, layout.hashes)


def bigram_dice(a: str, b: str) -> float:
    left, right = enc.bigrams(a), enc.bigrams(b)
    return 2 * len(left & right) / (len(left) + len(right))


def test_bigrams_are_space_padded() -> None:
    assert enc.bigrams("ANN") == {" A", "AN", "NN", "N "}
    assert enc.bigrams("") == {"  "}


@pytest.mark.parametrize("field", sorted(enc.BLOOM_LAYOUTS))
def test_filter_shape(field: str) -> None:
    layout = enc.BLOOM_LAYOUTS[field]
    words = encoder(field).encode("CATHERINE")
    assert len(words) == layout.bits // 64 == layout.words
    assert all(-(2**63) <= w < 2**63 for w in words)
    set_bits = sum(bin(w & (2**64 - 1)).count("1") for w in words)
    assert 0 < set_bits <= len(enc.bigrams("CATHERINE")) * layout.hashes
    assert set_bits < layout.bits // 2  # not saturated


@pytest.mark.parametrize("field", sorted(enc.BLOOM_LAYOUTS))
@pytest.mark.parametrize("value", ["SMITH", "CATHERINE", "O BRIEN", "12 HYDE PARK ROAD", "A"])
def test_identical_values_have_dice_one(field: str, value: str) -> None:
    e = encoder(field)
    assert enc.dice(e.encode(value), encoder(field).encode(value)) == 1.0


@pytest.mark.parametrize("field", sorted(enc.BLOOM_LAYOUTS))
@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("CATHERINE", "CATHARINE"),    # substitution
        ("STEPHENSON", "STEVENSON"),  # one letter different and one dropped
        ("JOHNSTON", "JOHNSON"),      # deletion
        ("WHITFIELD", "WHITFEILD"),   # transposition
        ("MACDONALD", "MCDONALD"),
    ],
)
def test_one_letter_typo_scores_above_point_seven(field: str, left: str, right: str) -> None:
    e = encoder(field)
    assert enc.dice(e.encode(left), e.encode(right)) > 0.7


def test_short_names_typo_bound_is_the_bigram_bound() -> None:
    # A substitution inside a five-letter name changes 2 of its 6 bigrams: even exact bigram Dice is 0.667,
    # so "> 0.7" can only be asked of longer names. The filter stays close to the bigram figure.
    assert bigram_dice("SMITH", "SMYTH") == pytest.approx(2 / 3)
    e = encoder()
    assert abs(enc.dice(e.encode("SMITH"), e.encode("SMYTH")) - 2 / 3) < 0.1


@pytest.mark.parametrize("field", sorted(enc.BLOOM_LAYOUTS))
@pytest.mark.parametrize(("left", "right"), [("JONATHAN", "MOHAMMED"), ("MARY", "WILLIAM"), ("ANN", "BOB"),
                                             ("SMITH", "PATEL"), ("CATHERINE", "OKONKWO")])
def test_unrelated_names_score_below_point_five(field: str, left: str, right: str) -> None:
    e = encoder(field)
    assert enc.dice(e.encode(left), e.encode(right)) < 0.5


def test_different_keys_give_different_filters() -> None:
    assert encoder(key=KEY).encode("SMITH") != encoder(key=OTHER_KEY).encode("SMITH")
    # Across keys the filters are unrelated, so identical names no longer match.
    assert enc.dice(encoder(key=KEY).encode("CATHERINE"), encoder(key=OTHER_KEY).encode("CATHERINE")) < 0.5


def test_encode_series_maps_nulls_and_repeats() -> None:
    e = encoder()
    out = e.encode_series(pl.Series(["SMITH", None, "SMITH", "JONES"]))
    assert out.dtype == pl.List(pl.Int64)
    assert out.to_list() == [list(e.encode("SMITH")), None, list(e.encode("SMITH")), list(e.encode("JONES"))]


def independent_filter(field_key: bytes, value: str, bits: int, hashes: int) -> list[int]:
    """The keyed bigram Bloom filter computed here from its description (double hashing over HMAC-SHA256)."""
    padded = f" {value} "
    filter_bits = 0
    for gram in {padded[i:i + 2] for i in range(len(padded) - 1)}:
        digest = hmac.new(field_key, gram.encode("utf-8"), hashlib.sha256).digest()
        h1, h2 = int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:16], "big") | 1
        for i in range(hashes):
            filter_bits |= 1 << ((h1 + i * h2) % bits)
    words = [(filter_bits >> (64 * w)) & (2**64 - 1) for w in range(bits // 64)]
    return [w - 2**64 if w >= 2**63 else w for w in words]


@pytest.mark.parametrize("field", sorted(enc.BLOOM_LAYOUTS))
def test_filter_known_answer(field: str) -> None:
    layout = enc.BLOOM_LAYOUTS[field]
    values = ["SMITH", "CATHERINE", "12 HYDE PARK ROAD", "A"]
    expected = [independent_filter(KEY.field_key(field), v, layout.bits, layout.hashes) for v in values]
    assert [list(encoder(field).encode(v)) for v in values] == expected
    assert encoder(field).encode_series(pl.Series(values)).to_list() == expected


def test_dice_of_empty_filters_is_zero() -> None:
    assert enc.dice([0] * 8, [0] * 8) == 0.0


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ ", min_size=1, max_size=20),
       st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ ", min_size=1, max_size=20))
def test_dice_is_symmetric_bounded_and_tracks_bigram_overlap(left: str, right: str) -> None:
    e = encoder()
    a, b = e.encode(left), e.encode(right)
    score = enc.dice(a, b)
    assert score == enc.dice(b, a)
    assert 0.0 <= score <= 1.0
    assert (score == 1.0) == (enc.bigrams(left) == enc.bigrams(right)) or score > 0.99
    # Hash collisions only ever add agreement: a filter is never much less similar than its bigram sets.
    assert score >= bigram_dice(left, right) - 0.1


# --------------------------------------------------------------------------------------- other encodings


def test_canonical_forename_maps_nicknames_on_first_word() -> None:
    out = enc.canonical_forename(pl.Series(["PEGGY", "PEGGY SUE", "MARGARET", "ZEBEDEE", None]))
    assert out.to_list() == ["MARGARET", "MARGARET", "MARGARET", "ZEBEDEE", None]


def test_phonetic_uses_first_word() -> None:
    out = enc.phonetic(pl.Series(["SMITH", "SMYTH", "SMITH JOHN", None]))
    assert out[0] == out[1] == out[2]
    assert out[3] is None
