"""``eval score --parse official`` reproduces the official release's evaluation pipeline to the digit.

The reference below is a hand transcription of github wdqqdw/EmoCaliber (snapshot a520291):
``inference/extract_verb_confidence.py`` (adds ``confidence``; a row whose confidence ``float()``
rejects is dropped by its ``except Exception: continue``) followed by
``inference/evaluate_multi_task_conf_from_merged.py`` (per-task Acc and weighted F1, lines 43-127;
group ECE/Brier/ROC-AUC over rows with a confidence, lines 417-594; group F1, lines 687-723),
with scikit-learn for F1 and AUC as there. The file mixes the cases where the release and our
default differ: dropped rows, a multi-line or repeated ``<confidence>``, braces, values outside
[0, 1] (clipped there), 0.3/0.7/1.0 on the float bin edges, substring answers, a candidate spelt
otherwise than the ground truth.
"""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from emocaliber_rl.evaluation.scoring import problems, score_file
from emocaliber_rl.taxonomy import MIKELS_8, POLARITY_2

# ---------------------------------------------------------------- the release, transcribed

TASK_GROUPS = {"ID VSA": ["FI-2", "WebEmo-2"], "ID VER": ["FI-8", "EmoSet-8", "WebEmo-7", "WebEmo-25"],
               "OOD VER": ["Abstract-8", "Artphoto-8", "UnbiasedEmo-6"]}


def release_extract_confidence(response: str) -> float | None:  # extract_verb_confidence.py:6-11
    match = re.search(r"<confidence>(.*?)</confidence>", response)
    if match:
        return float(match.group(1).replace("{", "").replace("}", ""))
    return None


def release_merge_conf(rows: list[dict]) -> list[dict]:  # extract_verb_confidence.py:13-41
    out = []
    for data in rows:
        try:
            data = dict(data)
            data["confidence"] = release_extract_confidence(data.get("response", ""))
            out.append(data)
        except Exception:  # noqa: BLE001, S112  (the release's own handler)
            continue
    return out


def release_pred(item: dict) -> str:  # evaluate_multi_task_conf_from_merged.py:60-83
    response = item.get("response", "").lower()
    candidates = item.get("candidates")
    answer_content = None
    answer_match = re.search(r"<answer>(.*?)</answer>", response)
    if answer_match:
        answer_content = answer_match.group(1).lower()
    pred = "unknown"
    if answer_content:
        for emotion in candidates:
            if emotion.lower() in answer_content:
                pred = emotion.lower()
                break
    else:
        for emotion in candidates:
            if emotion.lower() in response:
                pred = emotion.lower()
                break
    return pred


def release_ece(confidences, accuracies, n_bins: int = 10) -> float:  # lines 417-442
    confidences = np.array(confidences)
    accuracies = np.array(accuracies)
    bin_boundaries = np.linspace(0, 1, n_bins + 1)
    ece = 0.0
    for bin_lower, bin_upper in zip(bin_boundaries[:-1], bin_boundaries[1:]):  # noqa: RUF007  (verbatim)
        in_bin = np.logical_and(confidences >= bin_lower, confidences < bin_upper)
        prop_in_bin = np.mean(in_bin)
        if prop_in_bin > 0:
            ece += np.abs(np.mean(accuracies[in_bin]) - np.mean(confidences[in_bin])) * prop_in_bin
    return ece


def release_metrics(rows: list[dict]) -> dict:
    data = release_merge_conf(rows)
    tasks: dict[str, dict] = {}
    for task in dict.fromkeys(item["task"] for item in data):  # lines 43-105
        items = [item for item in data if item["task"] == task]
        truths = [item.get("ground_truth", "").lower() for item in items]
        preds = [release_pred(item) for item in items]
        tasks[task] = {"acc": accuracy_score(truths, preds),
                       "f1": f1_score(truths, preds, average="weighted"), "n": len(items)}
    groups: dict[str, dict] = {}
    for name, members in TASK_GROUPS.items():  # lines 485-594 and 687-723
        items = [item for item in data if item["task"] in members]
        if not items:
            continue
        with_conf = [item for item in items if item.get("confidence") is not None]
        conf = np.clip([item["confidence"] for item in with_conf], 0, 1)
        acc = [item.get("ground_truth", "").lower() == release_pred(item) for item in with_conf]
        groups[name] = {
            "acc": np.mean(acc),
            "f1": f1_score([item["ground_truth"].lower() for item in items],
                           [release_pred(item) for item in items], average="weighted"),
            "ece": release_ece(conf, acc),
            "brier": np.mean((conf - np.array(acc).astype(float)) ** 2),
            "auc": roc_auc_score(np.array(acc).astype(float), conf) if len(set(acc)) > 1 else None,
            "n": len(items), "valid": len(with_conf),
        }
    return {"tasks": tasks, "groups": groups, "n_dropped": len(rows) - len(data)}


# ---------------------------------------------------------------- the file

CONF_TEXTS = ["0.7", "0.3", "1.0", "{0.85}", " 0.6 ", "0.95", "0.1", "1.3", "85", "0.55", "0.9",
              "0.65", "0.7", "0.2"]
ABSTRACT_FILE_SPELLING = ["amusement", "anger", "awe", "content", "disgust", "excitement", "fear",
                          "sad"]


def _response(answer: str, conf: str | None) -> str:
    tail = "" if conf is None else f"<confidence>{conf}</confidence>"
    return f"<think><analysis>the scene</analysis></think><answer>{answer}</answer>{tail}"


