"""One exit-code rule for every command that takes rows (issue 34, item 4): 0 every row used,
1 nothing written, 2 bad invocation, 3 written with rows left out; in the CLI's help and the docs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from emocaliber_rl.cli import main
from tests.conftest import REPO_ROOT, draw_image, fi_root_with_a_broken_image


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _published(tmp: Path, n_found: int, n_missing: int) -> Path:
    """A published test file (ShareGPT layout) naming ``n_found`` images that exist and
    ``n_missing`` that do not."""
    rows = []
    for i in range(n_found + n_missing):
        img = tmp / f"p{i}.png"
        if i < n_found:
            draw_image(i).save(img)
        rows.append({"task": "FI-8", "ground_truth": "awe", "images": [str(img)],
                     "conversations": [{"from": "human", "value": "<image>Which emotion?"},
                                       {"from": "gpt", "value": "<answer>awe</answer>"}]})
    return _write(tmp / "test_8k.jsonl", rows)


def _manifest(tmp: Path, n_found: int, n_missing: int) -> Path:
    rows = []
    for i in range(n_found + n_missing):
        img = tmp / f"m{i}.png"
        if i < n_found:
            draw_image(i).save(img)
        rows.append({"id": f"m{i}", "subtask": "FI-8", "group": "ID VER", "image": str(img),
                     "label": "awe", "response": "<answer>awe</answer>"})
    return _write(tmp / "manifest.jsonl", rows)


def test_bench_import_with_rows_left_out_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # 8 rows, 7 of whose images are missing: 1 written, 7 left out (was exit 0)
    src = _published(tmp_path, n_found=1, n_missing=7)
    out = tmp_path / "out.jsonl"
    assert main(["bench", "import", str(src), "-o", str(out), "--no-progress", "--workers", "1"]) == 3
    assert len(out.read_text().splitlines()) == 1
    assert "7 rows not used" in capsys.readouterr().err
    # every row used: 0
    src = _published(tmp_path, n_found=2, n_missing=0)
    assert main(["bench", "import", str(src), "-o", str(out), "--no-progress", "--workers", "1"]) == 0


def test_bench_import_of_an_empty_file_exits_1_without_no_problems(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "out.jsonl"
    assert main(["bench", "import", str(empty), "-o", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "no problems" not in err
    assert err.strip() == f"error: nothing written to {out}: {empty} holds no rows"
    assert not out.exists() and not Path(f"{out}.report.jsonl").exists()


@pytest.mark.parametrize("kind", ["eval", "prompts2", "rl3", "sft1"])
def test_export_with_rows_left_out_exits_3(tmp_path: Path, kind: str) -> None:
    src = _manifest(tmp_path, n_found=1, n_missing=1)
    out = tmp_path / ("out.parquet" if kind in ("rl3", "sft1") else "out.jsonl")
    extra = ["--processor-pixels"] if kind in ("rl3", "sft1") else []
    assert main(["export", kind, str(src), "-o", str(out), *extra]) == 3
    assert [json.loads(x)["kind"] for x in Path(f"{out}.report.jsonl").read_text().splitlines()] == \
        ["image_missing"]
    (tmp_path / "all").mkdir()
    every = _manifest(tmp_path / "all", n_found=1, n_missing=0)
    assert main(["export", kind, str(every), "-o", str(out), *extra]) == 0


def test_cot_split_of_an_empty_input_exits_1_and_writes_nothing(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "kept.jsonl"
    empty.write_text("")
    out = tmp_path / "split"
    assert main(["cot", "split", str(empty), "-o", str(out)]) == 1
    assert "holds no records" in capsys.readouterr().err
    assert not out.exists()


def test_bench_build_with_an_undecodable_image_exits_3(tmp_path: Path) -> None:
    root = fi_root_with_a_broken_image(tmp_path)
    out = tmp_path / "bench"
    args = ["bench", "build", "--fi", str(root), "-o", str(out), "--test-size", "1", "--workers", "1",
            "--no-progress", "--no-near-duplicates"]
    assert main(args) == 3
    report = [json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in report] == ["image_undecodable"]
    (root / "awe" / "broken.jpg").unlink()
    assert main(args) == 0


def test_eval_score_with_rows_left_out_exits_3(tmp_path: Path) -> None:
    row = {"id": "r0", "subtask": "FI-2", "label": "positive", "candidates": ["positive", "negative"],
           "response": "<answer>positive</answer><confidence>0.9</confidence>"}
    pred = _write(tmp_path / "pred.jsonl", [row, row, {**row, "id": "r1"}])
    assert main(["eval", "score", str(pred), "--duplicates", "first"]) == 3
    pred = _write(tmp_path / "pred.jsonl", [row, {**row, "id": "r1"}])
    assert main(["eval", "score", str(pred)]) == 0


def test_the_rule_is_in_the_help_and_the_docs(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for code, words in (("0", "every input row was used"), ("1", "nothing usable written"),
                        ("2", "bad invocation"), ("3", "written, with rows left out"), ("130", "interrupted")):
        assert re.search(rf"^\s+{code}\s+{words}", out, re.MULTILINE), (code, out[-1500:])
    # the docs' table has a row per command that takes rows, with its codes
    docs = (REPO_ROOT / "docs" / "outputs-and-resume.md").read_text(encoding="utf-8")
    table = docs.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    for command in ("bench import", "bench build", "export", "stage2 label", "cot split",
                    "cot synthesize", "cot judge", "eval score"):
        assert re.search(rf"^\| `{command}[` ]", table, re.MULTILINE), command
