"""``summary.html``: the runs, the tables and the figures (inlined as base64 PNGs) on one page."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from emocaliber_rl.evaluation.report_plots import reference_label
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
code{background:#f4f4f4;padding:0 3px}dt{font-weight:bold;margin-top:.4em}dd{margin-left:1.5em}"""

# What a reader needs to read the tables: the confidence sources (paper section 4.5, Table 5;
# computed in emocaliber_rl/inference/probs.py) and each metric with its direction (formulas:
# emocaliber_rl/evaluation/metrics.py, docs/evaluation.md).
_SOURCES_HELP: tuple[tuple[str, str], ...] = (
    ("Verb", ("the verbalised confidence: the number the model wrote inside "
             "<confidence>...</confidence>.")),
    ("Ans", ("the probability the model gave the first decisive token of its answer (the first "
            "token of the content inside <answer>).")),
    ("Avg", ("the mean probability of all the tokens the model generated, reasoning and answer "
            "included.")),
)
_METRICS_HELP: tuple[tuple[str, str], ...] = (
    ("Acc ↑", ("share of answers that name the true label; an answer that names no single "
              "candidate counts as wrong. A group's Acc is the mean over its tasks.")),
    ("Macro-F1 ↑", ("the mean over the task's candidate labels of each label's F1 (2TP / (2TP + FP "
                   "+ FN)): every label counts the same, however rare (one neither in the test images nor predicted is left out).")),
    ("Weighted-F1 ↑", ("each label's F1 weighted by its share of the test images (scikit-learn's "
                      "average='weighted'): what the paper's F1 columns report.")),
    ("ECE ↓", ("expected calibration error: the confidences are cut into {n_bins} equal-width bins "
              "and ECE is the sample-weighted mean gap between accuracy and mean confidence per "
              "bin. 0 means a stated confidence c is right a share c of the time.")),
    ("Brier ↓", ("the mean of (confidence - correct)^2, correct being 1 or 0: calibration and "
                "the separation of right from wrong answers in one number.")),
    ("AUC ↑", ("ROC-AUC of the confidence as a predictor of being right: the chance that a right "
              "answer gets a higher confidence than a wrong one (0.5 = no better than chance). "
              "Undefined ('-') when a group's answers are all right or all wrong.")),
    ("AUC within ↑", ("the mean of the group's per-subtask AUCs, leaving out subtasks whose "
                     "answers are all right or all wrong. The pooled AUC also rewards a confidence "
                     "that only knows the subtask (high on an easy one, low on a hard one); within "
                     "a subtask such a confidence scores 0.5, so this column shows what the "
                     "confidence knows about each image.")),
)


def _how_to_read(runs: list[Run], reference: Run | None) -> list[str]:
    n_bins = runs[0].scores.get("meta", {}).get("n_bins", 10) if runs else 10
    out = ["<h2>How to read this page</h2>",
           ("<p>Values are percentages with two decimals, as in the paper; in each column the best "
           "value is bold; ↑ = higher is better, ↓ = lower is better; '-' = undefined or not "
           "available. ECE, Brier and AUC pool the group's samples (AUC within averages its "
           "subtasks' AUCs); a sample without a usable confidence enters them as the run's "
           "<i>Missing conf.</i> policy says (exclude: left out; zero / half: read as 0.0 / 0.5), "
           "and the <i>Verb conf. parsed</i> column shows how many had one.</p>"),
           "<p>Confidence sources (the <i>Conf</i> column):</p><dl>"]
    out += [f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in _SOURCES_HELP]
    out += ["</dl>", "<p>Metrics:</p><dl>"]
    out += [f"<dt>{html.escape(k)}</dt><dd>{html.escape(v.format(n_bins=n_bins))}</dd>"
            for k, v in _METRICS_HELP]
    out.append("</dl>")
    if reference is not None:
        what = ("the known-answer world's Bayes posterior: its argmax as the answer and its "
                "maximum as the confidence, the best any model can do on these images"
                if reference.name == "oracle" else "the run the others are compared with")
        out.append(f"<p>Reference: <b>{html.escape(reference_label(reference))}</b>, "
                   f"{html.escape(what)}. It is a row of every table and the dashed black line or "
                   "outline in the reliability diagrams and histograms.</p>")
    return out


def summary_html(runs: list[Run], tables: list[Table], figures: list[tuple[Path, str]],
                 reference: Run | None = None) -> str:
    """The whole page: a row per run (where its numbers came from), what the columns mean, every
    table once, every figure."""
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
    page += _how_to_read(runs, reference)
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
