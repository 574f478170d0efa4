"""The score JSON: input validation errors, missing-confidence policies, group aggregation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emocaliber_rl.evaluation.scoring import (
    PredictionFileError,
    read_predictions,
    read_samples,
    score_file,
    score_samples,
    write_samples,
)
from emocaliber_rl.taxonomy import MIKELS_8, POLARITY_2


def _row(task: str, label: str, answer: str, conf: str | None = "0.9", **extra: object) -> dict:
    cands = list(POLARITY_2) if task.endswith("-2") else list(MIKELS_8)
    tail = f"<confidence>{conf}</confidence>" if conf is not None else ""
    return {"subtask": task, "label": label, "candidates": cands,
            "response": f"<answer>{answer}</answer>{tail}", **extra}


def _write(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n",
                    encoding="utf-8")
    return path


@pytest.mark.parametrize(("bad", "needle"), [
    ("{not json", ":2: invalid JSON"),
    ('["a list"]', ":2: expected a JSON object"),
    ({"label": "fear", "candidates": ["fear"], "response": ""}, ":2: field 'subtask': missing"),
    ({"subtask": "FI-9", "label": "fear", "candidates": ["fear"], "response": ""},
     ":2: field 'subtask': unknown subtask 'FI-9'"),
    ({"subtask": "FI-8", "candidates": ["fear"], "response": ""}, ":2: field 'label': missing"),
    ({"subtask": "FI-8", "label": "joy", "candidates": ["fear"], "response": ""},
     ":2: field 'label': label 'joy' is not a label of subtask FI-8"),
    ({"subtask": "FI-8", "label": "fear", "candidates": "fear", "response": ""},
     ":2: field 'candidates'"),
    ({"subtask": "FI-8", "label": "fear", "candidates": ["fear", "joy"], "response": ""},
     ":2: field 'candidates': label 'joy'"),
    ({"subtask": "FI-8", "label": "awe", "candidates": ["fear", "anger"], "response": ""},
     ":2: field 'label': label 'awe' is not among the row's candidates"),
    ({"subtask": "FI-8", "label": "fear", "candidates": ["fear"]}, ":2: field 'response': missing"),
    ({"subtask": "FI-8", "label": "fear", "candidates": ["fear"], "response": None},
     ":2: field 'response': expected a string"),
    (_row("FI-8", "fear", "fear", conf_ans="high"), ":2: field 'conf_ans': expected a number"),
])
def test_bad_rows_name_file_line_and_field(tmp_path: Path, bad: object, needle: str) -> None:
    path = _write(tmp_path / "pred.jsonl", [_row("FI-8", "fear", "fear"), bad])
    with pytest.raises(PredictionFileError) as exc:
        read_predictions(path)
    assert str(path) in str(exc.value)
    assert needle in str(exc.value)


def test_empty_file_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PredictionFileError, match="no prediction rows"):
        read_predictions(_write(tmp_path / "empty.jsonl", [""]))
    with pytest.raises(PredictionFileError, match="no such file"):
        read_predictions(tmp_path / "absent.jsonl")


def test_misspelled_task_names_and_ground_truth_key(tmp_path: Path) -> None:
    rows = [
        {**_row("UnbiasedEmo-6", "fear", "fear"), "subtask": "UnbaisedEmo-6",
         "candidates": ["anger", "fear", "joy", "love", "sadness", "surprise"]},
        {**_row("Artphoto-8", "sadness", "sad"), "subtask": "ArtPhoto-8"},
    ]
    rows[1]["ground_truth"] = rows[1].pop("label")
    scores = score_file(_write(tmp_path / "p.jsonl", rows))[0]
    assert set(scores["tasks"]) == {"UnbiasedEmo-6", "Artphoto-8"}
    assert scores["tasks"]["Artphoto-8"]["acc"] == 1.0


def _policy_rows() -> list[dict]:
    # FI-2: right at 0.8, wrong without a confidence, right at 1.0
    return [
        _row("FI-2", "positive", "positive", "0.8"),
        _row("FI-2", "negative", "positive", None),
        _row("FI-2", "negative", "negative", "1.0"),
    ]


@pytest.mark.parametrize(("policy", "ece", "brier", "mean_conf", "n_used"), [
    # exclude: {0.8 right, 1.0 right}: bins 8 and 9, |1-0.8|/2 + |1-1|/2
    ("exclude", 0.1, (0.04 + 0.0) / 2, 0.9, 2),
    # zero: the missing one is a wrong answer at 0.0 -> calibrated in its bin
    ("zero", 0.2 / 3, (0.04 + 0.0 + 0.0) / 3, 1.8 / 3, 3),
    # half: wrong at 0.5 -> |0 - 0.5| in bin 5
    ("half", (0.2 + 0.5) / 3, (0.04 + 0.25 + 0.0) / 3, 2.3 / 3, 3),
])
def test_missing_confidence_policies(tmp_path: Path, policy: str, ece: float, brier: float,
                                     mean_conf: float, n_used: int) -> None:
    scores = score_file(_write(tmp_path / "p.jsonl", _policy_rows()), missing_conf=policy)[0]
    cal = scores["groups"]["ID VSA"]["verb"]
    assert cal["ece"] == pytest.approx(ece)
    assert cal["brier"] == pytest.approx(brier)
    assert cal["mean_conf"] == pytest.approx(mean_conf)
    assert cal["n_used"] == n_used
    assert cal["n_missing_conf"] == 1
    assert cal["conf_parsed"] == pytest.approx(2 / 3)
    assert scores["meta"]["missing_conf"] == policy
    # accuracy never depends on the confidence policy
    assert scores["tasks"]["FI-2"]["acc"] == pytest.approx(2 / 3)


def test_single_class_group_auc_is_null_not_a_crash(tmp_path: Path) -> None:
    rows = [_row("FI-2", "positive", "positive", "0.6"), _row("WebEmo-2", "negative", "negative")]
    scores = score_file(_write(tmp_path / "p.jsonl", rows))[0]
    group = scores["groups"]["ID VSA"]
    assert group["verb"]["auc"] is None
    assert group["verb"]["ece"] == pytest.approx((0.4 + 0.1) / 2)
    assert scores["tasks"]["FI-2"]["calibration"]["verb"]["auc"] is None


def test_group_acc_is_mean_over_tasks_and_calibration_pools(tmp_path: Path) -> None:
    rows = [_row("FI-2", "positive", "positive", "0.5")]                       # acc 1 (n=1)
    rows += [_row("WebEmo-2", "positive", "negative", "0.5")] * 3               # acc 0 (n=3)
    rows += [_row("WebEmo-2", "positive", "positive and negative", "0.5")]     # unparsed
    scores = score_file(_write(tmp_path / "p.jsonl", rows))[0]
    group = scores["groups"]["ID VSA"]
    assert group["acc"] == pytest.approx((1.0 + 0.0) / 2)      # not the pooled 1/5
    assert group["n"] == 5
    assert group["tasks"] == ["FI-2", "WebEmo-2"]
    assert group["parsed"] == pytest.approx(4 / 5)
    # pooled ECE: all five in bin 5, accuracy 1/5, confidence 0.5
    assert group["verb"]["ece"] == pytest.approx(0.3)
    assert scores["tasks"]["WebEmo-2"]["n_unparsed"] == 1
    assert scores["tasks"]["WebEmo-2"]["parsed"] == pytest.approx(3 / 4)
    assert scores["average"]["acc"] == pytest.approx(0.5)


def test_sources_and_given_confidences(tmp_path: Path) -> None:
    rows = [_row("FI-8", "fear", "fear", "0.3", conf_verb=0.9, conf_ans=0.6),
            _row("FI-8", "awe", "fear", "0.3", conf_verb=None, conf_ans=2.0)]
    scores, samples = score_file(_write(tmp_path / "p.jsonl", rows))
    cal = scores["groups"]["ID VER"]
    assert set(scores["meta"]["sources"]) == {"verb", "ans"}
    assert "avg" not in cal
    # a given conf_verb wins over the response's <confidence>; null is missing
    assert cal["verb"]["mean_conf"] == pytest.approx(0.9)
    assert cal["verb"]["n_missing_conf"] == 1
    # out-of-range given confidence is missing, counted
    assert cal["ans"]["n_missing_conf"] == 1
    # per-sample rows round-trip
    write_samples(samples, tmp_path / "samples.jsonl")
    back = read_samples(tmp_path / "samples.jsonl")
    again = score_samples(back)
    assert again["tasks"] == scores["tasks"]
    assert again["groups"] == scores["groups"]


# (task, label, answer, verbalised confidence or None, conf_ans). The verbalised confidence only
# knows the subtask: 0.6 on FI-8 and WebEmo-25, 0.1 on EmoSet-8, whatever the answer. WebEmo-25 is
# all right (its AUC undefined); one EmoSet-8 answer states no confidence (left out: exclude).
_WITHIN_ROWS = [
    ("FI-8", "fear", "fear", "0.6", 0.9),
    ("FI-8", "fear", "fear", "0.6", 0.7),
    ("FI-8", "awe", "awe", "0.6", 0.4),
    ("FI-8", "awe", "fear", "0.6", 0.5),
    ("EmoSet-8", "anger", "anger", "0.1", 0.3),
    ("EmoSet-8", "anger", "fear", "0.1", 0.2),
    ("EmoSet-8", "sadness", "fear", "0.1", 0.6),
    ("EmoSet-8", "sadness", "awe", "0.1", 0.3),
    ("EmoSet-8", "disgust", "fear", None, 0.1),
    ("WebEmo-25", "rage", "rage", "0.6", 0.8),
    ("WebEmo-25", "zest", "zest", "0.6", 0.2),
]


def test_within_subtask_auc_against_sklearn_per_subtask(tmp_path: Path) -> None:
    from sklearn.metrics import roc_auc_score

    web25 = ["rage", "zest", "relief"]
    rows = [_row(t, lab, ans, conf, conf_ans=a, **({"candidates": web25} if t == "WebEmo-25" else {}))
            for t, lab, ans, conf, a in _WITHIN_ROWS]
    scores = score_file(_write(tmp_path / "p.jsonl", rows))[0]
    group = scores["groups"]["ID VER"]

    def by_task(src: int) -> dict[str, tuple[list[int], list[float]]]:
        out: dict[str, tuple[list[int], list[float]]] = {}
        for r in _WITHIN_ROWS:
            if r[src] is not None:
                y, c = out.setdefault(r[0], ([], []))
                y.append(int(r[1] == r[2]))
                c.append(float(r[src]))
        return out

    for src, col in (("verb", 3), ("ans", 4)):
        per_task = by_task(col)
        aucs = {t: roc_auc_score(y, c) for t, (y, c) in per_task.items() if len(set(y)) == 2}
        assert set(aucs) == {"FI-8", "EmoSet-8"}          # WebEmo-25 is all right: skipped
        cal = group[src]
        assert cal["auc_within"] == pytest.approx((aucs["FI-8"] + aucs["EmoSet-8"]) / 2)
        assert cal["auc_within_n"] == 2
        # the pooled AUC is unchanged, over the pooled samples
        pooled_y = [v for y, _ in per_task.values() for v in y]
        pooled_c = [v for _, c in per_task.values() for v in c]
        assert cal["auc"] == pytest.approx(roc_auc_score(pooled_y, pooled_c))
        # each subtask's own AUC in the per-subtask results; no auc_within there
        for t in per_task:
            task_cal = scores["tasks"][t]["calibration"][src]
            assert task_cal["auc"] == (pytest.approx(aucs[t]) if t in aucs else None)
            assert "auc_within" not in task_cal
    # the subtask-only confidence: pooled AUC 19/24 (hand count of the 24 right/wrong pairs),
    # within-subtask AUC exactly 0.5
    assert group["verb"]["auc"] == pytest.approx(19 / 24)
    assert group["verb"]["auc_within"] == 0.5
    # conf_ans by hand: FI-8, right 0.9 / 0.7 / 0.4 against wrong 0.5: 2 of 3 pairs won; EmoSet-8,
    # right 0.3 against wrong 0.2 / 0.6 / 0.3 / 0.1: won, lost, tied, won
    assert group["ans"]["auc_within"] == pytest.approx((2 / 3 + (1 + 0 + 0.5 + 1) / 4) / 2)


def test_within_subtask_auc_null_when_no_subtask_has_one(tmp_path: Path) -> None:
    rows = [_row("FI-2", "positive", "positive", "0.6"), _row("WebEmo-2", "negative", "negative")]
    cal = score_file(_write(tmp_path / "p.jsonl", rows))[0]["groups"]["ID VSA"]["verb"]
    assert cal["auc_within"] is None
    assert cal["auc_within_n"] == 0
