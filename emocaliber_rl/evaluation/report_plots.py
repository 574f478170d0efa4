"""Report plots (PNG, matplotlib, drawn by the caller under the Agg backend) from the per-sample rows of each run.

A *reference* run (``write_report``'s ``reference``, by default the run named ``oracle``: the
known-answer world's Bayes posterior) is drawn into every other run's reliability diagram (its
per-bin accuracy at its per-bin mean confidence, dashed, hollow markers) and as a dashed outline in
the confidence histograms, so each model is seen against the best any model can do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emocaliber_rl.evaluation import metrics
from emocaliber_rl.evaluation.report_runs import Run
from emocaliber_rl.evaluation.report_tables import PAPER_GROUP_ORDER, SOURCE_NAME
from emocaliber_rl.evaluation.scoring import apply_missing_conf

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# black: matplotlib's colour cycle, which the other runs take, never uses it
REFERENCE_STYLE: dict[str, Any] = {"color": "black", "linestyle": "--", "linewidth": 1.3}


def reference_label(run: Run) -> str:
    """Legend entry of the reference run: the oracle is the Bayes posterior, anything else is named."""
    return "oracle (Bayes posterior)" if run.name == "oracle" else f"{run.name} (reference)"


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


def _save(fig: Figure | None, path: Path) -> bool:
    import matplotlib.pyplot as plt

    if fig is None:
        return False
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_reliability(run: Run, source: str, path: Path, n_bins: int = 10,
                     reference: Run | None = None) -> bool:
    """Reliability diagram per group (with ``reference`` drawn in); False when the run has no
    such confidences."""
    return _save(reliability_figure(run, source, n_bins, reference), path)


def reliability_figure(run: Run, source: str, n_bins: int = 10,
                       reference: Run | None = None) -> Figure | None:
    """The reliability diagram's figure, or None when the run has no ``source`` confidences."""
    import matplotlib.pyplot as plt

    groups = [g for g in _groups_with_samples([run]) if _group_conf(run, g, source) is not None]
    data = {g: _group_conf(run, g, source) for g in groups}
    groups = [g for g in groups if data[g] is not None and data[g][0].size > 0]
    if not groups:
        return None
    if reference is run:
        reference = None
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
        # grey and dotted, so that the reference's dashed black line stands apart from it
        ax.plot([0, 1], [0, 1], color="0.5", linestyle=":", linewidth=1.2, label="perfect calibration")
        ref = _group_conf(reference, g, source) if reference is not None else None
        if ref is not None and ref[0].size:
            # where the reference's bins lie: for the Bayes posterior on the diagonal, up to noise
            rb = metrics.calibration_bins(ref[0], ref[1], n_bins)
            rok = rb["count"] > 0
            ref_ece = metrics.expected_calibration_error(ref[0], ref[1], n_bins)
            ax.plot(rb["mean_conf"][rok], rb["accuracy"][rok], marker="o", markersize=5,
                    markerfacecolor="none", clip_on=False, **REFERENCE_STYLE,
                    label=f"{reference_label(reference)}, ECE {ref_ece * 100:.2f}")
        ece = metrics.expected_calibration_error(conf, corr, n_bins)
        ax.set_title(f"{g}  (ECE {ece * 100:.2f}, n={conf.size})", fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel(f"confidence ({SOURCE_NAME[source]})")
        ax.set_ylabel("accuracy")
        for x, c in zip(centres[ok], b["count"][ok]):
            ax.text(x, 0.01, str(int(c)), ha="center", va="bottom", fontsize=6, rotation=90)
    axes[0][0].legend(loc="upper left", fontsize=7)
    fig.suptitle(f"Reliability: {run.name}", fontsize=11)
    fig.tight_layout()
    return fig


def _conf_series(runs: list[Run], source: str) -> tuple[list[str], dict[tuple[str, str], Any]]:
    """Per (run, group): confidences and correctness of ``source``; and the groups in which at
    least one run has such confidences (the panels worth drawing)."""
    groups = _groups_with_samples(runs)
    series = {(r.name, g): _group_conf(r, g, source) for r in runs for g in groups}
    groups = [g for g in groups if any(series[(r.name, g)] is not None
                                       and series[(r.name, g)][0].size for r in runs)]
    return groups, series


def plot_confidence_histogram(runs: list[Run], source: str, path: Path, n_bins: int = 10,
                              reference: Run | None = None) -> bool:
    """Figure 6 style: share of samples per confidence bin, per group, runs side by side and
    ``reference`` (one of ``runs`` or not) as a dashed outline."""
    return _save(confidence_histogram_figure(runs, source, n_bins, reference), path)


def _bin_shares(conf: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(metrics.confidence_bin_index(conf, n_bins), minlength=n_bins)
    return counts, counts / int(conf.size)


def confidence_histogram_figure(runs: list[Run], source: str, n_bins: int = 10,
                                reference: Run | None = None) -> Figure | None:
    """The confidence histogram's figure, or None when no run has ``source`` confidences."""
    import matplotlib.pyplot as plt

    everyone = runs if reference is None or reference in runs else [*runs, reference]
    groups, series = _conf_series(everyone, source)
    if not groups:
        return None
    bar_runs = [r for r in runs if r is not reference]
    fig, axes = plt.subplots(1, len(groups), figsize=(4.8 * len(groups), 3.8), squeeze=False)
    width = 0.8 / max(1, len(bar_runs))
    x = np.arange(n_bins)
    for ax, g in zip(axes[0], groups):
        for j, r in enumerate(bar_runs):
            d = series[(r.name, g)]
            if d is None or d[0].size == 0:
                continue
            counts, share = _bin_shares(d[0], n_bins)
            n = int(d[0].size)
            lo, hi = _wilson(counts.astype(float), n)
            # at share 0 or 1 the interval's end equals the share up to rounding (-1e-17 apart),
            # and matplotlib refuses a negative error bar
            yerr = np.maximum(np.vstack([share - lo, hi - share]), 0.0)
            ax.bar(x - 0.4 + width * (j + 0.5), share, width=width, label=r.name,
                   yerr=yerr, capsize=2, error_kw={"linewidth": 0.8})
        ref = series.get((reference.name, g)) if reference is not None else None
        if ref is not None and ref[0].size:
            # an outline over the whole bin, drawn last so that no bar hides it
            _, ref_share = _bin_shares(ref[0], n_bins)
            ax.bar(x, ref_share, width=0.8, fill=False, edgecolor=REFERENCE_STYLE["color"],
                   linestyle="--", linewidth=1.3, label=reference_label(reference), zorder=3)
        ax.set_xticks(x, [f"{i / n_bins:.1f}" for i in range(n_bins)], fontsize=7)
        ax.set_xlabel(f"confidence bin start ({SOURCE_NAME[source]})")
        ax.set_ylabel("share of samples")
        ax.set_title(g, fontsize=10)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Distribution of confidences (error bars: 95% Wilson intervals)", fontsize=11)
    fig.tight_layout()
    return fig


def plot_accuracy_coverage(runs: list[Run], source: str, path: Path,
                           reference: Run | None = None) -> bool:
    """Accuracy of the k most confident answers vs coverage k/N, per group, a line per run (the
    ``reference`` among them dashed)."""
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
            if r is reference:
                line = ax.plot(cov, acc, **REFERENCE_STYLE,
                               label=f"{reference_label(r)} (AUACC {area * 100:.1f})")
            else:
                line = ax.plot(cov, acc, linewidth=1.4, label=f"{r.name} (AUACC {area * 100:.1f})")
            ax.axhline(float(np.mean(d[1])), color=line[0].get_color(), linestyle=":",
                       linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("coverage (answer only the most confident)")
        ax.set_ylabel("accuracy")
        ax.set_title(g, fontsize=10)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"Accuracy-coverage ({SOURCE_NAME[source]} confidence; dotted: accuracy at full "
                 "coverage)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
