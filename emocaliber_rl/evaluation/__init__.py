"""Evaluation: metrics (pure functions), response parsing, the score JSON, report tables and plots.

Modules, one job each:

* :mod:`.metrics` -- accuracy, macro/weighted F1, ECE (ours and the release's binning), Brier, ROC-AUC (pooled and
  within-subtask), accuracy-coverage (numpy).
* :mod:`.parsing` -- prediction and confidence extraction from one response (``strict`` /
  ``official`` rules).
* :mod:`.scoring` -- prediction rows -> the score JSON (``emocaliber eval score``).
* :mod:`.report` -- ``emocaliber eval report``: every table, plot and ``summary.html`` for one or
  many runs, from :mod:`.report_runs` (loading a run), :mod:`.report_tables` (Markdown, CSV,
  LaTeX, HTML), :mod:`.report_plots` and :mod:`.report_page`.
* the ``eval`` command and its hook for more subcommands: :mod:`emocaliber_rl.cli.evaluate`.

Importing this package imports numpy only; matplotlib loads when a report is drawn.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "accuracy",
    "accuracy_coverage_curve",
    "area_under_accuracy_coverage",
    "brier_score",
    "calibration_bins",
    "confidence_bin_index",
    "expected_calibration_error",
    "expected_calibration_error_official",
    "f1_per_class",
    "macro_f1",
    "mean_confidence",
    "roc_auc",
    "weighted_f1",
    "within_group_auc",
]


def __getattr__(name: str) -> Any:
    # lazy, so that `emocaliber --help` (which imports this package) does not pay for numpy
    if name in __all__:
        from emocaliber_rl.evaluation import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
