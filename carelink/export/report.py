"""The export report: per export, who and what was withheld, why, and which consent rule decided.

Written as ``export_report.json`` and ``export_report.md`` in the export folder. Numbers reconcile: for people,
source records and activity rows alike, total = exported + withheld.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from carelink.export.consent import PERSON_RULES, RESOLUTION, TYPE1_RULE, WithholdingRule
from carelink.export.purposes import PurposeRules
from carelink.export.summaries import ProtectedTable

#: Activity rows whose record has no person (never expected: the export stage checks reconciliation first).
UNLINKED = "record not in the registry"
NO_STATEMENT = "(no statement)"


def _decided_by(people: pl.DataFrame, rule: WithholdingRule) -> dict[str, int]:
    """People counted by the source whose statement decided the rule's consent flag."""
    column = pl.col(f"{rule.consent}_source").fill_null(NO_STATEMENT)
    return dict(sorted(people.group_by(column).len().iter_rows()))


def _totals(reasons: pl.Series, weights: pl.Series | None = None) -> dict[str, int]:
    """Total, exported and withheld (a reason given) rows, each row counting ``weights`` where given."""
    if weights is None:
        total, withheld = reasons.len(), int(reasons.is_not_null().sum())
    else:
        total, withheld = int(weights.sum()), int(weights.filter(reasons.is_not_null()).sum())
    return {"total": total, "exported": total - withheld, "withheld": withheld}


def export_report(*, recipient: str, legal_basis: str | None, rules: PurposeRules, people: pl.DataFrame,
                  activity: pl.DataFrame, summaries: dict[str, ProtectedTable], records: pl.DataFrame | None = None,
                  resolution: dict[str, str] = RESOLUTION) -> dict[str, Any]:
    """Build the report of one export.

    Args:
        recipient: Who receives the export.
        legal_basis: The legal basis reference the export records, if any.
        rules: The purpose's rules as applied (after any legal basis).
        people: One row per linked person: ``person_id``, ``withheld_reason``, ``records`` (how many source records
            the person holds) and the resolved ``*_source`` columns.
        activity: One row per activity row received: ``person_id`` and ``withheld_reason`` (null when exported).
        summaries: The summary tables written, by name.
        records: One row per source record: ``person_id``. Where not given, the records are counted from
            ``people["records"]`` (the same figures where every record's person is in ``people``, without joining
            ten million records to their people).
        resolution: How each consent flag was resolved, in words (``consent.resolution_texts``).
    """
    if records is None:
        records = people.select("withheld_reason", "records")
    else:
        records = records.join(people.select("person_id", "withheld_reason"), on="person_id", how="left").select(
            "withheld_reason", pl.lit(1, dtype=pl.Int64).alias("records"))
    withheld = []
    for rule in PERSON_RULES:
        affected = people.filter(pl.col("withheld_reason") == rule.reason)
        if affected.height:
            withheld.append(_entry(rule.reason, "person", rule, resolution, affected.height,
                                   int(records.filter(pl.col("withheld_reason") == rule.reason)["records"].sum()),
                                   activity.filter(pl.col("withheld_reason") == rule.reason).height,
                                   _decided_by(affected, rule)))
    for reason, rule in ((TYPE1_RULE.reason, TYPE1_RULE), (UNLINKED, None)):
        rows = activity.filter(pl.col("withheld_reason") == reason)
        if rows.height:
            affected = people.join(rows.select("person_id").unique(), on="person_id", how="semi")
            withheld.append(_entry(reason, "activity", rule, resolution, rows["person_id"].drop_nulls().n_unique(), 0, rows.height,
                                   _decided_by(affected, rule) if rule else {}))
    return {
        "recipient": recipient,
        "purpose": rules.name,
        "legal_basis": legal_basis,
        "rules": rules.description,
        "rule_flags": rules.flags(),
        "people": _totals(people["withheld_reason"]),
        "records": _totals(records["withheld_reason"], records["records"]),
        "activity_rows": _totals(activity["withheld_reason"]),
        "withheld": withheld,
        "summaries": {name: {"cells": t.cells, "suppressed": t.suppressed} for name, t in sorted(summaries.items())},
    }


def _entry(reason: str, scope: str, rule: WithholdingRule | None, resolution: dict[str, str], people: int,
           records: int, activity_rows: int,
           decided_by: dict[str, int]) -> dict[str, Any]:
    return {
        "reason": reason,
        "scope": scope,  # "person": the person and all their rows; "activity": some activity rows only
        "rule": rule.flag if rule else None,
        "consent_field": rule.consent if rule else None,
        "resolution": resolution[rule.consent] if rule else None,
        "people": people,
        "records": records,
        "activity_rows": activity_rows,
        "decided_by_source": decided_by,
    }


def report_markdown(report: dict[str, Any]) -> str:
    """A short human-readable version of the report."""
    lines = [f"# Export report — {report['recipient']} / {report['purpose']}", "", report["rules"], ""]
    if report["legal_basis"]:
        lines += [f"Legal basis recorded: **{report['legal_basis']}**", ""]
    lines += ["| | total | exported | withheld |", "|---|---:|---:|---:|"]
    for key, label in (("people", "people"), ("records", "source records"), ("activity_rows", "activity rows")):
        counts = report[key]
        lines.append(f"| {label} | {counts['total']:,} | {counts['exported']:,} | {counts['withheld']:,} |")
    lines += ["", "## Withheld, by reason", ""]
    if report["withheld"]:
        lines += ["| reason | withholds | purpose rule | consent resolved by | people | records | activity rows | "
                  "decided by source |", "|---|---|---|---|---:|---:|---:|---|"]
        for e in report["withheld"]:
            sources = ", ".join(f"{source} {n:,}" for source, n in e["decided_by_source"].items())
            lines.append(f"| {e['reason']} | {e['scope']} | {e['rule'] or '—'} | {e['resolution'] or '—'} | "
                         f"{e['people']:,} | {e['records']:,} | {e['activity_rows']:,} | {sources or '—'} |")
    else:
        lines.append("Nothing was withheld.")
    lines += ["", "## Summary tables", "", "| table | cells | suppressed |", "|---|---:|---:|"]
    lines += [f"| {name} | {t['cells']:,} | {t['suppressed']:,} |" for name, t in report["summaries"].items()]
    return "\n".join(lines) + "\n"
