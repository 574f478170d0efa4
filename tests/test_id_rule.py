"""The one id rule: an id names one sample. Commands that report bad rows and go on (`bench
import`, `export`) report a repeated id as ``duplicate_id`` with where it was first used and keep
the first; `cot split`, which has no problem report, refuses the input (exit 2, one line)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from emocaliber_rl.cli import main


def _img(path: Path, color: tuple[int, int, int]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 20), color).save(path, format="PNG")
    return str(path)


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _rows(tmp: Path) -> list[dict]:
    return [{"id": "r1", "subtask": "FI-8", "image": _img(tmp / "a.png", (200, 0, 0)), "label": "awe", "split": "train"},
            {"id": "r2", "subtask": "FI-8", "image": _img(tmp / "b.png", (0, 200, 0)), "label": "fear", "split": "train"},
            {"id": "r1", "subtask": "FI-8", "image": _img(tmp / "c.png", (0, 0, 200)), "label": "anger", "split": "train"}]


def test_export_eval_reports_a_repeated_id_and_keeps_the_first(tmp_path: Path, capsys) -> None:
    src = _write(tmp_path / "m.jsonl", _rows(tmp_path))
    out = tmp_path / "e.jsonl"
    rc = main(["export", "eval", str(src), "-o", str(out)])
    assert rc in (0, 3)  # written, one row left out (the exit-code rule is not this test's subject)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["id"], r["label"]) for r in rows] == [("r1", "awe"), ("r2", "fear")]
    report = [json.loads(x) for x in (tmp_path / "e.jsonl.report.jsonl").read_text().splitlines()]
    assert report == [{"source": str(src), "kind": "duplicate_id", "line": 3, "item": "r1",
                       "detail": f"id 'r1' already used at {src}:1"}]
    assert "duplicate_id: 1" in capsys.readouterr().err


def test_export_reports_a_repeat_across_input_files(tmp_path: Path) -> None:
    rows = _rows(tmp_path)
    a = _write(tmp_path / "a.jsonl", rows[:2])
    b = _write(tmp_path / "b.jsonl", rows[2:])
    out = tmp_path / "p.jsonl"
    main(["export", "prompts2", str(a), str(b), "-o", str(out)])
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["r1", "r2"]
    report = (tmp_path / "p.jsonl.report.jsonl").read_text()
    assert "duplicate_id" in report and f"{a}:1" in report


def test_cot_split_refuses_a_repeated_id(tmp_path: Path, capsys) -> None:
    rows = _rows(tmp_path)
    a = _write(tmp_path / "a.jsonl", rows[:2])
    b = _write(tmp_path / "b.jsonl", rows[2:])
    out = tmp_path / "split"
    assert main(["cot", "split", str(a), str(b), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        (f"error: {b}:1: field 'id': 'r1' already used at {a}:1 (duplicate_id: an id names one sample; "
         "remove or rename the repeat)")]
    assert not out.exists()
