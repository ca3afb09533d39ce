"""The linkage report: what the model is, how the scores fall, how big the people are, and what to worry about.

Written as ``linkage_report.json`` and a self-contained ``linkage_report.html`` (inline CSS, bars drawn with CSS; no
script, no font or image fetched from anywhere), so it opens offline on an IG officer's laptop.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any

import polars as pl

from carelink.htmlpage import CSS, bar, fmt
from carelink.link.registry import person_keys
from carelink.tables import write_json, write_text

GIANT_CLUSTER = 25  # records in one person that deserve a look


def model_parameters(model_document: dict[str, Any]) -> list[dict[str, Any]]:
    """Per comparison level: m, u and the match weight log2(m/u)."""
    rows = []
    for comparison in model_document["splink"]["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            weight = math.log2(m / u) if m and u else None
            rows.append({"comparison": comparison["output_column_name"], "level": level.get("label_for_charts", ""),
                         "m": m, "u": u, "match_weight": weight})
    return rows


def label_free_estimates(edges: pl.DataFrame, threshold: float) -> dict[str, float | None]:
    """Precision and recall the model expects of itself: linked pairs' mean match probability, and the share of
    the expected number of matches among scored pairs that the threshold keeps."""
    if edges.height == 0:
        return {"expected_precision": None, "expected_recall": None}
    linked = edges.filter(pl.col("match_probability") >= threshold)["match_probability"]
    expected_matches = float(edges["match_probability"].sum())
    return {
        "expected_precision": float(linked.mean()) if linked.len() else None,
        "expected_recall": float(linked.sum()) / expected_matches if expected_matches else None,
    }


def link_rates(nodes: pl.DataFrame, person_map: pl.DataFrame, by: str) -> list[dict[str, Any]]:
    """Share of records linked to at least one other record, per value of ``by`` (source, age band, …)."""
    return _rates(linked_records(nodes, person_map, [by]), by)


def linked_records(nodes: pl.DataFrame, person_map: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """``columns`` of every node, and whether its person holds other records too (``linked``).

    A ``person_map`` that carries the columns itself, one row per node (as the link stage passes it), is used as it
    is: joining ten million tokens took 13 s. Persons are counted on their IDs' numbers (``person_keys``)."""
    linked = (pl.len().over(person_keys(person_map["person_id"])) > 1).alias("linked")
    if all(column in person_map.columns for column in columns) and person_map.height == nodes.height:
        return person_map.select(*columns, linked)
    people = person_map.select("record_token", linked)
    return nodes.select("record_token", *columns).join(people, on="record_token").drop("record_token")


def _rates(linked: pl.DataFrame, by: str) -> list[dict[str, Any]]:
    rates = linked.group_by(by).agg(pl.len().alias("records"), pl.col("linked").mean().alias("link_rate"))
    return sorted(rates.to_dicts(), key=lambda r: _natural_key(r[by]))


def _natural_key(label: Any) -> tuple:
    """Sort labels as people read them (``5-9`` before ``10-14``), missing last."""
    parts = re.split(r"(\d+)", str(label))
    return (label is None, [int(p) if i % 2 else p for i, p in enumerate(parts)])


def histogram(values: pl.Series, edges: list[float]) -> list[dict[str, Any]]:
    """Counts of ``values`` in [edges[i], edges[i+1])."""
    counts = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        counts.append({"from": low, "to": high, "count": int(((values >= low) & (values < high)).sum())})
    return counts


