"""`emocaliber eval run` with the tiny taught model (HF backend) on a small manifest over four
subtasks, then `emocaliber eval score` on its output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emocaliber_rl.cli import main
from tests.conftest import draw_image
from tests.inference_helpers import TAUGHT_ANSWER, TAUGHT_CONFIDENCE, one_thread

ROWS = [("FI-8", "amusement"), ("FI-8", "fear"), ("EmoSet-8", "amusement"), ("EmoSet-8", "awe"),
        ("Abstract-8", "sadness"), ("Abstract-8", "amusement"), ("Artphoto-8", "anger"),
        ("Artphoto-8", "contentment")]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from emocaliber_rl.data.exports import export_eval_manifest
    from emocaliber_rl.data.records import Record

    d = tmp_path_factory.mktemp("evalset")
    recs = []
    for i, (task, label) in enumerate(ROWS):
        p = d / f"{i}.png"
        draw_image(40 + i).save(p)
        recs.append(Record.make(f"t{i}", task, p, label))
    return export_eval_manifest(recs, d / "test.eval.jsonl").path


def _run(args: list[str]) -> int:
    with one_thread():
        return main(args)


def _common(model: Path, manifest: Path, out: Path) -> list[str]:
    return ["eval", "run", "--backend", "hf", "--processor-pixels", "--model", str(model), "--manifest", str(manifest),
            "--out", str(out), "--greedy", "--max-new-tokens", "64", "--batch-size", "3",
            "--dtype", "float32", "--no-progress"]


def test_eval_run_rows_then_eval_score(taught_scaffold_dir: Path, manifest: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    pred = tmp_path / "pred.jsonl"
    assert _run(_common(taught_scaffold_dir, manifest, pred)) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (stats["written"], stats["skipped"]) == (8, 0)
    rows = [json.loads(x) for x in pred.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"t{i}" for i in range(8)]
    for r, (task, label) in zip(rows, ROWS):
        assert r["subtask"] == task and r["label"] == label
        assert r["candidates"] == ["amusement", "anger", "awe", "contentment", "disgust",
                                   "excitement", "fear", "sadness"]
        assert f"<answer>{TAUGHT_ANSWER}</answer>" in r["response"]
        assert r["pred"] == TAUGHT_ANSWER
        # the manifest's prompt asks for a confidence; the taught model mostly writes one (a
        # few seconds of teaching do not make it perfect), and conf_verb is what it wrote
        wrote = f"<confidence>{TAUGHT_CONFIDENCE:.2f}</confidence>" in r["response"]
        assert r["conf_verb"] == (TAUGHT_CONFIDENCE if wrote else None)
        assert 0 < r["conf_ans"] <= 1 and 0 < r["conf_avg"] <= 1
        assert r["finish_reason"] == "stop" and r["num_tokens"] > 0
    assert any(r["conf_verb"] == TAUGHT_CONFIDENCE for r in rows)

    # rerun: everything is done already
    assert _run(_common(taught_scaffold_dir, manifest, pred)) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (stats["written"], stats["skipped"]) == (0, 8)

    scores_path = tmp_path / "scores.json"
    assert main(["eval", "score", str(pred), "--json", str(scores_path)]) == 0
    scores = json.loads(scores_path.read_text())
    for task in ("FI-8", "EmoSet-8", "Abstract-8", "Artphoto-8"):
        labels = [lab for t, lab in ROWS if t == task]
        expected = sum(lab == TAUGHT_ANSWER for lab in labels) / len(labels)
        assert scores["tasks"][task]["acc"] == pytest.approx(expected)
        assert scores["tasks"][task]["n"] == 2
    assert set(scores["tasks"]["FI-8"]["calibration"]) == {"verb", "ans", "avg"}


def test_eval_run_confidence_prompt_switch(taught_scaffold_dir: Path, manifest: Path, tmp_path: Path) -> None:
    from emocaliber_rl.inference.eval_run import eval_messages, read_eval_manifest
    from emocaliber_rl.prompts import task_question

    row = read_eval_manifest(manifest)[0]
    assert eval_messages(row, None)[1]["content"] == row["prompt"]  # manifest verbatim
    assert eval_messages(row, True)[1]["content"] == task_question("FI-8", ask_confidence=True)
    assert eval_messages(row, False)[1]["content"] == task_question("FI-8", ask_confidence=False)
    assert eval_messages(row, False)[0] == {"role": "system", "content": row["system"]}

    plain = tmp_path / "plain.jsonl"
    assert _run(_common(taught_scaffold_dir, manifest, plain) + ["--no-ask-confidence", "--limit", "3"]) == 0
    rows = [json.loads(x) for x in plain.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["t0", "t1", "t2"]
    # without the request the taught model gives the stage-1 response: no confidence
    assert all(r["conf_verb"] is None and "<confidence>" not in r["response"] for r in rows)


def test_eval_run_missing_manifest(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["eval", "run", "--model", "x", "--manifest", str(tmp_path / "none.jsonl"),
               "--out", str(tmp_path / "p.jsonl")])
    assert rc == 2 and "no evaluation manifest" in capsys.readouterr().err


def test_help_explains_every_option(capsys: pytest.CaptureFixture) -> None:
    for argv in (["eval", "run"], ["stage2", "generate"], ["stage2", "label"]):
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        text = capsys.readouterr().out
        from emocaliber_rl.cli import build_parser

        parser = build_parser()
        sub = parser._subparsers._group_actions[0].choices[argv[0]]  # type: ignore[union-attr]
        leaf = sub._subparsers._group_actions[0].choices[argv[1]]  # type: ignore[union-attr]
        for action in leaf._actions:
            assert action.help, f"{' '.join(argv)}: {action.option_strings or action.dest} has no help"
        assert "--backend" in text or argv[1] == "label"
