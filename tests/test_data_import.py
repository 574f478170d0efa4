"""`bench import`: the published VECBench test file / VEC-CoT files into manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emocaliber_rl.data.release import import_release, write_import
from emocaliber_rl.data.report import DataProblemError
from emocaliber_rl.data.synthetic import draw_image


def _row(task, gt, img, cands=None, fmt="sharegpt", answer=None):
    ans = answer or gt
    resp = f"<think><element>e</element></think><answer>{ans}</answer><confidence>0.6</confidence>"
    row = {"task": task, "ground_truth": gt}
    if cands is not None:
        row["candidates"] = cands
    if fmt == "sharegpt":
        row["conversations"] = [{"from": "human", "value": "<image>Which emotion?"},
                                {"from": "gpt", "value": resp}]
        row["images"] = [img]
    else:
        row["messages"] = [{"role": "user", "content": "<image>Which emotion?"},
                           {"role": "assistant", "content": resp}]
        row["images"] = [img]
    return row


MIKELS = ["amusement", "anger", "awe", "contentment", "disgust", "excitement", "fear", "sadness"]


@pytest.fixture()
def release(tmp_path: Path) -> Path:
    for i in range(4):
        draw_image(tmp_path / "img" / f"{i}.jpg", i)
    draw_image(tmp_path / "img" / "dup.jpg", 0)
    rows = [
        _row("FI-8", "awe", "img/0.jpg", MIKELS),
        _row("UnbaisedEmo-6", "joy", "img/1.jpg", fmt="swift"),  # misspelt task name, accepted
        _row("WebEmo-25", "glee", "img/2.jpg"),  # line 3: unknown label
        _row("FI-2", "positive", "img/3.jpg", ["positive", "negative", "neutral"]),  # line 4
        _row("Abstract-8", "sad", "img/missing.jpg"),  # line 5: missing image
        _row("WebEmo-25", "cheerfullness", "img/dup.jpg"),  # same bytes as 0.jpg: kept, reported
        _row("Nonsense-3", "awe", "img/0.jpg"),  # line 7
    ]
    path = tmp_path / "test_8k.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_import_validates_and_reports_by_line(release: Path, tmp_path: Path) -> None:
    res = import_release([release], workers=1, progress=False)
    assert [(r.subtask, r.label) for r in res.records] == [
        ("FI-8", "awe"), ("UnbiasedEmo-6", "joy"), ("WebEmo-25", "cheerfulness")]
    assert all(r.sha256 and r.split == "test" and r.response is None for r in res.records)
    got = sorted((p.line, p.kind) for p in res.report.problems)
    assert got == [(3, "unknown_label"), (4, "unknown_label"), (5, "image_missing"),
                   (6, "duplicate_image_kept"), (7, "unknown_subtask")]
    assert "valid labels" in next(p.detail for p in res.report.problems if p.line == 3)
    out, rep = write_import(res, tmp_path / "m.jsonl")
    assert len(out.read_text().splitlines()) == 3 and len(rep.read_text().splitlines()) == 5
    assert "| UnbiasedEmo-6 | OOD VER | 1 |" in res.table()


def test_import_keeps_cot_and_strict_names_line(release: Path) -> None:
    res = import_release([release], keep_response=True, split="stage1", hash_files=False)
    assert res.records[0].response.startswith("<think>") and res.records[0].split == "stage1"
    with pytest.raises(DataProblemError, match=r"test_8k\.jsonl:3: unknown_label"):
        import_release([release], strict=True, hash_files=False)


def test_import_cli(release: Path, tmp_path: Path) -> None:
    from emocaliber_rl.cli import main

    assert main(["bench", "import", str(release), "-o", str(tmp_path / "t.jsonl"), "--no-progress",
                 "--workers", "1"]) == 0
    assert main(["bench", "import", str(release), "-o", str(tmp_path / "t.jsonl"), "--strict"]) == 2


def test_import_path_map(release: Path, tmp_path: Path) -> None:
    rows = [json.loads(x) for x in release.read_text().splitlines()]
    rows[0]["images"] = ["/mnt/authors/vecbench/img/0.jpg"]
    moved = tmp_path / "moved.jsonl"
    moved.write_text(json.dumps(rows[0]) + "\n")
    res = import_release([moved], path_map=[("/mnt/authors/vecbench/", f"{tmp_path}/")], workers=1,
                         progress=False)
    assert len(res.records) == 1 and res.records[0].image == str(tmp_path / "img" / "0.jpg")
    assert len(import_release([moved], workers=1, progress=False).report) == 1  # unmapped: missing
