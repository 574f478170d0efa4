"""The row schema (emocaliber_rl/data/rows.py): one field name, ``subtask``, one validator.

``tests/data/old_predictions.jsonl`` is seven lines of a real ``eval run`` output written before
the rename (its subtask field is ``task``); ``tests/data/old_samples.jsonl`` is what ``eval score
--samples`` wrote for it then. Users keep such files: ``eval score`` and ``eval report`` must read
them with the numbers they had.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emocaliber_rl.data.records import read_manifest
from emocaliber_rl.evaluation.scoring import read_predictions, read_samples
from emocaliber_rl.inference.eval_run import read_eval_manifest
from emocaliber_rl.jsonl import InputFileError
from emocaliber_rl.stage2 import read_prompt_set
from tests.conftest import draw_image

DATA = Path(__file__).parent / "data"
OLD_PREDICTIONS = DATA / "old_predictions.jsonl"
OLD_SAMPLES = DATA / "old_samples.jsonl"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emocaliber_rl.cli", *args], check=False,
                          capture_output=True, text=True, timeout=300)


def _renamed(src: Path, dst: Path) -> Path:
    """``src`` with each row's ``task`` renamed ``subtask`` (the layout the toolkit writes now)."""
    rows = [json.loads(x) for x in src.read_text().splitlines()]
    dst.write_text("".join(json.dumps({("subtask" if k == "task" else k): v for k, v in r.items()}) + "\n"
                           for r in rows))
    return dst


def test_old_prediction_file_scores_as_before_and_samples_name_the_subtask(tmp_path: Path) -> None:
    new = _renamed(OLD_PREDICTIONS, tmp_path / "new.jsonl")
    scores = {}
    for name, pred in (("old", OLD_PREDICTIONS), ("new", new)):
        res = _cli("eval", "score", str(pred), "--json", str(tmp_path / f"{name}.json"),
                   "--samples", str(tmp_path / f"{name}.samples.jsonl"))
        assert res.returncode == 0, res.stderr
        scores[name] = json.loads((tmp_path / f"{name}.json").read_text())
    # by hand from the file: FI-2 rows 1-3 answer their label (positive), row 4 answers positive for
    # negative; FI-8 row 5 answers amusement for amusement, rows 6-7 anger / excitement for amusement
    got = {t: (v["n"], v["acc"]) for t, v in scores["old"]["tasks"].items() if v["n"]}
    assert got == {"FI-2": (4, pytest.approx(3 / 4)), "FI-8": (3, pytest.approx(1 / 3))}
    # every <confidence> in the file is 0.49: one bin, ECE |3/4 - 0.49|, Brier (3 * 0.51^2 + 0.49^2) / 4
    verb = scores["old"]["groups"]["ID VSA"]["verb"]
    assert (verb["ece"], verb["brier"]) == (pytest.approx(0.26), pytest.approx(0.2551))
    for key in ("tasks", "groups"):
        assert scores["new"][key] == scores["old"][key]
    samples = [json.loads(x) for x in (tmp_path / "old.samples.jsonl").read_text().splitlines()]
    assert [r["subtask"] for r in samples] == ["FI-2"] * 4 + ["FI-8"] * 3
    assert not any("task" in r for r in samples)


def test_old_and_new_samples_files_read_alike(tmp_path: Path) -> None:
    old = read_samples(OLD_SAMPLES)
    new = read_samples(_renamed(OLD_SAMPLES, tmp_path / "samples.jsonl"))
    assert old.subtask.tolist() == new.subtask.tolist() == ["FI-2"] * 4 + ["FI-8"] * 3
    assert new.correct.tolist() == [1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    assert old.pred.tolist() == new.pred.tolist()


def test_old_prediction_file_reads_like_its_renamed_copy(tmp_path: Path) -> None:
    old = read_predictions(OLD_PREDICTIONS)
    new = read_predictions(_renamed(OLD_PREDICTIONS, tmp_path / "new.jsonl"))
    assert old.subtask.tolist() == new.subtask.tolist() == ["FI-2"] * 4 + ["FI-8"] * 3
    assert old.pred.tolist() == new.pred.tolist() == ["positive"] * 4 + ["amusement", "anger", "excitement"]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("reader", ["manifest", "eval manifest", "prompt set", "predictions"])
def test_every_reader_names_file_line_field_and_id(tmp_path: Path, reader: str) -> None:
    img = tmp_path / "a.png"
    draw_image(1).save(img)
    good = {"id": "r-ok", "subtask": "FI-8", "image": str(img), "label": "awe", "candidates": ["awe", "fear"],
            "messages": [], "response": "<answer>awe</answer>"}
    bad = {**good, "id": "r-bad", "label": "joy"}  # joy is no FI-8 (Mikels) label
    path = _write(tmp_path / "rows.jsonl", [good, bad])
    read = {"manifest": read_manifest, "eval manifest": read_eval_manifest, "prompt set": read_prompt_set,
            "predictions": read_predictions}[reader]
    with pytest.raises(InputFileError) as exc:
        read(path)
    msg = str(exc.value)
    assert f"{path}:2: field 'label'" in msg and "'joy'" in msg and "'r-bad'" in msg


@pytest.mark.parametrize("reader", ["manifest", "eval manifest", "prompt set"])
def test_every_reader_reads_an_old_task_field_as_subtask(tmp_path: Path, reader: str) -> None:
    img = tmp_path / "a.png"
    draw_image(1).save(img)
    path = _write(tmp_path / "rows.jsonl", [{"id": "r1", "task": "fi-8", "image": str(img), "label": "awe",
                                             "messages": []}])
    if reader == "manifest":
        assert read_manifest(path)[0].subtask == "FI-8"
        return
    rows = (read_eval_manifest if reader == "eval manifest" else read_prompt_set)(path)
    assert rows[0]["subtask"] == "FI-8" and "task" not in rows[0]


@pytest.mark.parametrize(("change", "field"), [
    ({"candidates": ["fear", "anger"]}, "label"),  # awe could never be answered right
    ({"response": None}, "response"),
    ({"conf_verb": "high"}, "conf_verb"),
])
def test_prediction_checks_beyond_the_schema_name_the_id_too(tmp_path: Path, change: dict, field: str) -> None:
    good = {"id": "r-ok", "subtask": "FI-8", "label": "awe", "candidates": ["awe", "fear"],
            "response": "<answer>awe</answer>"}
    path = _write(tmp_path / "pred.jsonl", [good, {**good, "id": "r-bad", **change}])
    with pytest.raises(InputFileError) as exc:
        read_predictions(path)
    assert f"{path}:2: field '{field}'" in str(exc.value) and "(id 'r-bad')" in str(exc.value)
