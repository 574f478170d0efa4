"""Score JSONs of one or many runs -> tables in the paper's layout, plots, and ``summary.html``.

Tables (each written as ``.md``, ``.csv`` and ``.tex``; values in percent with two decimals, as in
the paper; ``-`` = undefined or not available, e.g. AUC of a group whose answers are all right):

* ``prediction_id_ver`` / ``prediction_id_vsa`` / ``prediction_ood_ver`` -- Tables 2-4: per-task
  Acc, macro-F1 and weighted-F1 of each run, with the group average (mean over tasks). The
  paper's F1 columns are weighted-F1 (they equal the release's ``f1_score(average='weighted')``);
  compare those with the paper.
* ``confidence`` -- Table 5: ECE, Brier, AUC per group, one row per run and confidence source.
* ``evolution`` -- Table 6: Acc, ECE, Brier per group with one confidence source (``--source``).

With several runs the best value of each column is bold (Markdown, LaTeX, HTML).

Plots (PNG, matplotlib Agg), drawn from the per-sample rows of each run:

* ``reliability_<run>_<source>.png`` -- reliability diagram per group (accuracy per confidence
  bin against the diagonal, bins as the ECE uses them).
* ``confidence_hist_<source>.png`` -- Figure 6 style: share of samples per confidence bin per
  group, runs side by side, 95 % Wilson intervals as error bars.
* ``accuracy_coverage_<source>.png`` -- accuracy of the k most confident answers against coverage
  k/N per group, one line per run, its area (AUACC) in the legend.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emocaliber_rl.evaluation import metrics
from emocaliber_rl.evaluation.parsing import PARSE_MODES
from emocaliber_rl.evaluation.scoring import (
    CONF_SOURCES,
    Samples,
    apply_missing_conf,
    read_predictions,
    read_samples,
)
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
                                     "ECE": False, "Brier": False, "AUC": True}
PREDICTION_NOTE = ("Acc, Macro-F1 and Weighted-F1 in %; Average = mean over the group's tasks. The "
                   "paper's F1 columns are weighted-F1 (sklearn average='weighted', as the official "
                   "release computes them): compare the paper with Weighted-F1.")
_ARROW = {True: "↑", False: "↓"}
_SOURCE_NAME = {"verb": "Verb", "ans": "Ans", "avg": "Avg"}


@dataclass
class Run:
    """One evaluated run: its display name, score JSON and (when found) per-sample rows."""

    name: str
    scores: dict[str, Any]
    path: Path
    samples: Samples | None = None
    samples_from: str | None = None


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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "run"


# ---------------------------------------------------------------- loading runs


def _find_samples(
    scores: dict[str, Any], base: Path, candidates: list[Path], scan_dir: bool
) -> tuple[Samples | None, str | None]:
    """Per-sample rows of a run: ``meta.samples``, then ``candidates``, then the predictions file
    (``meta.input``, or with ``scan_dir`` the one ``*.jsonl`` of a run directory) re-parsed."""
    meta = scores.get("meta", {})
    paths: list[Path] = []
    if meta.get("samples"):
        p = Path(meta["samples"])
        paths.append(p if p.is_absolute() else base / p)
    paths.extend(candidates)
    for p in paths:
        if p.is_file():
            return read_samples(p), str(p)
    # re-parse the predictions file with the run's own settings
    parse = meta.get("parse") if meta.get("parse") in PARSE_MODES else "strict"
    if meta.get("input"):
        p = Path(meta["input"])
        for q in (p, base / p):
            if q.is_file():
                return read_predictions(q, parse=parse), str(q)
    if scan_dir:
        # only an unambiguous predictions file: a wrong one would plot another run's answers
        found = [p for p in sorted(base.glob("*.jsonl")) if p.name != "samples.jsonl"]
        if len(found) == 1:
            return read_predictions(found[0], parse=parse), str(found[0])
    return None, None


def load_run(path: str | Path, name: str | None = None) -> Run:
    """A run from a score JSON, or a directory holding ``scores.json`` (+ samples/predictions)."""
    p = Path(path)
    if p.is_dir():
        score_path = p / "scores.json"
        if not score_path.is_file():
            raise FileNotFoundError(f"{p}: directory has no scores.json")
        default_name = p.resolve().name
        extra = [p / "samples.jsonl"]
    elif p.is_file():
        score_path = p
        default_name = p.resolve().parent.name if p.stem == "scores" else p.stem
        extra = [p.with_name(p.stem + ".samples.jsonl")]
    else:
        raise FileNotFoundError(f"{p}: no such file or directory")
    try:
        scores = json.loads(score_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{score_path}: invalid JSON: {e.msg} (line {e.lineno})") from None
    if not isinstance(scores, dict) or "tasks" not in scores or "groups" not in scores:
        raise ValueError(f"{score_path}: not a score JSON (needs 'tasks' and 'groups')")
    samples, samples_from = _find_samples(scores, score_path.parent, extra, scan_dir=p.is_dir())
    return Run(name or default_name, scores, score_path, samples, samples_from)


def _unique_names(runs: list[Run]) -> None:
    seen: dict[str, int] = {}
    for r in runs:
        if r.name in seen:
            seen[r.name] += 1
            r.name = f"{r.name}-{seen[r.name]}"
        else:
            seen[r.name] = 1


# ---------------------------------------------------------------- tables


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


def _sources(runs: list[Run]) -> list[str]:
    have = {s for r in runs for g in r.scores["groups"].values() for s in CONF_SOURCES if s in g}
    return [s for s in CONF_SOURCES if s in have]


def confidence_table(runs: list[Run]) -> Table:
    """Table 5: ECE / Brier / AUC per group, a row per run and confidence source."""
    groups = [g for g in PAPER_GROUP_ORDER if any(g in r.scores["groups"] for r in runs)]
    cols = [(g, m) for g in groups for m in ("ECE", "Brier", "AUC")]
    table = Table("Confidence estimation", ["Model", "Conf"], cols,
                  note="In %. Group metrics pool the group's samples. '-' = undefined (AUC of a "
                       "single-class group) or no confidence.")
    for r in runs:
        for src in CONF_SOURCES:
            if not any(src in g for g in r.scores["groups"].values()):
                continue
            vals: list[float | None] = []
            for g in groups:
                cal = r.scores["groups"].get(g, {}).get(src) or {}
                vals += [cal.get("ece"), cal.get("brier"), cal.get("auc")]
            table.rows.append(([r.name, _SOURCE_NAME[src]], vals))
    return table


def evolution_table(runs: list[Run], source: str = "verb") -> Table:
    """Table 6: Acc, ECE, Brier per group for one confidence source."""
    groups = [g for g in PAPER_GROUP_ORDER if any(g in r.scores["groups"] for r in runs)]
    cols = [(g, m) for g in groups for m in ("Acc", "ECE", "Brier")]
    table = Table(f"Runs side by side ({_SOURCE_NAME[source]} confidence)", ["Model"], cols,
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


# ---------------------------------------------------------------- plots


def _group_conf(run: Run, group: str, source: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Confidences and correctness of ``group`` after the run's missing-confidence policy."""
    s = run.samples
    if s is None or source not in s.conf:
        return None
    idx = np.flatnonzero(s.group == group)
    if idx.size == 0:
        return None
    policy = run.scores.get("meta", {}).get("missing_conf", "exclude")
    mask, filled = apply_missing_conf(s.conf[source][idx], policy)
    return filled[mask], s.correct[idx][mask]


