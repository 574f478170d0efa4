"""One line instead of a traceback, a non-zero exit and no partial output (issue 34, item 5):
output paths of the wrong kind, bad --ratios, a non-UTF-8 file name, an image the world did not
draw, Ctrl-C in `cot synthesize`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emocaliber_rl.cli import main
from tests.conftest import REPO_ROOT, draw_image


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _one_error_line(err: str) -> str:
    """The whole of stderr: exactly one line, an ``error:`` and no traceback."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _manifest(tmp: Path) -> Path:
    draw_image(0).save(tmp / "m0.png")
    return _write(tmp / "manifest.jsonl", [{"id": "m0", "subtask": "FI-8", "group": "ID VER",
                                            "image": str(tmp / "m0.png"), "label": "awe",
                                            "response": "<answer>awe</answer>"}])


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("kind", ["eval", "prompts2", "rl3", "sft1"])
def test_export_to_a_folder_is_one_line(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture) -> None:
    src = _manifest(tmp_path)
    folder = tmp_path / "out"
    folder.mkdir()
    before = _files(tmp_path)
    assert main(["export", kind, str(src), "-o", str(folder)]) == 2
    assert _one_error_line(capsys.readouterr().err) == f"error: -o {folder}: is a folder; give a file name"
    assert _files(tmp_path) == before  # no report, no OUT.tmp