def build_report(*, nodes: pl.DataFrame, edges: pl.DataFrame, person_map: pl.DataFrame, model_document: dict,
                 threshold: float, cluster_stats: dict, comparisons: dict[str, int], run_id: str) -> dict[str, Any]:
    """Everything the report shows, as JSON-able data."""
    sizes = person_keys(person_map["person_id"]).value_counts(name="records")
    largest = int(sizes["records"].max()) if sizes.height else 0
    weights = edges["match_weight"] if edges.height else pl.Series([], dtype=pl.Float64)
    low = math.floor(float(weights.min())) if weights.len() else 0
    high = math.ceil(float(weights.max())) + 1 if weights.len() else 1
    warnings = []
    if largest >= GIANT_CLUSTER:
        warnings.append(f"the largest person holds {largest} records: check it for over-linking")
    if cluster_stats.get("edges_conflicting_nhs_dropped"):
        warnings.append(f"{cluster_stats['edges_conflicting_nhs_dropped']:,} scored links joined two different valid "
                        "NHS numbers and were not used")
    if cluster_stats.get("unions_refused"):
        warnings.append(f"{cluster_stats['unions_refused']:,} links would have given one person two NHS numbers "
                        "through records without one, and were left out")
    if cluster_stats.get("people_with_a_second_nhs_number"):
        warnings.append(f"{cluster_stats['people_with_a_second_nhs_number']:,} people hold a second valid NHS number on "
                        "one record whose name and date of birth match theirs exactly (a relative's number?): check "
                        "those records at source")
    if cluster_stats.get("ambiguous_records_left_alone"):
        warnings.append(f"{cluster_stats['ambiguous_records_left_alone']:,} records linked about as strongly to two "
                        "people with different NHS numbers (a shared nickname, a relative's number) and were left on "
                        "their own")
    mw_columns = [c for c in edges.columns if c.startswith("mw_") and not c.startswith("mw_tf_adj")]
    sample = _sample_links(edges, threshold)
    by = ("source", "age_band", "source_kind")
    linked = linked_records(nodes, person_map, list(by))  # one join for the three breakdowns
    return {
        "run_id": run_id,
        "training": model_document["training"],
        "threshold": threshold,
        "counts": {"records": nodes.height, "scored_pairs": edges.height,
                   "linked_pairs": int((edges["match_probability"] >= threshold).sum()) if edges.height else 0,
                   "people": sizes.height, "largest_person": largest},
        "estimates_without_labels": label_free_estimates(edges, threshold),
        "comparisons_per_blocking_rule": comparisons,
        "clustering": cluster_stats,
        "model": model_parameters(model_document),
        "prior_match_probability": model_document["splink"]["probability_two_random_records_match"],
        "match_weight_histogram": histogram(weights, list(range(low, high + 1, max(1, (high - low) // 25)))),
        "person_size_histogram": dict(sorted(sizes.group_by("records").len().iter_rows())),
        **{f"link_rate_by_{column}": _rates(linked, column) for column in by},
        "sample_links": [{k: row[k] for k in ("match_weight", "match_probability", *mw_columns)} for row in sample],
        "warnings": warnings,
    }


def _sample_links(edges: pl.DataFrame, threshold: float) -> list[dict[str, Any]]:
    """Strongest, weakest kept, and strongest rejected link: the three a reviewer wants to see first (ties go to
    the smallest tokens, the weakest kept to the largest)."""
    if edges.height == 0:
        return []
    tokens = ["record_token_l", "record_token_r"]
    kept = edges.filter(pl.col("match_probability") >= threshold)
    rejected = edges.filter(pl.col("match_probability") < threshold)

    def extreme(frame: pl.DataFrame, strongest: bool) -> pl.DataFrame:
        """The one row at the extreme weight, without sorting every edge."""
        if frame.height == 0:
            return frame
        weight = frame["match_weight"].max() if strongest else frame["match_weight"].min()
        ties = frame.filter(pl.col("match_weight") == weight).sort(tokens)
        return ties.head(1) if strongest else ties.tail(1)

    picks = [extreme(kept, True), extreme(kept, False), extreme(rejected, True)]
    return [row for pick in picks for row in pick.to_dicts()]


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    e = html.escape
    counts, estimates = report["counts"], report["estimates_without_labels"]
    cards = "".join(f'<div class="card">{e(label)}<b>{fmt(value)}</b></div>' for label, value in (
        ("records", counts["records"]), ("people", counts["people"]), ("scored pairs", counts["scored_pairs"]),
        ("linked pairs", counts["linked_pairs"]), ("largest person", counts["largest_person"]),
        ("expected precision", estimates["expected_precision"]), ("expected recall", estimates["expected_recall"])))
    warnings = "".join(f'<div class="warn">{e(w)}</div>' for w in report["warnings"]) or \
        '<div class="ok">No warnings: no giant person, no conflicting NHS numbers.</div>'
    weight_scale = max((abs(r["match_weight"]) for r in report["model"] if r["match_weight"] is not None), default=1)
    model_rows = "".join(
        f"<tr><td>{e(r['comparison'])}</td><td>{e(r['level'])}</td><td class=num>{fmt(r['m'], 4)}</td>"
        f"<td class=num>{fmt(r['u'], 4)}</td><td class=num>{fmt(r['match_weight'], 2)}</td>"
        f"<td>{bar(r['match_weight'] or 0, weight_scale)}</td></tr>" for r in report["model"])
    hist = report["match_weight_histogram"]
    hist_scale = max((h["count"] for h in hist), default=1)
    hist_rows = "".join(f"<tr><td class=num>{h['from']} to {h['to']}</td><td class=num>{h['count']:,}</td>"
                        f"<td>{bar(h['count'], hist_scale, 400)}</td></tr>" for h in hist if h["count"])
    sizes = report["person_size_histogram"]
    size_scale = max(sizes.values(), default=1)
    size_rows = "".join(f"<tr><td class=num>{k}</td><td class=num>{v:,}</td><td>{bar(v, size_scale, 400)}</td></tr>"
                        for k, v in sizes.items())
    rate_tables = ""
    for key, title in (("link_rate_by_source", "source"), ("link_rate_by_source_kind", "source kind"),
                       ("link_rate_by_age_band", "age band")):
        column = {"source": "source", "source kind": "source_kind", "age band": "age_band"}[title]
        rows = "".join(f"<tr><td>{e('unknown' if r[column] is None else str(r[column]))}</td><td class=num>{r['records']:,}</td>"
                       f"<td class=num>{r['link_rate']:.1%}</td><td>{bar(r['link_rate'], 1, 200)}</td></tr>"
                       for r in report[key])
        rate_tables += (f"<h3>by {e(title)}</h3><table><tr><th>{e(title)}</th><th>records</th><th>linked</th><th></th>"
                        f"</tr>{rows}</table>")
    waterfalls = ""
    for label, link in zip(("strongest link", "weakest link kept", "strongest link rejected"),
                           report["sample_links"], strict=False):
        parts = {k[3:]: v for k, v in link.items() if k.startswith("mw_")}
        scale = max((abs(v) for v in parts.values() if v is not None), default=1)
        rows = "".join(f"<tr><td>{e(k)}</td><td class=num>{fmt(v, 2)}</td><td>{bar(v or 0, scale)}</td></tr>"
                       for k, v in parts.items())
        waterfalls += (f"<h3>{e(label)}: weight {fmt(link['match_weight'], 2)}, probability "
                       f"{fmt(link['match_probability'], 4)}</h3><table><tr><th>comparison</th><th>weight</th><th></th>"
                       f"</tr>{rows}</table>")
    blocking = "".join(f"<tr><td><code>{e(rule)}</code></td><td class=num>{count:,}</td></tr>"
                       for rule, count in report["comparisons_per_blocking_rule"].items())
    training = report["training"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>carelink linkage report {e(report['run_id'])}</title>
<style>{CSS}</style></head><body>
<h1>Linkage report</h1>
<p>Run {e(report['run_id'])} · threshold {report['threshold']} · model trained {e(str(training.get('trained_at')))}
on {training.get('records', 0):,} records · linkage key {e(str(training.get('linkage_key_id')))} · Splink
{e(str(training.get('splink_version')))}</p>
<div class="cards">{cards}</div>
<h2>Warnings</h2>{warnings}
<h2>Model</h2><p>Prior probability that two random records match: {fmt(report['prior_match_probability'], 3)}.
Match weight = log<sub>2</sub>(m/u); bars to scale, red for evidence against.</p>
<table><tr><th>comparison</th><th>level</th><th>m</th><th>u</th><th>weight</th><th></th></tr>{model_rows}</table>
<h2>Match-weight distribution of scored pairs</h2><table><tr><th>weight</th><th>pairs</th><th></th></tr>{hist_rows}</table>
<h2>People by number of records</h2><table><tr><th>records</th><th>people</th><th></th></tr>{size_rows}</table>
<h2>Link rates</h2><p>Share of records linked to at least one other record: a group that links much less than the
others may be served worse by the linkage.</p>{rate_tables}
<h2>Sample links, comparison by comparison</h2>{waterfalls}
<h2>Blocking</h2><table><tr><th>rule</th><th>comparisons</th></tr>{blocking}</table>
</body></html>
"""


def write_report(folder: Path, **inputs: Any) -> dict[str, Any]:
    """Build and write ``linkage_report.json`` and ``linkage_report.html`` into ``folder``."""
    report = build_report(**inputs)
    write_json(report, folder / "linkage_report.json")
    write_text(render_html(report), folder / "linkage_report.html")
    return report
