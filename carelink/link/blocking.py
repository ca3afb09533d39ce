"""The blocking guard: count the comparisons each blocking rule would generate before predicting, and stop with a
message naming the rule and the block that explodes it, rather than run for hours or run out of memory."""

from __future__ import annotations

import polars as pl

from carelink.errors import DataQualityError
from carelink.link.model import Block


def comparisons_per_rule(frame: pl.DataFrame, rules: tuple[Block, ...]) -> dict[str, int]:
    """Pairs each rule generates on ``frame`` (before de-duplication across rules)."""
    return {rule.sql(): rule.pairs(frame) for rule in rules}


def largest_block(frame: pl.DataFrame, rule: Block) -> tuple[int, dict[str, object]]:
    """Size and key of the rule's largest block (the key is made of tokens, never plaintext)."""
    blocks = frame.select(rule.left).drop_nulls().group_by(rule.left).len("records").sort("records", descending=True)
    if blocks.height == 0:
        return 0, {}
    top = blocks.row(0, named=True)
    return int(top.pop("records")), top


def check_blocking_budget(frame: pl.DataFrame, rules: tuple[Block, ...], max_comparisons: int) -> dict[str, int]:
    """Return the comparisons per rule; raise ``DataQualityError`` when their total exceeds the budget."""
    counts = comparisons_per_rule(frame, rules)
    total = sum(counts.values())
    if total > max_comparisons:
        worst = max(rules, key=lambda rule: counts[rule.sql()])
        size, key = largest_block(frame, worst)
        shown = ", ".join(f"{column}={value}" for column, value in key.items())
        raise DataQualityError(
            f"blocking would generate {total:,} comparisons, over the budget of {max_comparisons:,} "
            f"(linkage.max_comparisons); rule `{worst.sql()}` alone makes {counts[worst.sql()]:,}, and its "
            f"largest block ({shown}) holds {size:,} records — a default or placeholder value?"
        )
    return counts
