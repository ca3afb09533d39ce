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
#: The consent columns every node carries (``pseudonymise.features.PASSED_THROUGH``), as ``resolve_consent`` reads them.
CONSENT_COLUMNS = (
    "ndop_opt_out", "ndop_opt_out_date", "type1_opt_out", "type1_opt_out_date", "shared_care_consent",
    "shared_care_consent_date", "research_consent", "research_consent_date", "sensitive_category",
)
_NEGATIVE_FIRST = {"refused": 0, "withdrawn": 0, "granted": 1}
_ROW = "__record_order"
_PERSON = "__person"


def _last_where(records: pl.LazyFrame, condition: pl.Expr, order: list[pl.Expr],
                values: dict[str, pl.Expr]) -> pl.LazyFrame:
    """Per person holding a row where ``condition`` holds: ``values`` of the last such row by ``order``.

    Rows tied on every ``order`` key keep their order in ``records`` (the later row wins), as a stable sort within
    each person would. One sort of the rows that qualify replaces a sort within every person.
    """
    last = records.filter(condition).sort([*order, pl.col(_ROW)], nulls_last=False)
    return last.group_by(_PERSON).agg(expression.last().alias(name) for name, expression in values.items())


def _sticky(records: pl.LazyFrame, flag: str, date_column: str | None) -> tuple[pl.LazyFrame, list[str]]:
    """Any True wins; the decider is the latest dated True (else any True record's source)."""
    is_true = pl.col(flag).fill_null(False)
    order = [pl.col(date_column).is_not_null(), pl.col(date_column), pl.col("source")] if date_column else [pl.col("source")]
    values = {flag: pl.lit(True), f"{flag}_source": pl.col("source")}
    if date_column:
        values[f"{flag}_date"] = pl.col(date_column).max()
    # a person with no True row is False, not null: filled in by resolve_consent
    return _last_where(records, is_true, order, values), list(values)


def _statement(records: pl.LazyFrame, value: str, date_column: str, rank: pl.Expr) -> tuple[pl.LazyFrame, list[str]]:
    """The latest dated statement wins; undated ones lose to dated; ties go to the more restrictive value."""
    stated = pl.col(value).is_not_null()
    order = [pl.col(date_column).is_not_null(), pl.col(date_column), rank, pl.col("source")]
    values = {value: pl.col(value), f"{value}_date": pl.col(date_column), f"{value}_source": pl.col("source")}
    return _last_where(records, stated, order, values), list(values)


#: How opt-outs resolve unless the pipeline config says otherwise (``consent_resolution``).
OPT_OUT_MODES = ("sticky", "latest")
DEFAULT_RESOLUTION = {"ndop_opt_out": "sticky", "type1_opt_out": "sticky"}


def _opt_out(records: pl.LazyFrame, flag: str, mode: str) -> tuple[pl.LazyFrame, list[str]]:
    """``sticky``: an opt-out anywhere applies. ``latest``: the latest dated statement (Y or N) wins, so a later
    recorded withdrawal of the opt-out counts; ties and undated statements resolve to the opt-out (fail safe)."""
    if mode == "sticky":
        return _sticky(records, flag, f"{flag}_date")
    return _statement(records, flag, f"{flag}_date", pl.col(flag).cast(pl.Int8).fill_null(0))


def resolve_consent(records: pl.DataFrame, resolution: Mapping[str, str] | None = None, *,
                    by: str = "person_id") -> pl.DataFrame:
    """One row per person (``by``: the column naming them) with resolved flags and the source (and date) that
    decided each."""
    modes = DEFAULT_RESOLUTION | dict(resolution or {})
    shared_rank = -pl.col("shared_care_consent").replace_strict(_NEGATIVE_FIRST, default=1, return_dtype=pl.Int8)
    research_rank = pl.col("research_consent").cast(pl.Int8).fill_null(1) * -1
    rows = records.lazy().select(pl.col(by).alias(_PERSON), "source", *CONSENT_COLUMNS).with_row_index(_ROW)
    parts = [
        _opt_out(rows, "ndop_opt_out", modes["ndop_opt_out"]),
        _opt_out(rows, "type1_opt_out", modes["type1_opt_out"]),
        _sticky(rows, "sensitive_category", None),
        _statement(rows, "shared_care_consent", "shared_care_consent_date", shared_rank),
        _statement(rows, "research_consent", "research_consent_date", research_rank),
    ]
    resolved = rows.select(_PERSON).unique()
    for part, _ in parts:
        resolved = resolved.join(part, on=_PERSON, how="left")
    columns = [column for _, names in parts for column in names]
    flags = pl.col("ndop_opt_out", "type1_opt_out", "sensitive_category").fill_null(False)
    return resolved.select(pl.col(_PERSON).alias(by), *columns).with_columns(flags).collect()


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


def withheld_reason(rules: PurposeRules) -> pl.Expr:
    """The first reason the purpose withholds a person (null when included), over resolved consent columns."""
    reason = pl.lit(None, dtype=pl.String)
    for rule in reversed(PERSON_RULES):
        if getattr(rules, rule.flag):
            reason = pl.when(rule.condition).then(pl.lit(rule.reason)).otherwise(reason)
    return reason.alias("withheld_reason")


def withheld_reasons(people: pl.DataFrame, rules: PurposeRules) -> pl.DataFrame:
    """Per person, the first reason the purpose withholds them (null when included)."""
    return people.select("person_id", withheld_reason(rules))
