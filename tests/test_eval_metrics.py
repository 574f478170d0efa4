"""Metrics against scikit-learn on random data, and ECE / AUC / coverage against hand computations."""

from __future__ import annotations

import math
from decimal import ROUND_FLOOR, Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, roc_auc_score

from emocaliber_rl.evaluation import metrics as m

LABELS = ["amusement", "anger", "awe", "fear", "sadness"]


def _random_case(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    truth = rng.choice(LABELS, n)
    # "unknown" stands for an unparsed answer, as the official script writes it
    pred = rng.choice(LABELS + ["unknown"], n)
    return truth, pred


@pytest.mark.parametrize("seed", range(25))
def test_classification_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth, pred = _random_case(rng, int(rng.integers(1, 80)))
    assert m.accuracy(truth, pred) == pytest.approx(accuracy_score(truth, pred))
    assert m.macro_f1(truth, pred, LABELS) == pytest.approx(
        f1_score(truth, pred, labels=LABELS, average="macro", zero_division=np.nan))
    # the official script's weighted F1 infers labels (incl. 'unknown'); zero support weighs 0
    assert m.weighted_f1(truth, pred, LABELS) == pytest.approx(
        f1_score(truth, pred, average="weighted", zero_division=0))


def test_unparsed_prediction_is_a_false_negative_not_a_class() -> None:
    truth = ["a", "a", "b", "b"]
    pred = ["a", None, "b", "a"]
    # class a: TP 1, FN 1 (the unparsed one), FP 1 -> F1 = 2/4; class b: TP 1, FN 1 -> 2/3
    assert m.macro_f1(truth, pred, ["a", "b"]) == pytest.approx((0.5 + 2 / 3) / 2)
    # what inferring labels from the data gives instead: 'unknown' becomes a third class, F1 = 0
    inferred = f1_score(truth, ["a", "unknown", "b", "a"], average="macro")
    assert inferred == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    assert m.macro_f1(truth, pred, ["a", "b"]) != pytest.approx(inferred)
    assert m.accuracy(truth, pred) == 0.5


@pytest.mark.parametrize("seed", range(25))
def test_brier_and_auc_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 120))
    # two-decimal confidences, as verbalised, so that ties occur
    conf = np.round(rng.random(n), 2)
    correct = rng.integers(0, 2, n)
    correct[0], correct[1] = 0, 1
    assert m.brier_score(conf, correct) == pytest.approx(brier_score_loss(correct, conf))
    assert m.roc_auc(conf, correct) == pytest.approx(roc_auc_score(correct, conf))


def test_auc_undefined_for_single_class_groups() -> None:
    assert math.isnan(m.roc_auc([0.2, 0.9, 0.5], [1, 1, 1]))
    assert math.isnan(m.roc_auc([0.2, 0.9], [0, 0]))
    # the other metrics stay defined on the same input
    assert m.brier_score([0.2, 0.9, 0.5], [1, 1, 1]) == pytest.approx((0.64 + 0.01 + 0.25) / 3)
    assert m.expected_calibration_error([0.2, 0.9, 0.5], [1, 1, 1]) == pytest.approx(
        (0.8 + 0.1 + 0.5) / 3)


def _ece_decimal(conf: list[float], correct: list[int], n_bins: int = 10) -> float:
    """Reference ECE with exact decimal bin edges: bin = floor(Decimal(repr(c)) * n), last closed."""
    bins: dict[int, list[tuple[float, int]]] = {}
    for c, y in zip(conf, correct):
        b = int((Decimal(repr(c)) * n_bins).to_integral_value(rounding=ROUND_FLOOR))
        bins.setdefault(min(b, n_bins - 1), []).append((c, y))
    total = 0.0
    for members in bins.values():
        avg_c = sum(c for c, _ in members) / len(members)
        acc = sum(y for _, y in members) / len(members)
        total += len(members) / len(conf) * abs(acc - avg_c)
    return total


def test_ece_hand_computed_edges() -> None:
    # c = 1.0 is counted (last bin closed): all wrong at 1.0 is maximally miscalibrated
    assert m.expected_calibration_error([1.0, 1.0], [0, 0]) == pytest.approx(1.0)
    # c = 0.0 in the first bin: right answers at confidence 0
    assert m.expected_calibration_error([0.0, 0.0], [1, 1]) == pytest.approx(1.0)
    assert m.expected_calibration_error([0.0, 1.0], [0, 1]) == pytest.approx(0.0)
    # a stated 0.7 and 0.1 * 7 (= 0.7000000000000001) share [0.7, 0.8): |2/3 - 0.7| = 1/30
    c = [0.1 * 7, 0.7, 0.7]
    assert c[0] != 0.7
    assert m.expected_calibration_error(c, [1, 0, 1]) == pytest.approx(1 / 30)
    # 0.65 and 0.7 are in different bins: (|1 - 0.65| + |0 - 0.7|) / 2
    assert m.expected_calibration_error([0.65, 0.7], [1, 0]) == pytest.approx(0.525)


def test_bin_index_float_robust() -> None:
    stated = [i / 10 for i in range(11)]
    products = [0.1 * i for i in range(11)]
    expected = list(range(10)) + [9]
    assert m.confidence_bin_index(stated).tolist() == expected
    assert m.confidence_bin_index(products).tolist() == expected
    # what np.linspace edges with left-closed membership (the official rule) would do to 0.7
    edges = np.linspace(0, 1, 11)
    assert not (edges[7] <= 0.7 < edges[8])
    assert m.confidence_bin_index([0.69999, 0.79999999, 0.99, 1e-12]).tolist() == [6, 7, 9, 0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 1)), min_size=1, max_size=60))