def test_stage2_label_to_a_folder_leaves_no_tmp(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    draw_image(0).save(tmp_path / "a.png")
    gen = _write(tmp_path / "gen.jsonl", [{"id": "a", "subtask": "FI-8", "label": "awe", "image": str(tmp_path / "a.png"),
                                           "response": "<answer>awe</answer>", "logprobs": [-0.1, -0.2],
                                           "token_ids": [1, 2]}])
    folder = tmp_path / "s2.parquet"
    folder.mkdir()
    before = _files(tmp_path)
    assert main(["stage2", "label", str(gen), "--out", str(folder), "--no-plot"]) == 2
    assert "--out" in _one_error_line(capsys.readouterr().err)
    assert _files(tmp_path) == before


def test_eval_score_and_report_outputs_of_the_wrong_kind(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pred = _write(tmp_path / "pred.jsonl", [{"id": "r0", "subtask": "FI-2", "label": "positive",
                                             "candidates": ["positive", "negative"],
                                             "response": "<answer>positive</answer><confidence>0.9</confidence>"}])
    folder = tmp_path / "dir"
    folder.mkdir()
    for flag in ("--json", "--samples"):
        assert main(["eval", "score", str(pred), flag, str(folder)]) == 2
        assert _one_error_line(capsys.readouterr().err) == f"error: {flag} {folder}: is a folder; give a file name"
    run = tmp_path / "run"
    assert main(["eval", "score", str(pred), "--json", str(run / "scores.json"),
                 "--samples", str(run / "samples.jsonl")]) == 0
    capsys.readouterr()
    a_file = tmp_path / "report"
    a_file.write_text("x")
    assert main(["eval", "report", str(run), "--out", str(a_file)]) == 2
    assert "is a file, not a folder" in _one_error_line(capsys.readouterr().err)
    assert a_file.read_text() == "x"


def test_bench_build_and_import_outputs_of_the_wrong_kind(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "FI" / "awe").mkdir(parents=True)
    draw_image(0).save(tmp_path / "FI" / "awe" / "a.jpg")
    a_file = tmp_path / "bench"
    a_file.write_text("x")
    assert main(["bench", "build", "--fi", str(tmp_path / "FI"), "-o", str(a_file), "--no-progress"]) == 2
    assert "is a file, not a folder" in _one_error_line(capsys.readouterr().err)
    src = _write(tmp_path / "pub.jsonl", [{"task": "FI-8", "ground_truth": "awe", "images": [str(tmp_path / "x.png")],
                                           "conversations": [{"from": "human", "value": "<image>?"}]}])
    folder = tmp_path / "imp"
    folder.mkdir()
    assert main(["bench", "import", str(src), "-o", str(folder), "--no-progress"]) == 2
    assert "is a folder" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("ratios", ["a:b:c", "0:0:0", "6:3", "6:-3:1"])
def test_cot_split_bad_ratios(tmp_path: Path, ratios: str, capsys: pytest.CaptureFixture) -> None:
    src = _manifest(tmp_path)
    out = tmp_path / "split"
    assert main(["cot", "split", str(src), "-o", str(out), "--ratios", ratios]) == 2
    assert f"--ratios {ratios!r}" in _one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_bench_build_reports_a_non_utf8_file_name_and_writes_both_manifests(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = tmp_path / "FI"
    for j, emotion in enumerate(("amusement", "awe")):
        (root / emotion).mkdir(parents=True)
        for k in range(3):
            draw_image(10 * j + k).save(root / emotion / f"{emotion}_{k}.jpg")
    # a Latin-1 name: "café.jpg" with the single byte 0xe9
    latin1 = os.fsencode(root / "awe") + b"/caf\xe9.jpg"
    with open(latin1, "wb") as f:
        draw_image(99).save(f, format="JPEG")
    out = tmp_path / "bench"
    assert main(["bench", "build", "--fi", str(root), "-o", str(out), "--test-size", "1", "--workers", "1",
                 "--no-progress", "--no-near-duplicates"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    report = [json.loads(x) for x in (out / "report.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["kind"], r["source"]) for r in report] == [("non_utf8_name", f"{root / 'awe'}/caf\\xe9.jpg")]
    train = (out / "train.jsonl").read_text(encoding="utf-8").splitlines()
    test = (out / "test.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(train) + len(test) == 6  # the six UTF-8-named images, none lost


def test_files_written_together_are_all_or_none(tmp_path: Path) -> None:
    from emocaliber_rl.jsonl import write_jsonl_files

    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    with pytest.raises(UnicodeEncodeError):
        # the second file holds a path Python decoded from a non-UTF-8 name (a surrogate)
        write_jsonl_files({train: [{"id": "a"}], test: [{"id": "b", "image": "caf\udce9.jpg"}]})
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert write_jsonl_files({train: [{"id": "a"}], test: [{"id": "b"}]}) == [1, 1]


def test_world_oracle_with_an_image_not_in_the_scene_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    draw_image(3).save(tmp_path / "stray.png")
    manifest = _write(tmp_path / "test.eval.jsonl", [
        {"id": "e0", "subtask": "FI-8", "image": str(tmp_path / "stray.png"), "label": "awe"}])
    scenes = tmp_path / "scenes.jsonl"
    scenes.write_text("")
    out = tmp_path / "oracle.jsonl"
    assert main(["world", "oracle", "--scenes", str(scenes), "--manifest", str(manifest), "--out", str(out)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {manifest}:1: id 'e0': field 'image': image {tmp_path / 'stray.png'} ")
    assert "is not in the world's scene file" in line
    assert not out.exists()


def _popen_as_foreground_job(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start ``cmd`` with SIGINT's default action, as a terminal's foreground job has it. A suite
    started in the background of a non-interactive shell (``pytest tests &``, nohup) runs with SIGINT
    ignored, and a child inherits that: it never saw the signal, wrote all its rows and exited 0
    (three full suites failed so). Handled rather than ignored in this process while the child
    starts, the signal gets its default action at exec, and the child's Python its handler."""
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_ctrl_c_in_cot_synthesize_is_one_line_and_exit_130(tmp_path: Path) -> None:
    n_rows = 240
    from emocaliber_rl.data.chat_server import ServerConfig, ServerThread
    from emocaliber_rl.data.records import Record, write_manifest
    from emocaliber_rl.data.synthetic import draw_image as draw_file

    recs = [Record.make(f"rec{i:03d}", "WebEmo-25", draw_file(tmp_path / "img" / f"{i}.jpg", i), "irritabilty")
            for i in range(n_rows)]
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, recs)
    out = tmp_path / "synth.jsonl"
    cmd = [sys.executable, "-m", "emocaliber_rl.cli", "cot", "synthesize", str(manifest), "-o", str(out),
           "--base-url", "URL", "--model", "teacher", "--no-auth", "--concurrency", "2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONFAULTHANDLER": "1"}
    # 0.5 s a request, 2 at a time: the rows take ~60 s, so a loaded machine still signals mid-run
    # (40 rows were all written before the signal twice, with a demo and a study sharing the 2 cores;
    # the test interrupts after the fifth row, so the length costs nothing on an idle machine)
    with ServerThread(ServerConfig(delay=0.5)) as server:
        cmd[cmd.index("URL")] = server.url
        proc = _popen_as_foreground_job(cmd, env)
        # a loaded machine can take a minute to import the CLI: wait for rows, not for a fixed time
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and \
                not (out.exists() and out.read_text().count("\n") >= 5):
            time.sleep(0.02)
        assert proc.poll() is None and out.read_text().count("\n") >= 5, "no 5 rows to interrupt after"
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            # SIGABRT makes the child's faulthandler (PYTHONFAULTHANDLER) print every thread's
            # stack, so a failure says where the interrupt was lost and how many rows followed
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate(timeout=60)
            pytest.fail(f"no exit 60 s after SIGINT; {out.read_text().count(chr(10))} of {n_rows} rows written; "
                        f"the child's stacks:\n{err.decode()[-6000:]}")
    assert proc.returncode == 130, err.decode()
    text = err.decode()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert text.strip().splitlines()[-1] == \
        "interrupted: what was committed is kept; rerun the same command to resume"
    rows = [json.loads(x) for x in out.read_text().splitlines()]  # every line whole
    assert 5 <= len(rows) < n_rows and len({r["id"] for r in rows}) == len(rows)
