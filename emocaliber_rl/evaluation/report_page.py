"""``summary.html``: the runs, the tables and the figures (inlined as base64 PNGs) on one page."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from emocaliber_rl.evaluation.report_runs import Run
from emocaliber_rl.evaluation.report_tables import Table, table_html


def _parsed_shares(scores: dict[str, Any]) -> tuple[str, str]:
    """Overall shares of parsed answers and parsed verbalised confidences, as "97.10 %"."""
    groups = list(scores["groups"].values())
    n = sum(g["n"] for g in groups)
    answers = sum(g["parsed"] * g["n"] for g in groups)
    conf = sum((g.get("verb") or {}).get("n_conf", 0) for g in groups)
    if not n:
        return "-", "-"
    return f"{answers / n * 100:.2f} %", f"{conf / n * 100:.2f} %"


_CSS = """body{font-family:sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;
text-align:right}th{background:#eee;text-align:center}td:first-child{text-align:left}
.note{color:#666;font-size:90%}img{max-width:100%;border:1px solid #ddd;margin:.5em 0}
code{background:#f4f4f4;padding:0 3px}"""


def summary_html(runs: list[Run], tables: list[Table], figures: list[tuple[Path, str]]) -> str:
    """The whole page: a row per run (where its numbers came from), every table, every figure."""
    page = ["<!DOCTYPE html>", ('<html><head><meta charset="utf-8"><title>EmoCaliber evaluation'
            "</title>"), f"<style>{_CSS}</style></head><body>", "<h1>EmoCaliber evaluation</h1>",
            "<h2>Runs</h2>", ("<table><tr><th>Run</th><th>Score JSON</th><th>Per-sample rows</th>"
            "<th>Parse</th><th>Missing conf.</th><th>Samples</th><th>Answers parsed</th>"
            "<th>Verb conf. parsed</th></tr>")]
    for r in runs:
        meta = r.scores.get("meta", {})
        page.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
            r.name, r.path, r.samples_from or "(none: no plots)", meta.get("parse", "?"),
            meta.get("missing_conf", "?"), meta.get("n", "?"), *_parsed_shares(r.scores))) + "</tr>")
    page.append("</table>")
    page.append("<h2>Tables</h2>")
    page += [table_html(t) for t in tables]
    page.append("<h2>Figures</h2>")
    for p, caption in figures:
        b64 = base64.b64encode(p.read_bytes()).decode("ascii")
        page.append(f'<figure><img src="data:image/png;base64,{b64}" alt="{html.escape(p.name)}">'
                    f"<figcaption>{html.escape(caption)} <code>{html.escape(p.name)}</code>"
                    "</figcaption></figure>")
    page.append("</body></html>")
    return "\n".join(page)
