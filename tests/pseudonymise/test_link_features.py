"""Features added for linkage quality: identifier deletion neighbourhoods and the premises blocking key."""

from __future__ import annotations

import polars as pl
import pytest

from carelink.pseudonymise.encodings import deletion_tokens, deletion_variants
from carelink.pseudonymise.features import _premises

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def test_deletion_variants_known_answer() -> None:
    assert deletion_variants("1234") == ["123", "1234", "124", "134", "234"]
    assert deletion_variants("1122") == ["112", "1122", "122"]
    assert deletion_variants("7") == ["7"]  # never the empty string: two one-character values are not "close"


def _share(left: str, right: str, key: bytes = KEY) -> bool:
    tokens = deletion_tokens(pl.Series([left, right]), key)
    return bool(set(tokens[0]) & set(tokens[1]))


@pytest.mark.parametrize(("left", "right"), [
    ("3991319", "3991391"),  # adjacent transposition
    ("8930836", "8930886"),  # one substitution
    ("5682368", "568268"),  # one digit dropped
    ("5682368", "56823688"),  # one digit inserted
])
def test_one_typo_apart_share_a_token(left: str, right: str) -> None:
    assert _share(left, right)


@pytest.mark.parametrize(("left", "right"), [("3991319", "3991999"), ("1234567", "7654321"), ("4086030", "1086034")])
def test_two_or_more_edits_apart_share_none(left: str, right: str) -> None:
    assert not _share(left, right)


def test_deletion_tokens_are_keyed_and_keep_nulls() -> None:
    ours = deletion_tokens(pl.Series(["12345", None]), KEY)
    theirs = deletion_tokens(pl.Series(["12345", None]), OTHER_KEY)
    assert ours[1] is None
    assert len(ours[0]) == 6
    assert not set(ours[0]) & set(theirs[0])


def test_premises_key_is_house_number_street_prefix_and_outward_code() -> None:
    frame = pl.DataFrame({
        "address": ["12 HIGH STREET LEEDS", "12 HIGHFIELD ROAD", "FLAT 3 12A HIGH STREET", "THE COTTAGE", None,
                    "40 KIRKLANDC IRCUIT"],
        "postcode": ["LS6 2AB", "LS6 9ZZ", None, "LS6 2AB", "LS6 2AB", None],
    })
    assert _premises(frame).to_list() == ["12 HIGH|LS6", "12 HIGH|LS6", "FLAT 3 12A HIGH|", None, None, "40 KIRK|"]
