"""Exports: stage-1 SFT parquet, stage-2 prompts, stage-3 RL parquet, evaluation manifests.

Real images (drawn with PIL), real parquet files read back with pyarrow, and (when the tiny model
can be built) veRL's own ``MultiTurnSFTDataset`` / ``RLHFDataset``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from emocaliber_rl.data.exports import (
    export_eval_manifest,
    export_prompts_stage2,
    export_rl_stage3,
    export_sft_stage1,
    load_rows,
)
from emocaliber_rl.data.records import Record
from emocaliber_rl.data.report import DataProblemError, ProblemReport
from emocaliber_rl.taxonomy import aliases_for

STEPS = {
    "element": "A child holds a red balloon.",
    "human": "The child is laughing.",
    "context": "A sunny park.",
    "interaction": "The balloon and the laugh reinforce each other.",
    "analysis": "The scene is light and playful.",
}


def _img(path: Path, color=(200, 30, 30), fmt="JPEG", size=(40, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def _truncated(path: Path) -> Path:
    _img(path, (10, 200, 10), size=(64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _records(tmp: Path) -> list[Record]:
    return [
        Record.make("a", "FI-8", _img(tmp / "a.jpg"), "amusement", steps=STEPS),
        Record.make("b", "WebEmo-25", _img(tmp / "b.png", (0, 0, 250), "PNG"), "cheerfullness",
                    steps=STEPS),
        Record.make("c", "FI-2", _img(tmp / "c.bmp", (9, 9, 9), "BMP"), "pos",
                    response="<think><element>x</element><human>y</human><context>z</context>"
                             "<interaction>w</interaction><analysis>v</analysis></think>"
                             "<answer>positive</answer><confidence>0.80</confidence>"),
    ]


def test_stage1_from_records(tmp_path: Path) -> None:
    res = export_sft_stage1(_records(tmp_path), tmp_path / "sft.parquet")
    assert res.rows == 3 and len(res.report) == 0
    table = pq.read_table(res.path)
    assert table.column_names[:2] == ["messages", "images"]
    rows = table.to_pylist()
    for row in rows:
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["system", "user", "assistant"]
        assert row["messages"][0]["content"] == "You are a helpful assistant."
        assert row["messages"][1]["content"].count("<image>") == 1
        assert "<confidence>" not in row["messages"][2]["content"]
        assert len(row["images"]) == 1 and row["images"][0]["path"] is None
        Image.open(io.BytesIO(row["images"][0]["bytes"])).load()
    assert rows[1]["label"] == "cheerfulness"
    assert rows[1]["messages"][2]["content"].endswith("<answer>cheerfulness</answer>")
    assert rows[2]["messages"][2]["content"].endswith("<answer>positive</answer>")
    # JPEG embedded unchanged; BMP re-encoded as PNG.
    assert rows[0]["images"][0]["bytes"] == (tmp_path / "a.jpg").read_bytes()
    assert Image.open(io.BytesIO(rows[2]["images"][0]["bytes"])).format == "PNG"


def _write_lines(path: Path, lines: list) -> Path:
    with open(path, "w") as f:
        f.writelines((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    return path


RESP = ("<think><element>e</element><human>h</human><context>c</context><interaction>i"
        "</interaction><analysis>a</analysis></think><answer>{}</answer>")


def _published(tmp: Path) -> Path:
    _img(tmp / "imgs" / "ok1.jpg")
    _img(tmp / "imgs" / "ok2.jpg", (1, 2, 3))
    _truncated(tmp / "imgs" / "trunc.jpg")
    (tmp / "imgs" / "garbage.jpg").write_bytes(b"not an image at all")
    return _write_lines(tmp / "stage1.jsonl", [
        # 1: ms-swift, with task + label + confidence (stage-2 style) -> ok, confidence stripped
        {"messages": [{"role": "user", "content": "<image>Which emotion? amusement, anger..."},
                      {"role": "assistant", "content": RESP.format("awe") + "<confidence>0.7</confidence>"}],
         "images": ["imgs/ok1.jpg"], "task": "EmoSet-8", "label": "awe"},
        # 2: ShareGPT with `image`, no task: subtask inferred from the user text's label list
        {"conversations": [{"from": "human", "value": "<image>Pick one: anger, fear, joy, love, sadness, surprise"},
                           {"from": "gpt", "value": RESP.format("joy")}],
         "image": "imgs/ok2.jpg"},
        # 3: missing image
        {"messages": [{"role": "user", "content": "<image>?"}, {"role": "assistant", "content": RESP.format("fear")}],
         "images": ["imgs/nope.jpg"], "task": "FI-8"},
        # 4: truncated image
        {"messages": [{"role": "user", "content": "<image>?"}, {"role": "assistant", "content": RESP.format("fear")}],
         "images": ["imgs/trunc.jpg"], "task": "FI-8"},
        # 5: unknown label
        {"messages": [{"role": "user", "content": "<image>?"}, {"role": "assistant", "content": RESP.format("glee")}],
         "images": ["imgs/ok1.jpg"], "task": "FI-8", "label": "glee"},
        # 6: no <answer>
        {"messages": [{"role": "user", "content": "<image>?"}, {"role": "assistant", "content": "I think fear."}],
         "images": ["imgs/ok1.jpg"], "task": "FI-8", "label": "fear"},
        # 7: not JSON
        '{"messages": [',
        # 8: undecodable image
        {"messages": [{"role": "user", "content": "<image>?"}, {"role": "assistant", "content": RESP.format("fear")}],
         "images": ["imgs/garbage.jpg"], "task": "FI-8"},
        # 9: answer disagrees with label
        {"messages": [{"role": "user", "content": "<image>?"}, {"role": "assistant", "content": RESP.format("fear")}],
         "images": ["imgs/ok1.jpg"], "task": "FI-8", "label": "awe"},
    ])


def test_stage1_from_published_layouts_reports_every_bad_line(tmp_path: Path) -> None:
    src = _published(tmp_path)
    report = ProblemReport()
    rows = load_rows([src], report)
    res = export_sft_stage1(rows, tmp_path / "sft.parquet", report)
    assert res.rows == 2
    by_line = {p.line: p.kind for p in report.problems}
    assert by_line == {3: "image_missing", 4: "image_truncated", 5: "unknown_label", 6: "no_answer",
                       7: "bad_json", 8: "image_undecodable", 9: "answer_mismatch"}
    out = pq.read_table(res.path).to_pylist()
    assert [r["subtask"] for r in out] == ["EmoSet-8", "UnbiasedEmo-6"]
    assert out[0]["messages"][2]["content"] == RESP.format("awe")
    # 'ours' replaces the published question; 'original' keeps it verbatim
    from emocaliber_rl.prompts import task_question

    assert out[0]["messages"][1]["content"] == task_question("EmoSet-8")
    res2 = export_sft_stage1(load_rows([src], ProblemReport()), tmp_path / "sft2.parquet",
                             ProblemReport(), user_prompt="original")
    assert pq.read_table(res2.path).to_pylist()[1]["messages"][1]["content"].startswith("<image>Pick one")
    report_file = report.write(tmp_path / "report.jsonl")
    assert len(report_file.read_text().splitlines()) == 7


def test_stage1_strict_raises_with_line_number(tmp_path: Path) -> None:
    src = _published(tmp_path)
    with pytest.raises(DataProblemError, match=r"stage1\.jsonl:5"):
        rows = load_rows([src], ProblemReport(strict=True))
        export_sft_stage1(rows, tmp_path / "x.parquet", ProblemReport(strict=True))
    assert not (tmp_path / "x.parquet").exists()


def test_stage3_rl_parquet(tmp_path: Path) -> None:
    res = export_rl_stage3(_records(tmp_path), tmp_path / "rl.parquet", split="train")
    rows = pq.read_table(res.path).to_pylist()
    assert [r["data_source"] for r in rows] == ["FI-8", "WebEmo-25", "FI-2"]
    assert all(r["ability"] == "emotion" for r in rows)
    assert [r["reward_model"] for r in rows] == [
        {"style": "rule", "ground_truth": "amusement"},
        {"style": "rule", "ground_truth": "cheerfulness"},
        {"style": "rule", "ground_truth": "positive"},
    ]
    assert [r["extra_info"]["index"] for r in rows] == [0, 1, 2]
    web = rows[1]["extra_info"]
    assert web["group"] == "ID VER" and len(web["candidates"]) == 25
    aliases = {k: v for k, v in web["aliases"].items() if v is not None}
    assert aliases == aliases_for("WebEmo-25")
    assert aliases["cheerfullness"] == "cheerfulness" and aliases["irritabilty"] == "irritability"
    assert rows[2]["extra_info"]["aliases"]["pos"] == "positive"
    assert rows[2]["extra_info"]["aliases"]["sad"] is None
    user = rows[0]["prompt"][1]["content"]
    assert user.count("<image>") == 1 and "<confidence>" in user


def test_stage2_prompts_and_eval_manifest(tmp_path: Path) -> None:
    recs = _records(tmp_path)
    recs.append(Record.make("gone", "FI-8", tmp_path / "gone.jpg", "fear"))
    rep = ProblemReport()
    res = export_prompts_stage2(recs, tmp_path / "p.jsonl", rep)
    assert res.rows == 3 and [p.item for p in rep.problems] == ["gone"]
    row = json.loads(res.path.read_text().splitlines()[1])
    assert set(row) >= {"id", "subtask", "image", "label", "candidates", "messages"}
    assert "<confidence>" not in row["messages"][1]["content"]
    res_pq = export_prompts_stage2(recs[:3], tmp_path / "p.parquet")
    assert pq.read_table(res_pq.path).num_rows == 3
    ev = export_eval_manifest(recs[:3], tmp_path / "eval.jsonl")
    rows = [json.loads(line) for line in ev.path.read_text().splitlines()]
    assert [r["subtask"] for r in rows] == ["FI-8", "WebEmo-25", "FI-2"]
    assert rows[2]["group"] == "ID VSA" and rows[2]["candidates"] == ["positive", "negative"]
    assert rows[0]["prompt"].startswith("<image>") and "<confidence>" in rows[0]["prompt"]


def test_export_cli_writes_report_and_strict_fails(tmp_path: Path, capsys) -> None:
    from emocaliber_rl.cli import main

    src = _published(tmp_path)
    out = tmp_path / "cli.parquet"
    # line 2 infers UnbiasedEmo-6, a test-only subtask: let it through the train/test guard
    assert main(["export", "sft1", str(src), "-o", str(out), "--allow-test"]) == 3  # 7 rows left out
    assert pq.read_table(out).num_rows == 2
    report = [json.loads(x) for x in (tmp_path / "cli.parquet.report.jsonl").read_text().splitlines()]
    assert sorted(r["line"] for r in report) == [3, 4, 5, 6, 7, 8, 9]
    assert "7 input records not used" in capsys.readouterr().err
    assert main(["export", "rl3", str(src), "-o", str(tmp_path / "rl.parquet"), "--strict", "--allow-test"]) == 2
    assert main(["export", "eval", str(src), "-o", str(tmp_path / "e.jsonl")]) == 3  # rows left out
