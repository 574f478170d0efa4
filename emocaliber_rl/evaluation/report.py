"""Score JSONs of one or many runs -> tables in the paper's layout, plots, and ``summary.html``.

Tables (each written as ``.md``, ``.csv`` and ``.tex``; values in percent with two decimals, as in
the paper; ``-`` = undefined or not available, e.g. AUC of a group whose answers are all right):

* ``prediction_id_ver`` / ``prediction_id_vsa`` / ``prediction_ood_ver`` -- Tables 2-4: per-task
  Acc, macro-F1 and weighted-F1 of each run, with the group average (mean over tasks). The
  paper's F1 columns are weighted-F1 (they equal the release's ``f1_score(average='weighted')``);
  compare those with the paper.
* ``confidence`` -- Table 5: ECE, Brier, AUC per group, one row per run and confidence source,
  with the within-subtask AUC (mean of the group's per-subtask AUCs) beside the pooled AUC.
* ``evolution`` -- Table 6: Acc, ECE, Brier per group with one confidence source (``--source``).

With several runs the best value of each column is bold (Markdown, LaTeX, HTML).

Plots (PNG, matplotlib Agg), drawn from the per-sample rows of each run:

* ``reliability_<run>_<source>.png`` -- ``<run>`` the run's name where it is lower-case letters,
  digits and ``_``, else that slug plus 6 hex digits of the name's sha1; reliability diagram per group (accuracy per confidence
  bin against the diagonal, bins as the ECE uses them).
* ``confidence_hist_<source>.png`` -- Figure 6 style: share of samples per confidence bin per
  group, runs side by side, 95 % Wilson intervals as error bars.
* ``accuracy_coverage_<source>.png`` -- accuracy of the k most confident answers against coverage
  k/N per group, one line per run, its area (AUACC) in the legend.

This module writes them all (:func:`write_report`, what ``emocaliber eval report`` calls); the
pieces live in :mod:`.report_runs` (loading), :mod:`.report_tables`, :mod:`.report_plots` and
:mod:`.report_page`, and are re-exported here.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

from emocaliber_rl.evaluation.report_page import summary_html
from emocaliber_rl.evaluation.report_plots import (
    plot_accuracy_coverage,
    plot_confidence_histogram,
    plot_reliability,
    reference_label,
)
from emocaliber_rl.evaluation.report_runs import Run, load_run, unique_names
from emocaliber_rl.evaluation.report_tables import (
    PAPER_GROUP_ORDER,
    PAPER_TASK_ORDER,
    SOURCE_NAME,
    Table,
    confidence_table,
    evolution_table,
    prediction_table,
    sources,
    table_latex,
    table_markdown,
    write_table_csv,
)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "run"


def run_file_stem(name: str) -> str:
    """A file-name part for a run name, distinct for distinct names: the slug, plus 6 hex digits
    of the name's sha1 where the slug lost something ("Ours v1" and "Ours-v1" both slug to
    ``ours_v1``, two CJK names to ``run``), so no run's figure overwrites another's."""
    slug = _slug(name)
    if slug == name:
        return slug
    return f"{slug}_{hashlib.sha1(name.encode('utf-8')).hexdigest()[:6]}"


def write_report(
    run_paths: list[str | Path], out: str | Path, *, names: list[str] | None = None,
    source: str = "verb", reference: str | None = "oracle",
) -> list[Path]:
    """Load runs, write every table (md/csv/tex), plot, and ``summary.html``; returns the paths.

    ``reference``: the name of a run (by default ``oracle``, the known-answer world's Bayes
    posterior) drawn into every other run's reliability diagram and the histograms as the best
    achievable; ignored when no run has that name. Tables keep it as one more row."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display

    if names is not None and len(names) != len(run_paths):
        raise ValueError(f"{len(names)} names for {len(run_paths)} runs")
    runs = [load_run(p, names[i] if names else None) for i, p in enumerate(run_paths)]
    unique_names(runs)
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
    ref = next((r for r in with_samples if reference is not None and r.name == reference), None)
    ref_note = (f" Dashed, black: {reference_label(ref)}, the reference." if ref is not None else "")
    for src in sources(with_samples):
        for r in with_samples:
            p = out_dir / f"reliability_{run_file_stem(r.name)}_{src}.png"
            if plot_reliability(r, src, p, n_bins, reference=ref):
                figures.append((p, (f"Reliability diagram of {r.name}, {SOURCE_NAME[src]} "
                                   "confidence, per group (numbers: samples per bin)." + ref_note)))
        p = out_dir / f"confidence_hist_{src}.png"
        if plot_confidence_histogram(with_samples, src, p, n_bins, reference=ref):
            figures.append((p, (f"Distribution of {SOURCE_NAME[src]} confidences per group "
                               "(Figure 6 style)." + ref_note)))
        p = out_dir / f"accuracy_coverage_{src}.png"
        if plot_accuracy_coverage(with_samples, src, p, reference=ref):
            figures.append((p, f"Accuracy-coverage curves, {SOURCE_NAME[src]} confidence."))
    written += [p for p, _ in figures]

    html_path = out_dir / "summary.html"
    html_path.write_text(summary_html(runs, [t for _, t in tables], figures, ref), encoding="utf-8")
    written.append(html_path)
    return written


__all__ = [
    "PAPER_GROUP_ORDER",
    "PAPER_TASK_ORDER",
    "Run",
    "Table",
    "confidence_table",
    "evolution_table",
    "load_run",
    "plot_accuracy_coverage",
    "plot_confidence_histogram",
    "plot_reliability",
    "prediction_table",
    "reference_label",
    "table_latex",
    "table_markdown",
    "write_report",
    "write_table_csv",
]
