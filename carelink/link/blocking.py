"""The blocking guard: count the comparisons each blocking rule would generate before predicting, and stop with a
message naming the rule and the block that explodes it, rather than run for hours or run out of memory."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import polars as pl

from carelink.errors import DataQualityError
from carelink.link.model import Block


def comparisons_per_rule(frame: pl.DataFrame, rules: tuple[Block, ...],
                         known: dict[str, int] | None = None) -> dict[str, int]:
    """Pairs each rule generates on ``frame`` (before de-duplication across rules).

    ``known`` holds counts already made on this frame (by rule SQL): they are reused, and the new ones added to it.
    """
    known = {} if known is None else known
    missing = [rule for rule in dict.fromkeys(rules) if rule.sql() not in known]
    with ThreadPoolExecutor(pl.thread_pool_size()) as pool:  # rules in parallel, each sorting in polars' own pool
        counted = pool.map(lambda rule: rule.pairs(frame), missing)
        known |= {rule.sql(): pairs for rule, pairs in zip(missing, counted, strict=True)}
    return {rule.sql(): known[rule.sql()] for rule in rules}


#: A rule comparing more pairs than this many per record is replaced by its narrower rules (``Block.narrowed``).
WIDE_RULE_PAIRS_PER_RECORD = 2


def choose_rules(frame: pl.DataFrame, rules: tuple[Block, ...], known: dict[str, int] | None = None) -> tuple[Block, ...]:
    """The rules to predict with on ``frame``: each wide rule that has narrower ones is kept while it compares at
    most ``WIDE_RULE_PAIRS_PER_RECORD`` pairs per record (a small file, or one with dense duplicates), and replaced by them
    beyond (a large population, where a birth date or a street alone would compare thousands of people). A narrower
    rule that is itself still wide is replaced in turn by its own narrower rules, so the rules grow more specific as
    the population grows denser (ten million records narrow further than one million). The counts made are added to
    ``known`` (see ``comparisons_per_rule``)."""
    known = {} if known is None else known
    wide = [rule for rule in rules if rule.narrowed]
    counts = comparisons_per_rule(frame, tuple(wide), known)
    chosen: list[Block] = []
    for rule in rules:
        if rule.narrowed and counts[rule.sql()] > WIDE_RULE_PAIRS_PER_RECORD * frame.height:
            replacements = choose_rules(frame, rule.narrowed, known)
        else:
            replacements = (rule,)
        chosen += [replacement for replacement in replacements if replacement not in chosen]
    return tuple(chosen)


def largest_block(frame: pl.DataFrame, rule: Block) -> tuple[int, dict[str, object]]:
    """Size and key of the rule's largest block (the key is made of tokens, never plaintext)."""
    blocks = frame.select(rule.left).drop_nulls().group_by(rule.left).len("records").sort("records", descending=True)
    if blocks.height == 0:
        return 0, {}
    top = blocks.row(0, named=True)
    return int(top.pop("records")), top


def check_blocking_budget(frame: pl.DataFrame, rules: tuple[Block, ...], max_comparisons: int,
                          known: dict[str, int] | None = None) -> dict[str, int]:
    """Return the comparisons per rule (reusing ``known`` counts); raise ``DataQualityError`` when their total
    exceeds the budget."""
    counts = comparisons_per_rule(frame, rules, known)
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