def _rows() -> list[dict]:
    rng = random.Random(11)
    rows = []
    for task, labels in (("FI-8", MIKELS_8), ("EmoSet-8", MIKELS_8), ("FI-2", POLARITY_2),
                         ("WebEmo-2", POLARITY_2), ("Abstract-8", MIKELS_8)):
        cands = ABSTRACT_FILE_SPELLING if task == "Abstract-8" else list(labels)
        for _ in range(24):
            truth = rng.choice(labels)
            guess = truth if rng.random() < 0.55 else rng.choice(labels)
            answer = rng.choice([guess, guess.title(), f"It is {guess}.", f"{guess}, not {rng.choice(labels)}"])
            rows.append({"task": task, "ground_truth": truth, "candidates": cands,
                         "response": _response(answer, rng.choice(CONF_TEXTS))})
    mikels = list(MIKELS_8)
    rows += [
        # dropped by the release: float() rejects the first confidence
        {"task": "FI-8", "ground_truth": "awe", "candidates": mikels, "response": _response("awe", "high")},
        {"task": "FI-2", "ground_truth": "negative", "candidates": ["positive", "negative"],
         "response": _response("negative", "0.8.1")},
        {"task": "EmoSet-8", "ground_truth": "fear", "candidates": mikels,
         "response": _response("fear", "0.9 sure")},
        # a multi-line confidence is no match there: kept, without a confidence
        {"task": "FI-8", "ground_truth": "fear", "candidates": mikels, "response": _response("fear", "\n0.9\n")},
        # the first block wins (ours reads the last)
        {"task": "FI-8", "ground_truth": "anger", "candidates": mikels,
         "response": _response("anger", "0.2") + "<confidence>0.9</confidence>"},
        # no confidence at all
        {"task": "EmoSet-8", "ground_truth": "awe", "candidates": mikels, "response": _response("awe", None)},
        # no <answer>: the whole response is searched
        {"task": "FI-8", "ground_truth": "sadness", "candidates": mikels,
         "response": "I see sadness here <confidence>0.4</confidence>"},
        # the ground truth spelt otherwise than its candidate: wrong there
        {"task": "Abstract-8", "ground_truth": "sadness", "candidates": ABSTRACT_FILE_SPELLING,
         "response": _response("sad", "0.8")},
        {"task": "Abstract-8", "ground_truth": "sad", "candidates": ABSTRACT_FILE_SPELLING,
         "response": _response("sadness", "0.7")},
    ]  # the last two: one task spells sadness two ways, two F1 classes there
    return rows


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    rows = _rows()
    path = tmp_path_factory.mktemp("official") / "merged.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ours, _ = score_file(path, parse="official")
    return ours, release_metrics(rows)


def _digits(x: float) -> str:
    return f"{x * 100:.2f}"


def test_rows_dropped_as_the_release_drops_them(pair: tuple[dict, dict]) -> None:
    ours, ref = pair
    assert ref["n_dropped"] == 3
    assert ours["meta"]["n_dropped"] == 3
    assert [d["line"] for d in ours["meta"]["dropped"]] == [121, 122, 123]
    assert any("3 rows dropped" in line for line in problems(ours))
    assert sum(t["n"] for t in ours["tasks"].values()) == sum(t["n"] for t in ref["tasks"].values())


def test_task_accuracy_and_weighted_f1_to_the_digit(pair: tuple[dict, dict]) -> None:
    ours, ref = pair
    assert set(ours["tasks"]) == set(ref["tasks"])
    for task, r in ref["tasks"].items():
        t = ours["tasks"][task]
        assert t["n"] == r["n"]
        assert t["acc"] == pytest.approx(r["acc"], abs=1e-12)
        assert t["weighted_f1"] == pytest.approx(r["f1"], abs=1e-12)
        assert _digits(t["weighted_f1"]) == _digits(r["f1"])


def test_group_calibration_and_pooled_metrics_to_the_digit(pair: tuple[dict, dict]) -> None:
    ours, ref = pair
    assert ours["meta"]["ece_binning"] == "official"
    assert set(ours["groups"]) == set(ref["groups"])
    for name, r in ref["groups"].items():
        g = ours["groups"][name]
        cal = g["verb"]
        assert (g["n"], cal["n_used"]) == (r["n"], r["valid"])
        for ours_value, ref_value in ((cal["ece"], r["ece"]), (cal["brier"], r["brier"]),
                                      (cal["auc"], r["auc"]), (cal["acc"], r["acc"]),
                                      (g["pooled_weighted_f1"], r["f1"])):
            assert ours_value == pytest.approx(ref_value, abs=1e-12)
            assert _digits(ours_value) == _digits(ref_value)


def test_the_cases_that_differ_from_our_default_are_in_the_file() -> None:
    # the fixture is only worth something if the official and the default readings differ on it
    rows = _rows()
    kept = release_merge_conf(rows)
    assert any(r["confidence"] is not None and not 0 <= r["confidence"] <= 1 for r in kept)
    assert any(r["confidence"] == 1.0 for r in kept)
    assert any(r["confidence"] is None for r in kept)
    from emocaliber_rl.evaluation.metrics import expected_calibration_error

    with_conf = [r for r in kept if r["task"] in TASK_GROUPS["ID VER"] and r["confidence"] is not None]
    conf = np.clip([r["confidence"] for r in with_conf], 0, 1)
    acc = [r["ground_truth"].lower() == release_pred(r) for r in with_conf]
    assert expected_calibration_error(conf, acc) != pytest.approx(release_ece(conf, acc), abs=1e-6)
