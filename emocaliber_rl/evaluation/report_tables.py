"""Report tables in the paper's layout (Tables 2-6) and their Markdown, CSV, LaTeX and HTML forms.

Values are fractions in the score JSON and printed in percent with two decimals, as in the paper;
``-`` = undefined or not available. With several runs the best value of each column is bold.
"""

from __future__ import annotations

import csv
import html
from dataclasses import dataclass, field
from pathlib import Path

from emocaliber_rl.evaluation.report_runs import Run
from emocaliber_rl.evaluation.scoring import CONF_SOURCES
from emocaliber_rl.taxonomy import GROUP_ID_VER, GROUP_ID_VSA, GROUP_OOD_VER

# Column order of Tables 2-4 as printed in the paper.
PAPER_TASK_ORDER: dict[str, tuple[str, ...]] = {
    GROUP_ID_VER: ("FI-8", "WebEmo-7", "WebEmo-25", "EmoSet-8"),
    GROUP_ID_VSA: ("FI-2", "WebEmo-2"),
    GROUP_OOD_VER: ("UnbiasedEmo-6", "Abstract-8", "Artphoto-8"),
}
# Table 5's group order.
PAPER_GROUP_ORDER: tuple[str, ...] = (GROUP_ID_VER, GROUP_ID_VSA, GROUP_OOD_VER)
HIGHER_IS_BETTER: dict[str, bool] = {"Acc": True, "Macro-F1": True, "Weighted-F1": True,
                                     "ECE": False, "Brier": False, "AUC": True, "AUC within": True}
PREDICTION_NOTE = ("Acc, Macro-F1 and Weighted-F1 in %; Average = mean over the group's tasks. The "
                   "paper's F1 columns are weighted-F1 (sklearn average='weighted', as the official "
                   "release computes them): compare the paper with Weighted-F1.")
_ARROW = {True: "↑", False: "↓"}
SOURCE_NAME = {"verb": "Verb", "ans": "Ans", "avg": "Avg"}


@dataclass
class Table:
    """A table with a stub (row labels) and value columns under spanning headers."""

    title: str
    stub_header: list[str]
    columns: list[tuple[str, str]]  # (spanning header, metric name in HIGHER_IS_BETTER)
    rows: list[tuple[list[str], list[float | None]]] = field(default_factory=list)
    note: str = ""

    def best(self) -> list[float | None]:
        """Best value of each column, or None when there is no single best to mark."""
        out: list[float | None] = []
        for j, (_, metric) in enumerate(self.columns):
            vals = [r[1][j] for r in self.rows if r[1][j] is not None]
            if len(vals) < 2 or len({_pct(v) for v in vals}) == 1:
                # nothing to single out: one value, or every run prints the same number
                out.append(None)
            else:
                out.append(max(vals) if HIGHER_IS_BETTER[metric] else min(vals))
        return out


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}"


def _is_best(v: float | None, best: float | None) -> bool:
    # compare what is printed, so ties at two decimals are all bold
    return v is not None and best is not None and _pct(v) == _pct(best)



def prediction_table(runs: list[Run], group: str) -> Table:
    """Tables 2-4: per-task Acc / macro-F1 / weighted-F1 of ``group`` and the group average."""
    metric_keys = (("Acc", "acc"), ("Macro-F1", "macro_f1"), ("Weighted-F1", "weighted_f1"))
    tasks = [t for t in PAPER_TASK_ORDER[group] if any(t in r.scores["tasks"] for r in runs)]
    cols = [(t, m) for t in [*tasks, "Average"] for m, _ in metric_keys]
    table = Table(f"Emotion prediction on {group} tasks", ["Model"], cols, note=PREDICTION_NOTE)
    for r in runs:
        vals: list[float | None] = []
        for t in tasks:
            ts = r.scores["tasks"].get(t, {})
            vals += [ts.get(k) for _, k in metric_keys]
        g = r.scores["groups"].get(group, {})
        vals += [g.get(k) for _, k in metric_keys]
        table.rows.append(([r.name], vals))
    return table


def sources(runs: list[Run]) -> list[str]:
    have = {s for r in runs for g in r.scores["groups"].values() for s in CONF_SOURCES if s in g}
    return [s for s in CONF_SOURCES if s in have]


def confidence_table(runs: list[Run]) -> Table:
    """Table 5: ECE / Brier / AUC per group, a row per run and confidence source, plus the
    within-subtask AUC beside the pooled one (a confidence that only knows the subtask scores a
    high pooled AUC but 0.5 within)."""
    groups = [g for g in PAPER_GROUP_ORDER if any(g in r.scores["groups"] for r in runs)]
    cols = [(g, m) for g in groups for m in ("ECE", "Brier", "AUC", "AUC within")]
    table = Table("Confidence estimation", ["Model", "Conf"], cols,
                  note="In %. ECE, Brier and AUC pool the group's samples; AUC within = mean of "
                       "the group's per-subtask AUCs (subtasks where it is undefined left out). "
                       "'-' = undefined (AUC of a single-class group) or no confidence.")
    for r in runs:
        for src in CONF_SOURCES:
            if not any(src in g for g in r.scores["groups"].values()):
                continue
            vals: list[float | None] = []
            for g in groups:
                cal = r.scores["groups"].get(g, {}).get(src) or {}
                vals += [cal.get("ece"), cal.get("brier"), cal.get("auc"), cal.get("auc_within")]
            table.rows.append(([r.name, SOURCE_NAME[src]], vals))
    return table


