"""Consent resolution across a person's records, and the per-purpose rules that use it.

Rules (documented in the README and the data dictionary):

- Opt-outs (National Data Opt-out, GP Type 1 objection) are *sticky*: a ``True`` from any source applies; the
  latest dated statement is reported as the one that decided.
- Shared-care consent and research consent are *statements*: the latest dated statement wins; an undated
  statement loses to any dated one; among undated ones, a refusal or withdrawal wins over a grant (fail safe).
- Sensitive-category markers are sticky like opt-outs.

Which of these withhold a person depends on the purpose (``carelink.export.purposes``); ``PERSON_RULES`` lists the
reasons in order of precedence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from carelink.export.purposes import SHIPPED_PURPOSES, PurposeRules

#: Consent columns carried on every node (see ``pseudonymise.features.PASSED_THROUGH``).
STICKY = ("ndop_opt_out", "type1_opt_out", "sensitive_category")
_NEGATIVE_FIRST = {"refused": 0, "withdrawn": 0, "granted": 1}


def _last_where(value: pl.Expr, condition: pl.Expr, order: list[pl.Expr]) -> pl.Expr:
    """Within a group: ``value`` of the last row (by ``order``) where ``condition`` holds."""
    return value.sort_by(order, nulls_last=False).filter(condition.sort_by(order, nulls_last=False)).last()


def _sticky(flag: str, date_column: str | None) -> list[pl.Expr]:
    """Any True wins; the decider is the latest dated True (else any True record's source)."""
    is_true = pl.col(flag).fill_null(False)
    order = [pl.col(date_column).is_not_null(), pl.col(date_column), pl.col("source")] if date_column else [pl.col("source")]
    expressions = [is_true.any().alias(flag), _last_where(pl.col("source"), is_true, order).alias(f"{flag}_source")]
    if date_column:
        expressions.append(pl.col(date_column).filter(is_true).max().alias(f"{flag}_date"))
    return expressions


def _statement(value: str, date_column: str, rank: pl.Expr) -> list[pl.Expr]:
    """The latest dated statement wins; undated ones lose to dated; ties go to the more restrictive value."""
    stated = pl.col(value).is_not_null()
    order = [pl.col(date_column).is_not_null(), pl.col(date_column), rank, pl.col("source")]
    return [
        _last_where(pl.col(value), stated, order).alias(value),
        _last_where(pl.col(date_column), stated, order).alias(f"{value}_date"),
        _last_where(pl.col("source"), stated, order).alias(f"{value}_source"),
    ]


#: How opt-outs resolve unless the pipeline config says otherwise (``consent_resolution``).
OPT_OUT_MODES = ("sticky", "latest")
DEFAULT_RESOLUTION = {"ndop_opt_out": "sticky", "type1_opt_out": "sticky"}


def _opt_out(flag: str, mode: str) -> list[pl.Expr]:
    """``sticky``: an opt-out anywhere applies. ``latest``: the latest dated statement (Y or N) wins, so a later
    recorded withdrawal of the opt-out counts; ties and undated statements resolve to the opt-out (fail safe)."""
    if mode == "sticky":
        return _sticky(flag, f"{flag}_date")
    return _statement(flag, f"{flag}_date", pl.col(flag).cast(pl.Int8).fill_null(0))


def resolve_consent(records: pl.DataFrame, resolution: Mapping[str, str] | None = None) -> pl.DataFrame:
    """One row per ``person_id`` with resolved flags and the source (and date) that decided each."""
    modes = DEFAULT_RESOLUTION | dict(resolution or {})
    shared_rank = -pl.col("shared_care_consent").replace_strict(_NEGATIVE_FIRST, default=1, return_dtype=pl.Int8)
    research_rank = pl.col("research_consent").cast(pl.Int8).fill_null(1) * -1
    resolved = records.group_by("person_id").agg(
        *_opt_out("ndop_opt_out", modes["ndop_opt_out"]),
        *_opt_out("type1_opt_out", modes["type1_opt_out"]),
        *_sticky("sensitive_category", None),
        *_statement("shared_care_consent", "shared_care_consent_date", shared_rank),
        *_statement("research_consent", "research_consent_date", research_rank),
    )
    return resolved.with_columns(pl.col("ndop_opt_out", "type1_opt_out").fill_null(False))


def resolution_texts(resolution: Mapping[str, str] | None = None) -> dict[str, str]:
    """How each flag was resolved, in words, for the configured modes."""
    modes = DEFAULT_RESOLUTION | dict(resolution or {})
    latest = "latest dated statement wins (a later withdrawal of the opt-out counts); undated or tied: opt-out"
    return RESOLUTION | {flag: latest for flag, mode in modes.items() if mode == "latest"}


#: How each resolved flag was decided across a person's records (for data dictionaries and export reports).
RESOLUTION = {
    "ndop_opt_out": "sticky: an opt-out from any source applies",
    "type1_opt_out": "sticky: an objection from any source applies",
    "sensitive_category": "sticky: a marker from any source applies",
    "shared_care_consent": "latest dated statement wins; undated loses to dated; among undated, a refusal wins",
    "research_consent": "latest dated statement wins; undated loses to dated; among undated, a refusal wins",
}


@dataclass(frozen=True)
class WithholdingRule:
    """One reason a purpose can withhold a person (or their activity): the flag that enables it and its test."""

    reason: str
    flag: str
    consent: str
    condition: pl.Expr


#: Reasons that withhold a whole person, in order of precedence (the first that applies is reported).
PERSON_RULES = (
    WithholdingRule("no research consent", "requires_research_consent", "research_consent",
                    pl.col("research_consent").fill_null(False).not_()),
    WithholdingRule("research consent refused", "withholds_research_refusal", "research_consent",
                    pl.col("research_consent").not_().fill_null(False)),
    WithholdingRule("sensitive category", "excludes_sensitive", "sensitive_category", pl.col("sensitive_category")),
    WithholdingRule("National Data Opt-out", "honours_ndop", "ndop_opt_out", pl.col("ndop_opt_out")),
    WithholdingRule("shared-care objection", "requires_shared_care_consent_not_refused", "shared_care_consent",
                    pl.col("shared_care_consent").is_in(["refused", "withdrawn"]).fill_null(False)),
)
#: Withholds only activity, from the sources that record GP Type 1 objections; the person stays in.
TYPE1_RULE = WithholdingRule("GP Type 1 objection", "honours_type1", "type1_opt_out",
                             pl.col("type1_opt_out").fill_null(False))

#: The shipped purposes (direct care, planning, research); a pipeline file may add more.
PURPOSES = SHIPPED_PURPOSES


def withheld_reasons(people: pl.DataFrame, rules: PurposeRules) -> pl.DataFrame:
    """Per person, the first reason the purpose withholds them (null when included)."""
    reason = pl.lit(None, dtype=pl.String)
    for rule in reversed(PERSON_RULES):
        if getattr(rules, rule.flag):
            reason = pl.when(rule.condition).then(pl.lit(rule.reason)).otherwise(reason)
    return people.select("person_id", reason.alias("withheld_reason"))
