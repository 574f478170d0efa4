"""Scoring 8,032 VECBench predictions: ``emocaliber_rl.evaluation`` vs the official script's style.

The baseline is written here, in the released ``evaluate_multi_task_conf_from_merged.py`` style
(not imported from it): a confidence-extraction pass, then a loop per task, an overall pass, a
loop per group for calibration and another per group for F1, each re-parsing every response with
the first-substring rule, scikit-learn weighted F1 / ROC-AUC, and an ECE with a Python loop over
bins. Both read the same JSONL file; imports are done before timing.

Run:  .venv/bin/python benchmarks/bench_scoring.py [--repeat 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from emocaliber_rl.evaluation.scoring import score_file
from emocaliber_rl.taxonomy import SUBTASKS

# VECBench test sizes (official release README): 8,032 in all
SIZES = {"Abstract-8": 229, "Artphoto-8": 806, "EmoSet-8": 1000, "FI-2": 1000, "FI-8": 1000,
         "UnbiasedEmo-6": 1000, "WebEmo-2": 1000, "WebEmo-7": 1000, "WebEmo-25": 997}
GROUPS = {"ID VSA": ["FI-2", "WebEmo-2"], "ID VER": ["FI-8", "EmoSet-8", "WebEmo-7", "WebEmo-25"],
          "OOD VER": ["Abstract-8", "Artphoto-8", "UnbiasedEmo-6"]}
FILLER = ("The warm light falls on a crowded street where people gather around a small stall; "
          "faces are turned towards the centre and several hands are raised. ")


def make_predictions(path: Path, seed: int) -> int:
    """Write realistic rows: five-step think (~1.5 kB), answer, two-decimal confidence."""
    rng = random.Random(seed)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for task, size in SIZES.items():
            labels = SUBTASKS[task].labels
            for _ in range(size):
                label = rng.choice(labels)
                pred = label if rng.random() < 0.55 else rng.choice(labels)
                conf = round(min(1.0, max(0.0, rng.gauss(0.6 if pred == label else 0.45, 0.2))), 2)
                steps = "".join(f"<{t}>{FILLER * 2}</{t}>" for t in
                                ("element", "human", "context", "interaction", "analysis"))
                response = (f"<think>{steps}</think><answer>{pred}</answer>"
                            f"<confidence>{conf:.2f}</confidence>")
                fh.write(json.dumps({"task": task, "label": label, "ground_truth": label,
                                     "candidates": list(labels), "response": response,
                                     "conf_ans": round(rng.random(), 4)}) + "\n")
                n += 1
    return n


# ------------------------------------------------------------ baseline: the official script's style


def _official_pred(item: dict) -> str:
    response = item.get("response", "").lower()
    candidates = item.get("candidates")
    pred = "unknown"
    answer_content = None
    m = re.search(r"<answer>(.*?)</answer>", response)
    if m:
        answer_content = m.group(1).lower()
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


def _official_ece(confidences, accuracies, n_bins: int = 10) -> float:
    confidences = np.array(confidences)
    accuracies = np.array(accuracies)
    bounds = np.linspace(0, 1, n_bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(bounds):
        in_bin = np.logical_and(confidences >= lo, confidences < hi)
        prop = np.mean(in_bin)
        if prop > 0:
            ece += np.abs(np.mean(accuracies[in_bin]) - np.mean(confidences[in_bin])) * prop
    return float(ece)


def official_style(path: Path) -> dict:
    data = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                data.append(json.loads(line))
    # pass 0 (extract_verb_confidence.py)
    for item in data:
        m = re.search(r"<confidence>(.*?)</confidence>", item.get("response", ""))
        item["confidence"] = float(m.group(1).replace("{", "").replace("}", "")) if m else None
    # pass 1: per task
    by_task: dict[str, list] = {}
    for item in data:
        by_task.setdefault(item.get("task", "unknown"), []).append(item)
    tasks = {}
    for task, items in by_task.items():
        truths = [it.get("ground_truth", "").lower() for it in items]
        preds = [_official_pred(it) for it in items]
        tasks[task] = {"accuracy": accuracy_score(truths, preds),
                       "f1_score": f1_score(truths, preds, average="weighted")}
    # overall pass
    truths = [it.get("ground_truth", "").lower() for it in data]
    preds = [_official_pred(it) for it in data]
    overall = {"accuracy": accuracy_score(truths, preds),
               "f1_score": f1_score(truths, preds, average="weighted")}
    # pass 2: per group calibration
    groups = {}
    for name, members in GROUPS.items():
        items = [it for it in data if it.get("task") in members]
        confs, accs = [], []
        for it in items:
            if it.get("confidence") is None:
                continue
            confs.append(it["confidence"])
            accs.append(it.get("ground_truth", "").lower() == _official_pred(it))
        confs = np.clip(confs, 0, 1)
        brier = float(np.mean((confs - np.array(accs, dtype=float)) ** 2))
        auc = roc_auc_score(np.array(accs, dtype=float), confs) if len(set(accs)) > 1 else None
        groups[name] = {"ece": _official_ece(confs, accs), "brier_score": brier, "roc_auc": auc}
    # pass 3: per group F1
    for name, members in GROUPS.items():
        items = [it for it in data if it.get("task") in members]
        truths = [it.get("ground_truth", "").lower() for it in items]
        preds = [_official_pred(it) for it in items]
        groups[name]["f1"] = f1_score(truths, preds, average="weighted")
    return {"tasks": tasks, "overall": overall, "groups": groups}


def _time_interleaved(fns: list, repeat: int) -> list[tuple[float, float]]:
    """(median, min) seconds of each function; the functions alternate within every repeat, so a
    load spike on the shared machine hits all of them alike and the ratio stays fair."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return [(statistics.median(t), min(t)) for t in times]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.jsonl"
        n = make_predictions(path, args.seed)
        size_mb = path.stat().st_size / 1e6
        # warm-up (file cache, lazy imports), then timed runs
        ours_scores, _ = score_file(path)
        ours_official_parse, _ = score_file(path, parse="official")
        official = official_style(path)
        (ours_med, ours_min), (off_med, off_min), (ours_ans_med, _) = _time_interleaved(
            [lambda: score_file(path), lambda: official_style(path),
             lambda: score_file(path, parse="official")], args.repeat)
        exe = Path(sys.executable).with_name("emocaliber")
        t0 = time.perf_counter()
        subprocess.run([str(exe), "eval", "score", str(path), "--json", str(Path(tmp) / "s.json")],
                       check=True, capture_output=True)
        cli_s = time.perf_counter() - t0
    print(f"predictions: {n} rows, {size_mb:.1f} MB, {len(SIZES)} tasks, repeat {args.repeat}")
    print(f"ours (read + strict parse + all metrics, verb & ans): median {ours_med:.3f} s, "
          f"min {ours_min:.3f} s")
    print(f"ours with --parse official:                          median {ours_ans_med:.3f} s")
    print(f"official-script style (3 passes, sklearn, bin loops): median {off_med:.3f} s, "
          f"min {off_min:.3f} s")
    print(f"ratio official / ours (median): {off_med / ours_med:.2f}x")
    print(f"`emocaliber eval score` end to end (interpreter start included): {cli_s:.3f} s")
    # same data, same answers: accuracies agree (labels here are canonical spellings)
    for task in SIZES:
        a, b = ours_scores["tasks"][task]["acc"], official["tasks"][task]["accuracy"]
        assert abs(a - b) < 1e-12, (task, a, b)
        w, v = ours_official_parse["tasks"][task]["weighted_f1"], official["tasks"][task]["f1_score"]
        assert abs(w - v) < 1e-12, (task, w, v)
    print("same accuracies and weighted F1 on every task; group ECE (%) ours vs official binning:")
    for g in GROUPS:
        print(f"  {g:8} {ours_scores['groups'][g]['verb']['ece'] * 100:6.2f} vs "
              f"{official['groups'][g]['ece'] * 100:6.2f}")
    print(f"target < 1 s for ours: {'met' if ours_med < 1.0 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
