"""The pseudonymisation report as a page an information-governance officer can read and sign off."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from carelink.htmlpage import bar, fmt, page, table
from carelink.tables import read_json, write_json, write_text


def _coincidences(scan: dict[str, Any]) -> str:
    """A paragraph on Bloom-filter words that equal their own record's identifier by chance (empty when none)."""
    found = scan.get("coincidences") or []
    if not found:
        return ""
    listing = "; ".join(f"{x['table']}.{x['column']}: {x['cells']:,} record{'' if x['cells'] == 1 else 's'}, "
                        f"{x['expected_by_chance']:g} expected" for x in found)
    return ("<p>Chance, not leaks: a few Bloom-filter words equal a number of their own record (such as its id's digits) "
            f"about as often as random words of as few bits set would ({html.escape(listing)}). A sparse word is a "
            "small number; an identifier written into a word is found in many more records than chance gives.</p>")


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    e = html.escape
    scan, risk = report["leak_scan"], report["risk"]
    verdict = (f'<div class="ok">Leak scan passed: {scan["cells_scanned"]:,} cells in {scan["columns_scanned"]} '
               f'columns compared with {scan["identifier_values"]:,} identifier values; none found.'
               + (f' The Bloom-filter cells of {scan["records_compared_before"]:,} records carried unchanged from '
                  'the previous delivery were compared with their own identifiers when that delivery was scanned.'
                  if scan.get("records_compared_before") else '') + '</div>'
               if scan["passed"] else
               '<div class="warn">Leak scan FAILED: ' + e(", ".join(f"{x['table']}.{x['column']} ({x['cells']} cells)"
                                                          for x in scan["leaks"])) + ". Nothing was published.</div>")
    fields = table(["output column", "from", "method", "algorithm", "key ID", "reversible", "values out"], [
        [f"<code>{e(f['column'])}</code>", e(f["from"]), e(f["method"]), e(f["algorithm"]),
         f'<span class=nowrap>{e(f["key_id"] or "—")}</span>', e(f["reversible"]),
         fmt(f["non_null_out"])] for f in report["fields"]])
    statuses = table(["NHS number status", "records"], [[e(k), fmt(v)] for k, v in report["nhs_number_status"].items()]
                     + [["valid, of which in the 999 test range", fmt(report.get("nhs_number_test_range", 0))]])
    anonymity = risk["k_anonymity"]
    sizes = anonymity["class_size_distribution"]
    top = max(sizes.values(), default=1)
    k_table = table(["records in a class of", "records", ""], [[e(k), fmt(v), bar(v, top, 300)] for k, v in sizes.items()])
    exposure = table(["token column", "distinct", "unique", f"rarer than k={anonymity['k']}", "top token's share"], [
        [f"<code>{e(r['column'])}</code>", fmt(r["distinct"]), fmt(r["unique"]), fmt(r["rarer_than_k"]),
         f"{r['top_share']:.1%}"] for r in risk["token_exposure"]])
    attacks = table(["values attacked", "distinct values", "re-identified", "share of values", "share of records"], [
        [e(name.replace("_", " ")), fmt(a["distinct_values"]), fmt(a["values_reidentified"]),
         f"{a['share_values']:.1%}", f"{a['share_records']:.1%}"] for name, a in risk["frequency_attack"].items()])
    inputs = table(["input", "SHA-256"], [[e(name), f"<code>{e(digest)}</code>"]
                                          for name, digest in report["inputs_sha256"].items()])
    counts = report["counts"]
    body = f"""<h1>Pseudonymisation report — {e(report['source'])}</h1>
<p>Partnership {e(report['partnership'])} · source kind {e(report['source_kind'])} · carelink
{e(report['carelink_version'])} · linkage key {e(report['linkage_key_id'])} · config SHA-256
<code>{e(report.get('config_sha256') or '—')}</code></p>
<div class="cards"><div class="card">records in<b>{fmt(counts['records_in'])}</b></div>
<div class="card">records out<b>{fmt(counts['records_out'])}</b></div>
<div class="card">activity rows out<b>{fmt(counts['activity_rows_out'])}</b></div></div>
<h2>Leak scan</h2>{verdict}{_coincidences(scan)}
<p>Not scanned (fixed vocabularies and event dates): {e(', '.join(scan['not_scanned']) or 'none')}.</p>
<h2>What leaves the partner, field by field</h2>
<p>Plaintext fields dropped: {e(', '.join(report['dropped_plaintext_fields']))}. Only <code>nodes.parquet</code> and
<code>activity.parquet</code> (with <code>manifest.json</code>, their checksums, which the hub verifies) go to the
linkage hub; <code>reid_map.parquet</code> and this report stay here.</p>
{fields}
<h2>NHS number status</h2>{statuses}
<h2>Re-identification risk</h2>
<h3>k-anonymity of plaintext quasi-identifiers ({e(', '.join(anonymity['quasi_identifiers']))})</h3>
<p>{fmt(anonymity['records_below_k'])} records ({anonymity['share_below_k']:.1%}) are in a class smaller than
k={anonymity['k']}; {fmt(anonymity['records_unique'])} are unique.</p>{k_table}
<h3>Token frequency exposure</h3><p>Keyed tokens hide values, not how often they occur.</p>{exposure}
<h3>Frequency-attack self-test (worst case)</h3>
<p>An attacker holding this partner's exact name frequencies aligns tokens with names by rank; a name whose frequency
no other name shares is re-identified. Worst share of records exposed: <b>{risk['worst_frequency_attack_share_records']:.1%}</b>.
</p>{attacks}
<h2>Inputs</h2>{inputs}"""
    return page(f"carelink pseudonymisation report {report['source']}", body)


def write_report(report: dict[str, Any], folder: Path) -> None:
    """Write ``pseudonymisation_report.json`` and ``.html``."""
    write_json(report, folder / "pseudonymisation_report.json")
    write_text(render_html(report), folder / "pseudonymisation_report.html")


def check_reports(run_folder: Path, *, max_reidentified_share: float, max_share_below_k: float) -> list[str]:
    """Problems a nightly job should stop on: a failed leak scan, or risk over the thresholds (one line each)."""
    reports = sorted((run_folder / "pseudonymise").glob("*/pseudonymisation_report.json"))
    if not reports:
        return [f"{run_folder}: no pseudonymisation report (run pseudonymise first)"]
    problems = []
    for path in reports:
        report = read_json(path)
        source = report["source"]
        if not report["leak_scan"]["passed"]:
            problems.append(f"{source}: leak scan failed")
        worst = report["risk"]["worst_frequency_attack_share_records"]
        if worst > max_reidentified_share:
            problems.append(f"{source}: a frequency attack would re-identify {worst:.1%} of records "
                            f"(threshold {max_reidentified_share:.1%})")
        below_k = report["risk"]["k_anonymity"]["share_below_k"]
        if below_k > max_share_below_k:
            problems.append(f"{source}: {below_k:.1%} of records are in quasi-identifier classes smaller than "
                            f"k={report['risk']['k_anonymity']['k']} (threshold {max_share_below_k:.1%})")
    return problems
