"""`eval report` draws the reference run (the known-answer world's oracle) into the other runs'
reliability diagrams and into the confidence histograms.

Expected per-bin numbers are worked out by hand from the rows written here (ten FI-2 answers):
the oracle states 0.95 on four answers, all right, and 0.65 on six, four of them right; so its
reliability points are (0.65, 4/6) and (0.95, 1.0), its ECE 0.6 * |4/6 - 0.65| + 0.4 * |1.0 - 0.95|
= 0.01 + 0.02 = 3.00 %, and its histogram shares 0.6 in bin [0.6, 0.7) and 0.4 in [0.9, 1.0].
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest
from matplotlib.container import BarContainer

matplotlib.use("Agg")

from emocaliber_rl.evaluation.report import load_run, write_report
from emocaliber_rl.evaluation.report_plots import (
    confidence_histogram_figure,
    reliability_figure,
)
from emocaliber_rl.evaluation.scoring import score_file

LABEL = "oracle (Bayes posterior)"


def _row(label: str, pred: str, conf: float) -> dict:
    return {"subtask": "FI-2", "label": label, "candidates": ["positive", "negative"],
            "response": f"<answer>{pred}</answer><confidence>{conf:.2f}</confidence>"}


def _run_dir(base: Path, name: str, rows: list[dict]) -> Path:
    d = base / name
    d.mkdir()
    pred = d / "predictions.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    scores, _ = score_file(pred)
    (d / "scores.json").write_text(json.dumps(scores), encoding="utf-8")
    return d


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    oracle = ([_row("positive", "positive", 0.95)] * 4 + [_row("negative", "negative", 0.65)] * 4
              + [_row("positive", "negative", 0.65)] * 2)
    model = [_row("positive", "positive", 0.35)] * 3 + [_row("negative", "positive", 0.35)] * 7
    return _run_dir(tmp_path, "oracle", oracle), _run_dir(tmp_path, "model", model)


def _lines(fig, label: str):
    return [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label().startswith(label)]


def test_reliability_diagram_carries_the_oracle_bins(runs: tuple[Path, Path]) -> None:
    oracle, model = load_run(runs[0]), load_run(runs[1])
    fig = reliability_figure(model, "verb", 10, reference=oracle)
    (line,) = _lines(fig, LABEL)
    assert line.get_label() == f"{LABEL}, ECE 3.00"
    assert line.get_linestyle() == "--" and line.get_markerfacecolor() == "none"
    assert list(line.get_xdata()) == pytest.approx([0.65, 0.95])
    assert list(line.get_ydata()) == pytest.approx([4 / 6, 1.0])
    # the run's own bars are still the model's: one bin, [0.3, 0.4), 3 of 10 right
    bars = fig.axes[0].containers[0]
    assert [p.get_height() for p in bars] == pytest.approx([0.3])
    # no reference, no such line; the oracle's own diagram does not draw itself twice
    assert not _lines(reliability_figure(model, "verb", 10), LABEL)
    assert not _lines(reliability_figure(oracle, "verb", 10, reference=oracle), LABEL)


def test_histogram_draws_the_oracle_as_an_outline(runs: tuple[Path, Path]) -> None:
    oracle, model = load_run(runs[0]), load_run(runs[1])
    fig = confidence_histogram_figure([oracle, model], "verb", 10, reference=oracle)
    (ax,) = fig.axes
    by_label = {c.get_label(): c for c in ax.containers if isinstance(c, BarContainer)}
    assert set(by_label) == {"model", LABEL}  # the oracle is an outline, not one more bar series
    ref = by_label[LABEL]
    assert [p.get_height() for p in ref] == pytest.approx([0, 0, 0, 0, 0, 0, 0.6, 0, 0, 0.4])
    assert all(not p.get_fill() and p.get_linestyle() == "--" for p in ref)
    assert [p.get_height() for p in by_label["model"]] == pytest.approx([0, 0, 0, 1.0, 0, 0, 0, 0, 0, 0])
    # without a reference the oracle is a bar series like any run
    plain = confidence_histogram_figure([oracle, model], "verb", 10)
    assert {c.get_label() for c in plain.axes[0].containers if isinstance(c, BarContainer)} == {"oracle", "model"}


def test_write_report_takes_the_run_named_oracle_as_reference(runs: tuple[Path, Path], tmp_path: Path) -> None:
    write_report(list(runs), tmp_path / "rep")
    page = (tmp_path / "rep" / "summary.html").read_text(encoding="utf-8")
    assert f"Dashed, black: {LABEL}, the reference." in page
    assert (tmp_path / "rep" / "reliability_model_verb.png").stat().st_size > 0
    # the tables keep it as a row
    assert "| oracle |" in (tmp_path / "rep" / "evolution_verb.md").read_text(encoding="utf-8")
    # the page says what its columns mean, with each metric's direction
    for term in ("<dt>Verb</dt>", "<dt>Ans</dt>", "<dt>Avg</dt>", "<dt>Acc ↑</dt>", "<dt>Macro-F1 ↑</dt>",
                 "<dt>Weighted-F1 ↑</dt>", "<dt>ECE ↓</dt>", "<dt>Brier ↓</dt>", "<dt>AUC ↑</dt>",
                 "<dt>AUC within ↑</dt>",
                 "first decisive token", "10 equal-width bins", "Bayes posterior: its argmax"):
        assert term in page, term
    # and prints each table once
    titles = ["Emotion prediction on ID VSA tasks", "Confidence estimation", "Runs side by side (Verb confidence)"]
    assert [page.count(f"<h3>{t}</h3>") for t in titles] == [1, 1, 1]
    assert page.count("<h3>") == 3
    write_report(list(runs), tmp_path / "plain", reference=None)
    assert "the reference." not in (tmp_path / "plain" / "summary.html").read_text(encoding="utf-8")
