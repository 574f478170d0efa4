"""Classification and calibration metrics as pure functions over numpy arrays.

Functional style (like ``sklearn.metrics`` or ``torchmetrics.functional``): each function takes
arrays, returns a number or arrays, and documents its formula. No I/O, no global state.

Conventions shared by every function here:

* ``y_true`` / ``y_pred`` are 1-D arrays of class identifiers (strings or integers). A prediction
  that is not in ``labels`` (an unparsed answer, e.g. ``None``, ``-1`` or ``"unknown"``) is simply
  wrong: it is a false negative of its true class and never a class of its own, so it cannot add
  an F1 = 0 column to a macro average.
* ``confidence`` is a 1-D float array in [0, 1]; ``correct`` a 1-D array of 0/1 (or bools). Values
  outside [0, 1] or NaN raise ``ValueError``: what to do with a missing confidence is a decision for
  the caller (see ``scoring.py``'s ``missing_conf``), never made silently here.
* A metric that is undefined for the input (ROC-AUC of a single-class sample, anything of an empty
  sample) returns ``float('nan')``; callers report it as undefined (``None`` in JSON).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

# Tolerance used to snap a confidence onto a bin edge. Verbalised confidences carry at most a few
# decimals, so anything within 1e-9 of an edge *is* that edge written with float noise
# (0.1 * 7 == 0.7000000000000001, 0.7 * 10 == 7.000000000000001 on some paths).
_EDGE_DECIMALS = 9


def _as_1d(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _check_conf_correct(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    conf = _as_1d(confidence, "confidence").astype(np.float64)
    corr = _as_1d(correct, "correct").astype(np.float64)
    if conf.shape != corr.shape:
        raise ValueError(f"confidence and correct differ in length: {conf.size} vs {corr.size}")
    if conf.size and (not np.all(np.isfinite(conf)) or conf.min() < 0.0 or conf.max() > 1.0):
        raise ValueError("confidence values must be finite and in [0, 1]")
    if corr.size and not np.all((corr == 0.0) | (corr == 1.0)):
        raise ValueError("correct must contain only 0/1 (or booleans)")
    return conf, corr


def _encode(y_true: Any, y_pred: Any, labels: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, int]:
    """Map values to indices into ``labels``; anything not in ``labels`` becomes -1."""
    t = _as_1d(y_true, "y_true")
    p = _as_1d(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    index = {label: i for i, label in enumerate(labels)}
    if len(index) != len(labels):
        raise ValueError("labels contain duplicates")
    ti = np.fromiter((index.get(v, -1) for v in t.tolist()), dtype=np.int64, count=t.size)
    pi = np.fromiter((index.get(v, -1) for v in p.tolist()), dtype=np.int64, count=p.size)
    if np.any(ti < 0):
        bad = t.tolist()[int(np.argmax(ti < 0))]
        raise ValueError(f"y_true contains {bad!r}, which is not one of labels")
    return ti, pi, len(labels)


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of exact matches: ``acc = (1/N) * sum_i [y_pred_i == y_true_i]``.

    An unparsed prediction (any value that is not a true label) counts as wrong. ``nan`` if N = 0.
    """
    t = _as_1d(y_true, "y_true")
    p = _as_1d(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    if t.size == 0:
        return float("nan")
    return float(np.mean(t == p))


def f1_per_class(
    y_true: Any, y_pred: Any, labels: Sequence[Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class F1 and support over exactly ``labels``.

    For class k: ``F1_k = 2 TP_k / (2 TP_k + FP_k + FN_k)``, and ``nan`` when the denominator is 0
    (a candidate that is neither a true label nor predicted: its F1 is undefined, as scikit-learn's
    ``zero_division=np.nan``); ``support_k = #{i : y_true_i = k}``. A prediction outside
    ``labels`` adds a FN to its true class and a FP to no class.

    Returns:
        ``(f1, support)``, two arrays of length ``len(labels)`` in ``labels`` order.
    """
    ti, pi, k = _encode(y_true, y_pred, labels)
    support = np.bincount(ti, minlength=k)
    predicted = np.bincount(pi[pi >= 0], minlength=k)
    tp = np.bincount(ti[ti == pi], minlength=k)
    # 2TP + FP + FN == (TP + FP) + (TP + FN) == predicted + support
    denom = predicted + support
    f1 = np.divide(2.0 * tp, denom, out=np.full(k, np.nan), where=denom > 0)
    return f1, support


def macro_f1(y_true: Any, y_pred: Any, labels: Sequence[Any]) -> float:
    """Macro-F1 over the task's candidate labels: the mean of ``F1_k`` over the candidates k.

    Equals ``sklearn.metrics.f1_score(y_true, y_pred, labels=labels, average='macro',
    zero_division=np.nan)``. Passing the candidates as ``labels`` is what keeps an unparsed answer
    from becoming an extra class with F1 = 0 (the official script infers labels from the data).
    A candidate that is neither a true label nor predicted has an undefined F1 and is left out of
    the mean, so a small test set is not penalised for the classes it lacks (with 1,000 samples per
    task every candidate occurs). The paper reports macro-F1 (Sec. 4.3). ``nan`` if N = 0.
    """
    if _as_1d(y_true, "y_true").size == 0:
        return float("nan")
    f1, _ = f1_per_class(y_true, y_pred, labels)
    # never all-nan for N > 0: every true label's class has a defined F1
    return float(np.nanmean(f1))


def weighted_f1(y_true: Any, y_pred: Any, labels: Sequence[Any]) -> float:
    """Support-weighted F1: ``sum_k support_k * F1_k / sum_k support_k``.

    What the official script computes (``average='weighted'``); reported beside macro-F1 only
    to compare with its numbers. Classes with zero support weigh nothing, so it equals sklearn's
    with or without ``labels``. ``nan`` if N = 0.
    """
    if _as_1d(y_true, "y_true").size == 0:
        return float("nan")
    f1, support = f1_per_class(y_true, y_pred, labels)
    # an undefined F1 has support 0, so it weighs nothing
    return float(np.dot(np.nan_to_num(f1), support) / support.sum())


def confidence_bin_index(confidence: Any, n_bins: int = 10) -> np.ndarray:
    """Bin of each confidence among ``n_bins`` equal-width bins on [0, 1].

    ``b(c) = min(floor(round(c * n_bins, 9)), n_bins - 1)``: bins are left-closed
    ``[j/n, (j+1)/n)`` except the last, which is closed ``[1 - 1/n, 1]`` so that c = 1.0 is counted
    (the official script drops it). Rounding to 9 decimals first snaps float noise onto the edge,
    so a stated 0.7 *and* ``0.1 * 7 == 0.7000000000000001`` both land in [0.7, 0.8), while
    ``np.linspace`` edges (0.7000000000000001) would put a stated 0.7 in [0.6, 0.7).
    """
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    conf = _as_1d(confidence, "confidence").astype(np.float64)
    idx = np.floor(np.round(conf * n_bins, _EDGE_DECIMALS)).astype(np.int64)
    return np.clip(idx, 0, n_bins - 1)


def calibration_bins(
    confidence: Any, correct: Any, n_bins: int = 10
) -> dict[str, np.ndarray]:
    """Per-bin statistics for a reliability diagram (binning as :func:`confidence_bin_index`).

    Returns a dict of arrays of length ``n_bins``: ``count`` (samples in bin), ``mean_conf``
    (average confidence in bin), ``accuracy`` (fraction correct in bin), both ``nan`` for empty
    bins, and ``edges`` (length ``n_bins + 1``).
    """
    conf, corr = _check_conf_correct(confidence, correct)
    idx = confidence_bin_index(conf, n_bins)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    corr_sum = np.bincount(idx, weights=corr, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / count, np.nan)
        acc = np.where(count > 0, corr_sum / count, np.nan)
    return {
        "count": count.astype(np.int64),
        "mean_conf": mean_conf,
        "accuracy": acc,
        "edges": np.linspace(0.0, 1.0, n_bins + 1),
    }


def expected_calibration_error(confidence: Any, correct: Any, n_bins: int = 10) -> float:
    """ECE with ``n_bins`` equal-width bins on [0, 1] (paper Sec. 4.3: 10 bins of width 0.1).

    ``ECE = sum_b (|B_b| / N) * |acc(B_b) - conf(B_b)|`` where ``acc`` and ``conf`` are the mean
    correctness and mean confidence of the samples in bin b, assigned by
    :func:`confidence_bin_index` (last bin closed, float-robust edges). ``nan`` if N = 0.
    """
    conf, corr = _check_conf_correct(confidence, correct)
    if conf.size == 0:
        return float("nan")
    idx = confidence_bin_index(conf, n_bins)
    # sum_b |sum_{i in b} (c_i - y_i)| / N is the same quantity without per-bin means
    gap = np.bincount(idx, weights=conf - corr, minlength=n_bins)
    return float(np.abs(gap).sum() / conf.size)


def expected_calibration_error_official(confidence: Any, correct: Any, n_bins: int = 10) -> float:
    """ECE exactly as the official release computes it (``calculate_ece`` in
    ``inference/evaluate_multi_task_conf_from_merged.py`` of github wdqqdw/EmoCaliber, lines
    417-442): edges ``np.linspace(0, 1, n_bins + 1)``, sample i in bin b iff
    ``lo_b <= c_i < hi_b``, ``ECE = sum_b (|B_b| / N) |acc(B_b) - conf(B_b)|`` with N all samples.

    So c = 1.0 lies in no bin yet counts in N, and the float edges (0.30000000000000004,
    0.6000000000000001, 0.7000000000000001) put a stated 0.3, 0.6 or 0.7 in the bin below.
    Only for reproducing the release's numbers (``eval score --parse official``); the project's
    ECE is :func:`expected_calibration_error`. ``nan`` if N = 0.
    """
    conf, corr = _check_conf_correct(confidence, correct)
    if conf.size == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        in_bin = (conf >= lo) & (conf < hi)
        if in_bin.any():
            ece += abs(corr[in_bin].mean() - conf[in_bin].mean()) * in_bin.mean()
    return float(ece)


def brier_score(confidence: Any, correct: Any) -> float:
    """Brier score of the confidence against correctness: ``(1/N) * sum_i (c_i - y_i)^2``.

    Equals ``sklearn.metrics.brier_score_loss(correct, confidence)``. ``nan`` if N = 0.
    """
    conf, corr = _check_conf_correct(confidence, correct)
    if conf.size == 0:
        return float("nan")
    return float(np.mean((conf - corr) ** 2))


def roc_auc(confidence: Any, correct: Any) -> float:
    """ROC-AUC of the confidence as a score for "the answer is correct".

    ``AUC = (sum_{i: y_i=1} r_i - n1 (n1 + 1) / 2) / (n1 * n0)`` with ``r_i`` the 1-based rank of
    ``c_i`` among all confidences, ties given their average rank (the Mann-Whitney U statistic, so a
    tied correct/incorrect pair counts 1/2, as ``sklearn.metrics.roc_auc_score``).

    Returns ``nan`` when all samples are correct or all wrong (n1 = 0 or n0 = 0): AUC is undefined
    there, and a group with a single class must be reported as such, not crash the evaluation.
    """
    conf, corr = _check_conf_correct(confidence, correct)
    n1 = float(corr.sum())
    n0 = float(corr.size - n1)
    if n1 == 0 or n0 == 0:
        return float("nan")
    _, inverse, counts = np.unique(conf, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    avg_rank = upper - (counts - 1) / 2.0
    ranks = avg_rank[inverse]
    u = ranks[corr == 1.0].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


def within_group_auc(confidence: Any, correct: Any, groups: Any) -> tuple[float, int]:
    """Mean of the per-group ROC-AUCs: ``AUC_within = (1/G') * sum_g AUC(c[g], y[g])``.

    ``groups`` gives each sample's group (e.g. its subtask); ``AUC`` is :func:`roc_auc`, and the
    mean runs over the G' groups where it is defined (both classes present). A pooled AUC also
    rewards a confidence that only knows which group a sample is in (high on an easy subtask, low
    on a hard one); within each group that confidence is constant and scores 0.5, so this measures
    what the confidence knows about the individual sample.

    Returns:
        ``(auc_within, n_used)``: the mean (``nan`` when no group has a defined AUC) and G', the
        number of groups averaged.
    """
    conf, corr = _check_conf_correct(confidence, correct)
    grp = _as_1d(groups, "groups")
    if grp.shape != conf.shape:
        raise ValueError(f"groups and confidence differ in length: {grp.size} vs {conf.size}")
    aucs = [roc_auc(conf[grp == g], corr[grp == g]) for g in dict.fromkeys(grp.tolist())]
    defined = [a for a in aucs if not np.isnan(a)]
    return (float(np.mean(defined)) if defined else float("nan")), len(defined)


def mean_confidence(confidence: Any) -> float:
    """Average confidence ``(1/N) * sum_i c_i`` (over-confidence shows as mean_conf > accuracy)."""
    conf = _as_1d(confidence, "confidence").astype(np.float64)
    if conf.size == 0:
        return float("nan")
    return float(conf.mean())


def accuracy_coverage_curve(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    """Selective prediction: accuracy when answering only the k most confident samples.

    For k = 1..N: ``coverage_k = k / N`` and ``accuracy_k`` = fraction correct among the k samples
    with the highest confidence. Samples with tied confidence cannot be ordered, so within a block
    of ties ``accuracy_k`` is the expectation over every order of the block:
    ``(C_before + (k - n_before) * acc_block) / k``. The curve is thus a deterministic function of
    (confidence, correct), independent of the input order. At k = N it equals the accuracy.

    Returns:
        ``(coverage, accuracy)``, two arrays of length N (empty for N = 0).
    """
    conf, corr = _check_conf_correct(confidence, correct)
    n = conf.size
    if n == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-conf, kind="stable")
    c_sorted = conf[order]
    y_sorted = corr[order]
    # blocks of equal confidence, in descending order
    starts = np.flatnonzero(np.r_[True, c_sorted[1:] != c_sorted[:-1]])
    sizes = np.diff(np.r_[starts, n])
    block_correct = np.add.reduceat(y_sorted, starts)
    block_acc = block_correct / sizes
    correct_before = np.r_[0.0, np.cumsum(block_correct)[:-1]]
    block_of = np.repeat(np.arange(starts.size), sizes)
    k = np.arange(1, n + 1, dtype=np.float64)
    expected_correct = correct_before[block_of] + (k - starts[block_of]) * block_acc[block_of]
    return k / n, expected_correct / k


def area_under_accuracy_coverage(confidence: Any, correct: Any) -> float:
    """Area under the accuracy-coverage curve: ``AUACC = (1/N) * sum_{k=1..N} accuracy_k``.

    ``accuracy_k`` as in :func:`accuracy_coverage_curve` (ties averaged). This is the right Riemann
    sum over coverage steps of 1/N; ``1 - AUACC`` is the AURC (area under the risk-coverage curve,
    Geifman et al., 2019). A perfect ranking of right above wrong answers maximises it; with no
    ranking ability it is close to the plain accuracy. ``nan`` if N = 0.
    """
    _, acc = accuracy_coverage_curve(confidence, correct)
    if acc.size == 0:
        return float("nan")
    return float(acc.mean())
