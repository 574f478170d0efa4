"""`emocaliber eval score` then `eval report` as subprocesses, on predictions for all nine subtasks.

Expected numbers are computed here from what the generator wrote, with scikit-learn and an
exact-decimal ECE, not with the package's own metrics.
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, roc_auc_score

from emocaliber_rl.taxonomy import ALIASES, SUBTASKS

SIZES = {"FI-8": 40, "EmoSet-8": 36, "WebEmo-7": 30, "WebEmo-25": 45, "FI-2": 30, "WebEmo-2": 28,
         "Abstract-8": 12, "Artphoto-8": 25, "UnbiasedEmo-6": 33}
EDGE_CONFS = ["0.0", "1.0", "0.7", "1", "0.30", "0.6"]


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("emocaliber")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "emocaliber_rl.cli"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*_cli(), *args], check=False, capture_output=True, text=True, timeout=300)


def _generate(seed: int = 7) -> tuple[list[dict], list[dict]]:
    """Prediction rows, and per row the expected (pred or None, verb conf or None, ans conf)."""
    rng = random.Random(seed)
    spelled = {}
    for alias, target in ALIASES.items():
        spelled.setdefault(target, alias)
    rows, truth = [], []
    for task, n in SIZES.items():
        labels = SUBTASKS[task].labels
        for i in range(n):
            label = rng.choice(labels)
            kind = rng.random()
            if kind < 0.55:
                pred, text = label, label
            elif kind < 0.85:
                pred = rng.choice([x for x in labels if x != label])
                # an alias spelling now and then ("Sad.", "Content")
                text = spelled.get(pred, pred).capitalize() + "." if rng.random() < 0.3 else pred
            else:
                a, b = rng.sample(labels, 2)
                pred, text = None, f"{a} and {b}"
            r = rng.random()
            if r < 0.1:
                conf_text, conf = None, None
            elif r < 0.15:
                conf_text, conf = "1.5", None        # out of range: missing, not clipped
            elif r < 0.35:
                conf_text = rng.choice(EDGE_CONFS)
                conf = float(conf_text)
            else:
                # correct answers tend to get higher confidence, so AUC is informative
                base = 0.55 if pred == label else 0.35
                conf = round(min(1.0, max(0.0, rng.gauss(base, 0.2))), 2)
                conf_text = f"{conf:.2f}"
            response = f"<think><analysis>step {i}</analysis></think><answer>{text}</answer>"
            if conf_text is not None:
                response += f"<confidence>{conf_text}</confidence>"
            ans = None if rng.random() < 0.05 else round(rng.random(), 4)
            rows.append({"subtask": task, "label": label, "candidates": list(labels),
                         "response": response, "conf_ans": ans})
            truth.append({"subtask": task, "label": label, "pred": pred, "verb": conf, "ans": ans,
                          "text": text})
    # row order must not matter (expected numbers are computed per task from `truth`)
    rng.shuffle(rows)
    return rows, truth


def _ece_decimal(conf: list[float], correct: list[int]) -> float:
    bins: dict[int, list[tuple[float, int]]] = {}
    for c, y in zip(conf, correct):
        b = int((Decimal(repr(c)) * 10).to_integral_value(rounding=ROUND_FLOOR))
        bins.setdefault(min(b, 9), []).append((c, y))
    return sum(len(v) / len(conf) * abs(sum(y for _, y in v) / len(v) - sum(c for c, _ in v) / len(v))
               for v in bins.values())


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("eval_cli")
    rows, truth = _generate()
    pred_path = tmp / "predictions.jsonl"
    pred_path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    proc = _run("eval", "score", str(pred_path), "--json", str(tmp / "scores.json"),
                "--samples", str(tmp / "samples.jsonl"))
    assert proc.returncode == 0, proc.stderr
    # a second run: a directory with scores.json and the predictions beside it (official parse)
    run_b = tmp / "official-run"
    run_b.mkdir()
    (run_b / "predictions.jsonl").write_text(pred_path.read_text(), encoding="utf-8")
    proc_b = _run("eval", "score", str(run_b / "predictions.jsonl"), "--json",
                  str(run_b / "scores.json"), "--parse", "official")
    assert proc_b.returncode == 0, proc_b.stderr
    return {"tmp": tmp, "truth": truth, "stderr": proc.stderr, "run_b": run_b,
            "scores": json.loads((tmp / "scores.json").read_text())}


def test_score_json_matches_independent_numbers(scored: dict) -> None:
    scores, truth = scored["scores"], scored["truth"]
    assert set(scores) >= {"tasks", "groups"}
    assert list(scores["tasks"]) == list(SUBTASKS)        # all nine, taxonomy order
    group_tasks: dict[str, list[str]] = {}
    for task in SUBTASKS:
        items = [t for t in truth if t["subtask"] == task]
        y = [t["label"] for t in items]
        p = [t["pred"] if t["pred"] is not None else "unknown" for t in items]
        got = scores["tasks"][task]
        assert got["n"] == len(items) == SIZES[task]
        assert got["acc"] == pytest.approx(accuracy_score(y, p))
        assert got["macro_f1"] == pytest.approx(
            f1_score(y, p, labels=list(SUBTASKS[task].labels), average="macro", zero_division=np.nan))
        assert got["weighted_f1"] == pytest.approx(f1_score(y, p, average="weighted",
                                                            zero_division=0))
        assert got["parsed"] == pytest.approx(sum(t["pred"] is not None for t in items) / len(items))
        assert set(got["calibration"]) == {"verb", "ans"}
        group_tasks.setdefault(SUBTASKS[task].group, []).append(task)
    assert set(scores["groups"]) == {"ID VER", "ID VSA", "OOD VER"}
    for group, tasks in group_tasks.items():
        g = scores["groups"][group]
        assert g["acc"] == pytest.approx(sum(scores["tasks"][t]["acc"] for t in tasks) / len(tasks))
        assert g["macro_f1"] == pytest.approx(
            sum(scores["tasks"][t]["macro_f1"] for t in tasks) / len(tasks))
        assert g["n"] == sum(SIZES[t] for t in tasks)
        assert "avg" not in g
        items = [t for t in truth if t["subtask"] in tasks]
        for src in ("verb", "ans"):
            have = [t for t in items if t[src] is not None]
            c = [t[src] for t in have]
            y = [int(t["pred"] == t["label"]) for t in have]
            cal = g[src]
            assert set(cal) >= {"ece", "brier", "auc", "mean_conf", "conf_parsed"}
            assert cal["conf_parsed"] == pytest.approx(len(have) / len(items))
            assert cal["n_missing_conf"] == len(items) - len(have)
            assert cal["ece"] == pytest.approx(_ece_decimal(c, y))
            assert cal["brier"] == pytest.approx(brier_score_loss(y, c))
            assert cal["auc"] == pytest.approx(roc_auc_score(y, c))
            # within-subtask AUC: each task's own sklearn AUC, averaged by hand
            per_task = []
            for t in tasks:
                yt = [int(x["pred"] == x["label"]) for x in have if x["subtask"] == t]
                ct = [x[src] for x in have if x["subtask"] == t]
                if len(set(yt)) == 2:
                    per_task.append(roc_auc_score(yt, ct))
            assert cal["auc_within"] == pytest.approx(sum(per_task) / len(per_task))
            assert cal["auc_within_n"] == len(per_task)
            assert cal["mean_conf"] == pytest.approx(sum(c) / len(c))
            for key in ("ece", "brier", "auc", "auc_within", "mean_conf", "conf_parsed"):
                assert 0.0 <= cal[key] <= 1.0
    # missing confidences and unparsed answers are reported on stderr, never silent
    assert "verb confidence missing" in scored["stderr"]
    assert "--missing-conf exclude" in scored["stderr"]
    assert "answers unparsed" in scored["stderr"]


def test_official_parse_reproduces_the_substring_rule(scored: dict) -> None:
    official = json.loads((scored["run_b"] / "scores.json").read_text())
    assert official["meta"]["parse"] == "official"
    for task in SUBTASKS:
        items = [t for t in scored["truth"] if t["subtask"] == task]
        labels = SUBTASKS[task].labels
        # the official rule by its definition: first candidate that is a substring of the answer
        p = [next((c for c in labels if c in t["text"].lower()), "unknown") for t in items]
        y = [t["label"] for t in items]
        assert official["tasks"][task]["acc"] == pytest.approx(accuracy_score(y, p))
        assert official["tasks"][task]["weighted_f1"] == pytest.approx(
            f1_score(y, p, average="weighted", zero_division=0))
    # "a and b" answers count as the first-listed label there; strict leaves them unparsed
    assert sum(t["n_unparsed"] for t in official["tasks"].values()) < sum(
        t["n_unparsed"] for t in scored["scores"]["tasks"].values())


def test_report_tables_html_and_pngs(scored: dict) -> None:
    tmp = scored["tmp"]
    out = tmp / "report"
    proc = _run("eval", "report", str(tmp / "scores.json"), str(scored["run_b"]),
                "--names", "strict", "official", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    for stem in ("prediction_id_ver", "prediction_id_vsa", "prediction_ood_ver", "confidence",
                 "evolution_verb"):
        for ext in ("md", "csv", "tex"):
            assert (out / f"{stem}.{ext}").stat().st_size > 0
    tex = (out / "confidence.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\multicolumn{4}{c}{ID VER}" in tex
    md = (out / "prediction_id_ver.md").read_text()
    assert "| strict |" in md and "| official |" in md
    # the CSV carries the JSON's numbers in percent
    with (out / "prediction_id_ver.csv").open() as fh:
        table = list(csv.DictReader(fh))
    strict = next(r for r in table if r["Model"] == "strict")
    fi8 = scored["scores"]["tasks"]["FI-8"]
    assert float(strict["FI-8 Acc"]) == pytest.approx(round(fi8["acc"] * 100, 2))
    id_ver = scored["scores"]["groups"]["ID VER"]
    assert float(strict["Average Macro-F1"]) == pytest.approx(round(id_ver["macro_f1"] * 100, 2))
    # weighted-F1 beside macro-F1, labelled, in every format (the paper's F1 columns are weighted)
    assert float(strict["FI-8 Weighted-F1"]) == pytest.approx(round(fi8["weighted_f1"] * 100, 2))
    assert float(strict["Average Weighted-F1"]) == pytest.approx(round(id_ver["weighted_f1"] * 100, 2))
    assert fi8["weighted_f1"] != fi8["macro_f1"]  # the fixture tells them apart
    for ext in ("md", "tex"):
        text = (out / f"prediction_id_ver.{ext}").read_text()
        assert "Macro-F1" in text and "Weighted-F1" in text
    assert "the paper's f1 columns are weighted-f1" in md.lower()
    assert "Weighted-F1" in (out / "summary.html").read_text()
    with (out / "confidence.csv").open() as fh:
        conf_rows = list(csv.DictReader(fh))
    assert {(r["Model"], r["Conf"]) for r in conf_rows} == {
        ("strict", "Verb"), ("strict", "Ans"), ("official", "Verb"), ("official", "Ans")}
    # the within-subtask AUC beside the pooled one
    verb = next(r for r in conf_rows if (r["Model"], r["Conf"]) == ("strict", "Verb"))
    assert float(verb["ID VER AUC within"]) == pytest.approx(round(id_ver["verb"]["auc_within"] * 100, 2))
    assert float(verb["ID VER AUC"]) == pytest.approx(round(id_ver["verb"]["auc"] * 100, 2))

    pngs = sorted(out.glob("*.png"))
    names = {p.name for p in pngs}
    assert {"reliability_strict_verb.png", "reliability_official_verb.png",
            "confidence_hist_verb.png", "accuracy_coverage_verb.png",
            "confidence_hist_ans.png"} <= names
    for p in pngs:
        with Image.open(p) as im:
            im.load()
            assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
    page = (out / "summary.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(pngs)
    assert "Emotion prediction on ID VER tasks" in page and "Confidence estimation" in page


def test_bad_input_exits_2_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    good = {"subtask": "FI-8", "label": "fear", "candidates": ["fear", "awe"],
            "response": "<answer>fear</answer>"}
    bad.write_text(json.dumps(good) + "\n" + json.dumps({**good, "label": "joy"}) + "\n")
    proc = _run("eval", "score", str(bad))
    assert proc.returncode == 2
    assert f"{bad}:2: field 'label'" in proc.stderr


def test_eval_run_can_be_added() -> None:
    import argparse

    from emocaliber_rl.cli import build_parser
    from emocaliber_rl.cli import evaluate as eval_cli

    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model")
        p.set_defaults(func=lambda args: 0)

    eval_cli.add_eval_subcommand("run-test-hook", configure, help="test hook")
    try:
        args = build_parser().parse_args(["eval", "run-test-hook", "--model", "m"])
        assert args.model == "m" and args.func(args) == 0
        args = build_parser().parse_args(["eval", "score", "x.jsonl"])   # built-ins still there
        assert args.predictions == "x.jsonl" and args.missing_conf == "exclude"
    finally:
        eval_cli._EXTRA.pop("run-test-hook", None)


def test_report_without_samples_and_undefined_auc(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from emocaliber_rl.evaluation.report import write_report
    from emocaliber_rl.evaluation.scoring import score_file

    rows = [{"subtask": "FI-2", "label": "positive", "candidates": ["positive", "negative"],
             "response": "<answer>positive</answer><confidence>0.9</confidence>"}] * 3
    pred = tmp_path / "p.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scores, _ = score_file(pred)
    scores["meta"]["input"] = str(tmp_path / "moved-away.jsonl")   # predictions gone
    (tmp_path / "only.json").write_text(json.dumps(scores))
    written = write_report([tmp_path / "only.json"], tmp_path / "rep")
    assert not list((tmp_path / "rep").glob("*.png"))
    assert "no per-sample rows found" in capsys.readouterr().err
    assert (tmp_path / "rep" / "summary.html").exists() and (tmp_path / "rep" / "summary.html") in written
    # all answers right: AUC (pooled and within) undefined, printed as '-', ECE and Brier defined
    line = next(x for x in (tmp_path / "rep" / "confidence.md").read_text().splitlines()
                if x.startswith("| only |"))
    assert line == "| only | Verb | 10.00 | 1.00 | - | - |"