def _groups_with_samples(runs: list[Run]) -> list[str]:
    return [g for g in PAPER_GROUP_ORDER
            if any(r.samples is not None and np.any(r.samples.group == g) for r in runs)]


def _wilson(k: np.ndarray, n: int, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """95 % Wilson score interval of a proportion k/n (stays inside [0, 1] for small counts)."""
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def plot_reliability(run: Run, source: str, path: Path, n_bins: int = 10) -> bool:
    """Reliability diagram per group; returns False when the run has no such confidences."""
    import matplotlib.pyplot as plt

    groups = [g for g in _groups_with_samples([run]) if _group_conf(run, g, source) is not None]
    data = {g: _group_conf(run, g, source) for g in groups}
    groups = [g for g in groups if data[g] is not None and data[g][0].size > 0]
    if not groups:
        return False
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 4.2), squeeze=False)
    width = 1.0 / n_bins
    centres = (np.arange(n_bins) + 0.5) * width
    for ax, g in zip(axes[0], groups):
        conf, corr = data[g]  # type: ignore[misc]
        b = metrics.calibration_bins(conf, corr, n_bins)
        ok = b["count"] > 0
        ax.bar(centres[ok], b["accuracy"][ok], width=width * 0.95, color="#4C72B0",
               edgecolor="black", linewidth=0.5, label="accuracy")
        # the gap drawn as a hatched outline between accuracy and mean confidence, above the bar
        # when over-confident and inside it when under-confident
        lo = np.minimum(b["accuracy"][ok], b["mean_conf"][ok])
        ax.bar(centres[ok], np.abs(b["mean_conf"][ok] - b["accuracy"][ok]), bottom=lo,
               width=width * 0.95, fill=False, hatch="///", edgecolor="#C44E52", linewidth=0.8,
               label="gap to mean confidence")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        ece = metrics.expected_calibration_error(conf, corr, n_bins)
        ax.set_title(f"{g}  (ECE {ece * 100:.2f}, n={conf.size})", fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel(f"confidence ({_SOURCE_NAME[source]})")
        ax.set_ylabel("accuracy")
        for x, c in zip(centres[ok], b["count"][ok]):
            ax.text(x, 0.01, str(int(c)), ha="center", va="bottom", fontsize=6, rotation=90)
    axes[0][0].legend(loc="upper left", fontsize=7)
    fig.suptitle(f"Reliability: {run.name}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _conf_series(runs: list[Run], source: str) -> tuple[list[str], dict[tuple[str, str], Any]]:
    """Per (run, group): confidences and correctness of ``source``; and the groups in which at
    least one run has such confidences (the panels worth drawing)."""
    groups = _groups_with_samples(runs)
    series = {(r.name, g): _group_conf(r, g, source) for r in runs for g in groups}
    groups = [g for g in groups if any(series[(r.name, g)] is not None
                                       and series[(r.name, g)][0].size for r in runs)]
    return groups, series


def plot_confidence_histogram(runs: list[Run], source: str, path: Path, n_bins: int = 10) -> bool:
    """Figure 6 style: share of samples per confidence bin, per group, runs side by side."""
    import matplotlib.pyplot as plt

    groups, series = _conf_series(runs, source)
    if not groups:
        return False
    fig, axes = plt.subplots(1, len(groups), figsize=(4.8 * len(groups), 3.8), squeeze=False)
    width = 0.8 / max(1, len(runs))
    x = np.arange(n_bins)
    for ax, g in zip(axes[0], groups):
        for j, r in enumerate(runs):
            d = series[(r.name, g)]
            if d is None or d[0].size == 0:
                continue
            counts = np.bincount(metrics.confidence_bin_index(d[0], n_bins), minlength=n_bins)
            n = int(d[0].size)
            share = counts / n
            lo, hi = _wilson(counts.astype(float), n)
            # at share 0 or 1 the interval's end equals the share up to rounding (-1e-17 apart),
            # and matplotlib refuses a negative error bar
            yerr = np.maximum(np.vstack([share - lo, hi - share]), 0.0)
            ax.bar(x - 0.4 + width * (j + 0.5), share, width=width, label=r.name,
                   yerr=yerr, capsize=2, error_kw={"linewidth": 0.8})
        ax.set_xticks(x, [f"{i / n_bins:.1f}" for i in range(n_bins)], fontsize=7)
        ax.set_xlabel(f"confidence bin start ({_SOURCE_NAME[source]})")
        ax.set_ylabel("share of samples")
        ax.set_title(g, fontsize=10)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Distribution of confidences (error bars: 95% Wilson intervals)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_accuracy_coverage(runs: list[Run], source: str, path: Path) -> bool:
    """Accuracy of the k most confident answers vs coverage k/N, per group, a line per run."""
    import matplotlib.pyplot as plt

    groups, series = _conf_series(runs, source)
    if not groups:
        return False
    fig, axes = plt.subplots(1, len(groups), figsize=(4.4 * len(groups), 3.8), squeeze=False)
    for ax, g in zip(axes[0], groups):
        for r in runs:
            d = series[(r.name, g)]
            if d is None or d[0].size == 0:
                continue
            cov, acc = metrics.accuracy_coverage_curve(*d)
            area = metrics.area_under_accuracy_coverage(*d)
            line = ax.plot(cov, acc, linewidth=1.4, label=f"{r.name} (AUACC {area * 100:.1f})")
            ax.axhline(float(np.mean(d[1])), color=line[0].get_color(), linestyle=":",
                       linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("coverage (answer only the most confident)")
        ax.set_ylabel("accuracy")
        ax.set_title(g, fontsize=10)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"Accuracy-coverage ({_SOURCE_NAME[source]} confidence; dotted: accuracy at full "
                 "coverage)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ---------------------------------------------------------------- the report


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


def write_report(
    run_paths: list[str | Path], out: str | Path, *, names: list[str] | None = None,
    source: str = "verb",
) -> list[Path]:
    """Load runs, write every table (md/csv/tex), plot, and ``summary.html``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display

    if names is not None and len(names) != len(run_paths):
        raise ValueError(f"{len(names)} names for {len(run_paths)} runs")
    runs = [load_run(p, names[i] if names else None) for i, p in enumerate(run_paths)]
    _unique_names(runs)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    tables: list[tuple[str, Table]] = []
    for g in PAPER_GROUP_ORDER:
        if any(g in r.scores["groups"] for r in runs):
            tables.append((f"prediction_{_slug(g)}", prediction_table(runs, g)))
    tables.append(("confidence", confidence_table(runs)))
    tables.append((f"evolution_{source}", evolution_table(runs, source)))
    md_all = []
    for stem, t in tables:
        md = table_markdown(t)
        md_all.append(md)
        (out_dir / f"{stem}.md").write_text(md, encoding="utf-8")
        write_table_csv(t, out_dir / f"{stem}.csv")
        (out_dir / f"{stem}.tex").write_text(table_latex(t), encoding="utf-8")
        written += [out_dir / f"{stem}.{ext}" for ext in ("md", "csv", "tex")]
    (out_dir / "tables.md").write_text("\n".join(md_all), encoding="utf-8")
    written.append(out_dir / "tables.md")

    figures: list[tuple[Path, str]] = []
    for r in runs:
        if r.samples is None:
            print(f"warning: {r.name}: no per-sample rows found (write them with `eval score "
                  "--samples`, or keep the predictions next to scores.json); no plots",
                  file=sys.stderr)
    with_samples = [r for r in runs if r.samples is not None]
    n_bins = int(runs[0].scores.get("meta", {}).get("n_bins", 10))
    for src in _sources(with_samples):
        for r in with_samples:
            p = out_dir / f"reliability_{_slug(r.name)}_{src}.png"
            if plot_reliability(r, src, p, n_bins):
                figures.append((p, (f"Reliability diagram of {r.name}, {_SOURCE_NAME[src]} "
                                   "confidence, per group (numbers: samples per bin).")))
        p = out_dir / f"confidence_hist_{src}.png"
        if plot_confidence_histogram(with_samples, src, p, n_bins):
            figures.append((p, (f"Distribution of {_SOURCE_NAME[src]} confidences per group "
                               "(Figure 6 style).")))
        p = out_dir / f"accuracy_coverage_{src}.png"
        if plot_accuracy_coverage(with_samples, src, p):
            figures.append((p, f"Accuracy-coverage curves, {_SOURCE_NAME[src]} confidence."))
    written += [p for p, _ in figures]

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
    page += [table_html(t) for _, t in tables]
    page.append("<h2>Figures</h2>")
    for p, caption in figures:
        b64 = base64.b64encode(p.read_bytes()).decode("ascii")
        page.append(f'<figure><img src="data:image/png;base64,{b64}" alt="{html.escape(p.name)}">'
                    f"<figcaption>{html.escape(caption)} <code>{html.escape(p.name)}</code>"
                    "</figcaption></figure>")
    page.append("</body></html>")
    html_path = out_dir / "summary.html"
    html_path.write_text("\n".join(page), encoding="utf-8")
    written.append(html_path)
    return written


__all__ = [
    "Run",
    "Table",
    "confidence_table",
    "evolution_table",
    "load_run",
    "plot_accuracy_coverage",
    "plot_confidence_histogram",
    "plot_reliability",
    "prediction_table",
    "table_latex",
    "table_markdown",
    "write_report",
    "write_table_csv",
]