def evolution_table(runs: list[Run], source: str = "verb") -> Table:
    """Table 6: Acc, ECE, Brier per group for one confidence source."""
    groups = [g for g in PAPER_GROUP_ORDER if any(g in r.scores["groups"] for r in runs)]
    cols = [(g, m) for g in groups for m in ("Acc", "ECE", "Brier")]
    table = Table(f"Runs side by side ({SOURCE_NAME[source]} confidence)", ["Model"], cols,
                  note="In %. Acc = mean over tasks; ECE and Brier pool the group's samples.")
    for r in runs:
        vals: list[float | None] = []
        for g in groups:
            gs = r.scores["groups"].get(g, {})
            cal = gs.get(source) or {}
            vals += [gs.get("acc"), cal.get("ece"), cal.get("brier")]
        table.rows.append(([r.name], vals))
    return table


def table_markdown(table: Table) -> str:
    """GitHub Markdown (one header row: "TASK Metric ↑")."""
    best = table.best()
    head = table.stub_header + [f"{top} {m} {_ARROW[HIGHER_IS_BETTER[m]]}" for top, m in table.columns]
    lines = [f"**{table.title}**", "", "| " + " | ".join(head) + " |",
             "|" + "|".join([":--"] * len(table.stub_header) + ["--:"] * len(table.columns)) + "|"]
    for stub, vals in table.rows:
        cells = [s.replace("|", "\\|") for s in stub]
        for v, b in zip(vals, best):
            cells.append(f"**{_pct(v)}**" if _is_best(v, b) else _pct(v))
        lines.append("| " + " | ".join(cells) + " |")
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines) + "\n"


def write_table_csv(table: Table, path: Path) -> None:
    """CSV: flattened headers ("FI-8 Acc"), values in percent, empty = undefined."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(table.stub_header + [f"{top} {m}" for top, m in table.columns])
        for stub, vals in table.rows:
            w.writerow(stub + ["" if v is None else f"{v * 100:.2f}" for v in vals])


_TEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "\\": r"\textbackslash{}"}


def _tex(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def _header_spans(table: Table) -> list[tuple[str, int]]:
    """The spanning header row: each top-level heading with the number of columns under it."""
    spans: list[tuple[str, int]] = []
    for top, _ in table.columns:
        if spans and spans[-1][0] == top:
            spans[-1] = (top, spans[-1][1] + 1)
        else:
            spans.append((top, 1))
    return spans


def table_latex(table: Table) -> str:
    """A booktabs ``tabular`` with multicolumn spanning headers, as the paper's tables."""
    best = table.best()
    ns = len(table.stub_header)
    spans = _header_spans(table)
    arrows = {True: r"$\uparrow$", False: r"$\downarrow$"}
    lines = [f"% {table.title}", r"\begin{tabular}{" + "l" * ns + "c" * len(table.columns) + "}",
             r"\toprule"]
    lines.append(" & ".join([""] * ns + [rf"\multicolumn{{{k}}}{{c}}{{{_tex(t)}}}" for t, k in spans])
                 + r" \\")
    start = ns + 1
    rules = []
    for _, k in spans:
        rules.append(rf"\cmidrule(lr){{{start}-{start + k - 1}}}")
        start += k
    lines.append(" ".join(rules))
    lines.append(" & ".join([_tex(s) for s in table.stub_header]
                            + [f"{m} {arrows[HIGHER_IS_BETTER[m]]}" for _, m in table.columns])
                 + r" \\")
    lines.append(r"\midrule")
    for stub, vals in table.rows:
        cells = [_tex(s) for s in stub]
        for v, b in zip(vals, best):
            cells.append(rf"\textbf{{{_pct(v)}}}" if _is_best(v, b) else _pct(v))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def table_html(table: Table) -> str:
    best = table.best()
    ns = len(table.stub_header)
    spans = _header_spans(table)
    out = [f"<h3>{html.escape(table.title)}</h3>", "<table>", "<tr>"]
    out += [f'<th rowspan="2">{html.escape(s)}</th>' for s in table.stub_header]
    out += [f'<th colspan="{k}">{html.escape(t)}</th>' for t, k in spans]
    out += ["</tr>", "<tr>"]
    out += [f"<th>{m} {_ARROW[HIGHER_IS_BETTER[m]]}</th>" for _, m in table.columns]
    out.append("</tr>")
    for stub, vals in table.rows:
        cells = [f"<td>{html.escape(s)}</td>" for s in stub[:ns]]
        for v, b in zip(vals, best):
            text = _pct(v)
            cells.append(f"<td><b>{text}</b></td>" if _is_best(v, b) else f"<td>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    if table.note:
        out.append(f'<p class="note">{html.escape(table.note)}</p>')
    return "\n".join(out)
