"""The blocking guard counts comparisons per rule and names the rule and block that explode the budget."""

from __future__ import annotations

import polars as pl
import pytest

from carelink.errors import DataQualityError
from carelink.link.blocking import WIDE_RULE_PAIRS_PER_RECORD, check_blocking_budget, choose_rules, largest_block
from carelink.link.model import Block

RULES = (Block(("dob_token",)), Block(("dob_token", "postcode_unit_token")), Block(("a",), ("b",)))


def _frame() -> pl.DataFrame:
    # 50 records share one date-of-birth token (a default date that slipped through); 4 pairs elsewhere.
    dob = [7] * 50 + [1, 1, 2, 2, 3, 3, 4, 4, None, None]
    postcode = [10] * 10 + [11] * 40 + [20, 20, 21, 21, 22, 23, 24, 24, None, None]
    return pl.DataFrame({"dob_token": dob, "postcode_unit_token": postcode,
                         "a": [1, 2] + [None] * 58, "b": [1, 1, 1] + [None] * 57})


def test_counts_are_exact_per_rule() -> None:
    counts = check_blocking_budget(_frame(), RULES, max_comparisons=10_000)
    assert counts["l.dob_token = r.dob_token"] == 50 * 49 // 2 + 4  # nulls never form a block
    assert counts["l.dob_token = r.dob_token AND l.postcode_unit_token = r.postcode_unit_token"] == 45 + 780 + 1 + 1 + 1
    assert counts["l.a = r.b"] == 3  # record with a=1 against the three records with b=1


def test_two_sided_rules_of_several_columns_meet_on_equal_values() -> None:
    frame = pl.DataFrame({"a": ["x", "x", "y", None, "z"], "b": ["y", "x", "x", "x", None], "c": [1, 1, 1, 2, 2]})
    assert Block(("a",), ("b",)).pairs(frame) == 2 * 3 + 1 * 1  # x: two left × three right; y: one × one
    assert Block(("a", "c"), ("b", "c")).pairs(frame) == 2 * 2 + 1 * 1  # (x, 1): two × two; (y, 1): one × one
    assert Block(("a",)).pairs(frame) == 1 and Block(("a", "c")).pairs(frame) == 1
    assert Block(("a",), ("b",)).pairs(frame.clear()) == 0 and Block(("a", "c")).pairs(frame.clear()) == 0


def test_counts_already_made_are_reused_and_new_ones_kept() -> None:
    known = {"l.dob_token = r.dob_token": 5}  # as if counted earlier (a wrong figure, to see that it is reused)
    counts = check_blocking_budget(_frame(), RULES, max_comparisons=10_000, known=known)
    assert counts["l.dob_token = r.dob_token"] == 5
    assert known["l.a = r.b"] == 3 and len(known) == len(RULES)


def test_over_budget_names_the_rule_and_the_block() -> None:
    with pytest.raises(DataQualityError) as raised:
        check_blocking_budget(_frame(), RULES, max_comparisons=1_000)
    message = raised.value.message
    assert "`l.dob_token = r.dob_token`" in message
    assert "dob_token=7" in message and "50 records" in message
    assert raised.value.exit_code == 1


def test_largest_block() -> None:
    assert largest_block(_frame(), Block(("dob_token",))) == (50, {"dob_token": 7})


def test_wide_rules_are_narrowed_and_narrowed_again_while_still_wide() -> None:
    frame = _frame()  # 60 records: a rule is wide beyond 120 pairs
    assert WIDE_RULE_PAIRS_PER_RECORD * frame.height == 120
    dob_postcode_a = Block(("dob_token", "postcode_unit_token", "a"))
    dob_postcode = Block(("dob_token", "postcode_unit_token"), narrowed=(dob_postcode_a,))  # 828 pairs: wide
    cross = Block(("a",), ("b",), narrowed=(Block(("a", "dob_token"), ("b", "dob_token")),))  # 3 pairs: kept
    dob = Block(("dob_token",), narrowed=(dob_postcode, cross))  # 1,229 pairs: wide
    assert choose_rules(frame, (cross, dob)) == (cross, dob_postcode_a)  # each rule once, in order
    assert choose_rules(frame.tail(10), (dob,)) == (dob,)  # 10 records, 4 pairs: a sparse file keeps the wide rule
