"""Shared pieces of carelink's self-contained HTML reports: one stylesheet, bars drawn with CSS, number formats.

Reports carry everything inline (no script, font, image or stylesheet fetched from anywhere) so they open offline.
"""

from __future__ import annotations

import html
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,Arial,sans-serif;margin:2rem;color:#1d2433;max-width:1400px}.nowrap{white-space:nowrap}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7e2;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}td,th{padding:.25rem .6rem;border-bottom:1px solid #e6eaf0;
text-align:left;vertical-align:middle}th{background:#f3f6fa}.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:inline-block;height:.8rem;background:#3b6fb6;vertical-align:middle}.neg{background:#c0504d}
.warn{background:#fff4e0;border-left:4px solid #e69500;padding:.5rem 1rem;margin:.4rem 0}
.ok{background:#eaf6ec;border-left:4px solid #3a9a4a;padding:.5rem 1rem}.cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{background:#f3f6fa;border-radius:6px;padding:.6rem 1rem;min-width:9rem}.card b{display:block;font-size:1.3rem}
"""


def bar(value: float, scale: float, width: int = 220) -> str:
    """A horizontal bar ``value/scale`` of ``width`` pixels long; red when negative."""
    pixels = 0 if not scale else min(width, round(abs(value) / scale * width))
    return f'<span class="bar{" neg" if value < 0 else ""}" style="width:{pixels}px"></span>'


def fmt(value: Any, digits: int = 3) -> str:
    """A number or text for a table cell, escaped."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def table(headers: list[str], rows: list[list[str]]) -> str:
    """An HTML table; cells are already-formatted HTML."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, body: str) -> str:
    """A whole self-contained page."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")