def test_ece_matches_decimal_reference(pairs: list[tuple[int, int]]) -> None:
    conf = [k / 100 for k, _ in pairs]
    correct = [y for _, y in pairs]
    assert m.expected_calibration_error(conf, correct) == pytest.approx(_ece_decimal(conf, correct))
    bins = m.calibration_bins(conf, correct)
    assert int(bins["count"].sum()) == len(conf)


def test_calibration_rejects_out_of_range_and_nan() -> None:
    with pytest.raises(ValueError):
        m.expected_calibration_error([1.2], [1])
    with pytest.raises(ValueError):
        m.brier_score([float("nan")], [1])
    with pytest.raises(ValueError):
        m.roc_auc([0.5, 0.4], [2, 0])


def test_empty_inputs_are_undefined_not_errors() -> None:
    for value in (m.expected_calibration_error([], []), m.brier_score([], []), m.roc_auc([], []),
                  m.mean_confidence([]), m.area_under_accuracy_coverage([], []),
                  m.accuracy([], []), m.macro_f1([], [], LABELS)):
        assert math.isnan(value)


def test_accuracy_coverage_hand_computed() -> None:
    conf = [0.9, 0.8, 0.8, 0.3]
    correct = [1, 0, 1, 0]
    cov, acc = m.accuracy_coverage_curve(conf, correct)
    assert cov.tolist() == [0.25, 0.5, 0.75, 1.0]
    # k = 2 lies inside the tie at 0.8 (one right, one wrong): expected correct 1 + 1/2
    assert acc.tolist() == pytest.approx([1.0, 0.75, 2 / 3, 0.5])
    assert m.area_under_accuracy_coverage(conf, correct) == pytest.approx(
        (1.0 + 0.75 + 2 / 3 + 0.5) / 4)
    # all confidences tied: no ranking, every point is the plain accuracy
    _, flat = m.accuracy_coverage_curve([0.5] * 4, correct)
    assert flat.tolist() == pytest.approx([0.5] * 4)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10), st.integers(0, 1)), min_size=1, max_size=40),
       st.randoms(use_true_random=False))
def test_accuracy_coverage_order_invariant(pairs: list[tuple[int, int]], rnd) -> None:
    conf = np.array([k / 10 for k, _ in pairs])
    correct = np.array([y for _, y in pairs])
    perm = list(range(len(pairs)))
    rnd.shuffle(perm)
    a = m.accuracy_coverage_curve(conf, correct)[1]
    b = m.accuracy_coverage_curve(conf[perm], correct[perm])[1]
    assert a == pytest.approx(b)
    assert a[-1] == pytest.approx(correct.mean())


def test_mean_confidence_and_f1_per_class() -> None:
    assert m.mean_confidence([0.2, 0.4]) == pytest.approx(0.3)
    f1, support = m.f1_per_class(["a", "b", "b"], ["a", "a", "b"], ["a", "b", "c", "d"])
    assert support.tolist() == [1, 2, 0, 0]
    assert f1[:2].tolist() == pytest.approx([2 / 3, 2 / 3])
    assert math.isnan(f1[2]) and math.isnan(f1[3])     # never true, never predicted: undefined
    # ... and left out of the macro mean, while a predicted-but-absent class counts as 0
    assert m.macro_f1(["a", "b", "b"], ["a", "a", "b"], ["a", "b", "c", "d"]) == pytest.approx(2 / 3)
    assert m.macro_f1(["a", "b", "b"], ["a", "c", "b"], ["a", "b", "c", "d"]) == pytest.approx(
        (1.0 + 2 / 3 + 0.0) / 3)
    with pytest.raises(ValueError, match="not one of labels"):
        m.f1_per_class(["z"], ["a"], ["a", "b"])


@pytest.mark.parametrize("seed", range(10))
def test_within_group_auc_is_the_mean_of_sklearn_per_group(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    n = int(rng.integers(20, 120))
    conf = np.round(rng.random(n), 2)
    correct = rng.integers(0, 2, n)
    groups = rng.choice(["a", "b", "c"], n)
    groups[:6] = ["a", "a", "b", "b", "c", "c"]
    correct[:6] = [0, 1, 0, 1, 0, 1]
    # group "d": all right, so its AUC is undefined and it is left out (and not counted)
    conf = np.concatenate([conf, [0.3, 0.9]])
    correct = np.concatenate([correct, [1, 1]])
    groups = np.concatenate([groups, ["d", "d"]])
    expected = [roc_auc_score(correct[groups == g], conf[groups == g]) for g in ("a", "b", "c")]
    auc, n_used = m.within_group_auc(conf, correct, groups)
    assert n_used == 3
    assert auc == pytest.approx(sum(expected) / 3)


def test_within_group_auc_of_a_confidence_that_only_knows_the_group() -> None:
    # constant within each group, higher on the easier group: pooled AUC 0.75, within exactly 0.5
    conf = [0.6, 0.6, 0.6, 0.6, 0.1, 0.1, 0.1, 0.1]
    correct = [1, 1, 1, 0, 1, 0, 0, 0]
    groups = ["easy"] * 4 + ["hard"] * 4
    assert m.roc_auc(conf, correct) == pytest.approx(roc_auc_score(correct, conf)) == pytest.approx(0.75)
    assert m.within_group_auc(conf, correct, groups) == (0.5, 2)


def test_within_group_auc_undefined_and_bad_input() -> None:
    auc, n_used = m.within_group_auc([0.2, 0.9, 0.5], [1, 1, 0], ["a", "a", "b"])
    assert math.isnan(auc) and n_used == 0
    auc, n_used = m.within_group_auc([], [], [])
    assert math.isnan(auc) and n_used == 0
    with pytest.raises(ValueError, match="differ in length"):
        m.within_group_auc([0.2, 0.9], [1, 0], ["a"])
