"""The one path rule (emocaliber_rl.data.image_paths): every file a command writes stores image
paths absolute or relative to its own folder, and every reader resolves them against that folder,
so commands chain whatever the working directory. Folder names carry spaces and non-ASCII."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.conftest import REPO_ROOT


def _img(path: Path, color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 16), color).save(path, format="PNG")


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "emocaliber_rl.cli", *args], check=False, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_bench_import_then_export_eval_from_other_working_directories(tmp_path: Path, monkeypatch) -> None:
    base = tmp_path / "Daten ü 数据"
    src = base / "release files é"
    _img(src / "imgs ä" / "a 1.png", (200, 10, 10))
    _img(src / "imgs ä" / "b.png", (10, 200, 10))
    (src / "good.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [
        {"id": "r1", "subtask": "FI-8", "label": "awe", "image": "imgs ä/a 1.png"},
        {"id": "r2", "subtask": "FI-2", "label": "positive", "image": "imgs ä/b.png"},
    ]), encoding="utf-8")
    # import from the release's folder, into a folder beside it (the issue's `-o out/g.jsonl`)
    imp = _cli(src, "bench", "import", "good.jsonl", "-o", "../out ö/g.jsonl", "--no-progress")
    assert imp.returncode == 0, imp.stderr
    manifest = base / "out ö" / "g.jsonl"

    # export from a third folder, naming both files by relative paths
    elsewhere = tmp_path / "elsewhere ß"
    elsewhere.mkdir()
    exp = _cli(elsewhere, "export", "eval", "../Daten ü 数据/out ö/g.jsonl",
               "-o", "../Daten ü 数据/out ö/eval/e.jsonl")
    assert exp.returncode == 0, exp.stderr
    assert "wrote 2 rows" in exp.stderr
    ev = base / "out ö" / "eval" / "e.jsonl"
    assert [r["id"] for r in _rows(ev)] == ["r1", "r2"]
    stored = [r["image"] for r in _rows(manifest)]
    # stored absolute (the images are outside the manifest's folder), not relative to the cwd
    assert stored == [str(src / "imgs ä" / "a 1.png"), str(src / "imgs ä" / "b.png")]

    # `eval run`'s reader (the model is not needed to check what it would open)
    from emocaliber_rl.inference.eval_run import read_eval_manifest

    monkeypatch.chdir(tmp_path)
    images = [r["image"] for r in read_eval_manifest(Path("Daten ü 数据/out ö/eval/e.jsonl"))]
    assert [Path(tmp_path / p).resolve() for p in images] == [(src / "imgs ä" / "a 1.png").resolve(),
                                                             (src / "imgs ä" / "b.png").resolve()]


def test_manifest_inside_its_images_folder_stays_relative_and_cot_split_moves_it(tmp_path: Path) -> None:
    """A manifest next to its images stores them relative (the folder moves as a whole);
    `cot split` into another folder rewrites them for its outputs, which `export` then reads."""
    root = tmp_path / "projekt ñ"
    _img(root / "bench" / "img x" / "a.png", (1, 2, 3))
    rows = [{"id": f"k{i}", "subtask": "FI-8", "image": "img x/a.png", "label": "awe", "split": "train",
             "response": "<think><element>e</element><human>h</human><context>c</context><interaction>i"
                         "</interaction><analysis>a</analysis></think><answer>awe</answer>"} for i in range(3)]
    (root / "bench" / "kept.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    sp = _cli(tmp_path, "cot", "split", "projekt ñ/bench/kept.jsonl", "-o", "projekt ñ/cot split",
              "--ratios", "1:0:0")
    assert sp.returncode == 0, sp.stderr
    out = _rows(root / "cot split" / "vec_cot_1.jsonl")
    assert {r["image"] for r in out} == {str(root / "bench" / "img x" / "a.png")}
    # a manifest written inside the images' folder keeps them relative to itself
    from emocaliber_rl.data.records import read_manifest, write_manifest

    write_manifest(root / "bench" / "copy.jsonl", read_manifest(root / "cot split" / "vec_cot_1.jsonl"))
    assert {r["image"] for r in _rows(root / "bench" / "copy.jsonl")} == {"img x/a.png"}
    exp = _cli(root, "export", "prompts2", "cot split/vec_cot_1.jsonl", "-o", "p2.jsonl")
    assert exp.returncode == 0, exp.stderr
    assert [r["image"] for r in _rows(root / "p2.jsonl")] == ["bench/img x/a.png"] * 3


def test_stage2_label_reads_generation_images_relative_to_the_file(tmp_path: Path, monkeypatch, capsys) -> None:
    """`stage2 generate` stores images by the rule; `stage2 label` resolves them against the
    generations file's folder, not the working directory."""
    from emocaliber_rl.cli import main
    from emocaliber_rl.stage2 import label_generations

    run = tmp_path / "lauf ü"
    _img(run / "imgs" / "a.png", (5, 6, 7))
    resp = ("<think><element>e</element><human>h</human><context>c</context><interaction>i</interaction>"
            "<analysis>a</analysis></think><answer>awe</answer>")
    row = {"id": "g1", "subtask": "FI-8", "label": "awe", "image": "imgs/a.png",
           "messages": [{"role": "user", "content": "<image>Which emotion?"}], "response": resp,
           "logprobs": [-0.1, -0.2], "token_ids": [1, 2]}
    (run / "gen.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    res = label_generations(Path("lauf ü/gen.jsonl"), Path("out/s2.parquet"), plot=False, pixel_bounds=None)
    assert res.kept == 1, res.reasons
    main(["stage2", "label", "lauf ü/gen.jsonl", "--out", "out/s3.parquet", "--processor-pixels", "--no-plot"])
    assert "kept 1 of 1" in capsys.readouterr().err


def test_cot_judge_kept_manifest_resolves_the_verdicts_images(tmp_path: Path, monkeypatch) -> None:
    """`cot judge --kept` in another folder: the kept manifest names the images the verdicts
    file named (relative to its folder), by the rule."""
    from emocaliber_rl.data.cot_run import write_kept
    from emocaliber_rl.data.records import read_manifest

    cot = tmp_path / "cot ç"
    _img(cot / "imgs" / "a.png", (9, 8, 7))
    verdict = {"id": "v1", "subtask": "FI-8", "image": "imgs/a.png", "label": "awe", "passed": True,
               "response": "r", "steps": {"element": "e"}}
    (cot / "verdicts.jsonl").write_text(json.dumps(verdict) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert write_kept(Path("cot ç/verdicts.jsonl"), Path("kept dir/kept.jsonl")) == (1, 1)
    kept = read_manifest(tmp_path / "kept dir" / "kept.jsonl")
    assert Path(kept[0].image).resolve() == (cot / "imgs" / "a.png").resolve()
