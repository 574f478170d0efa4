"""Damaged input files: every command names file, line and field, and exits 2; none shows a bare
``UnicodeDecodeError`` or traceback (issue 13, "one input-reading path")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emocaliber_rl.cli import main
from emocaliber_rl.jsonl import InputFileError, iter_jsonl, read_jsonl
from tests.conftest import draw_image, png_bytes


def _pred_row(i: int) -> dict:
    return {"id": f"r{i}", "subtask": "FI-2", "label": "positive", "candidates": ["positive", "negative"],
            "response": "<answer>positive</answer><confidence>0.9</confidence>"}


def _lines(path: Path, rows: list[dict], *, bad_line: bytes | None = None, at: int = 1) -> Path:
    """jsonl of ``rows``; ``bad_line`` (raw bytes) inserted as 1-based line ``at + 1``."""
    raw = [json.dumps(r).encode() + b"\n" for r in rows]
    if bad_line is not None:
        raw.insert(at, bad_line + b"\n")
    path.write_bytes(b"".join(raw))
    return path


# A real-world damage: one Latin-1 byte (0xe9, "é" in Latin-1) in a UTF-8 file (an old-format row,
# `task` for `subtask`; the columns the tests expect count its bytes).
LATIN1_LINE = b'{"id": "x", "task": "FI-2", "label": "positive", "response": "caf\xe9"}'


def test_reader_names_line_and_byte_of_a_non_utf8_line(tmp_path: Path) -> None:
    p = _lines(tmp_path / "a.jsonl", [{"id": 1}, {"id": 2}], bad_line=LATIN1_LINE, at=1)
    got = list(iter_jsonl(p))
    assert [(n, obj) for n, obj, _ in got] == [(1, {"id": 1}), (2, None), (3, {"id": 2})]
    # the byte sits at column 66 of line 2 (1-based): the 65 bytes before it are {"id": "x", ... "caf
    assert got[1][2] == "not UTF-8 text: byte 0xe9 at column 66 (save the file as UTF-8)"
    with pytest.raises(InputFileError, match=r"a\.jsonl:2: not UTF-8 text: byte 0xe9"):
        list(read_jsonl(p))


def test_reader_refuses_binary_files_and_non_objects(tmp_path: Path) -> None:
    png = tmp_path / "picture.jsonl"
    png.write_bytes(png_bytes(draw_image(0)))
    # PNG: the signature 89 50 4e 47 0d 0a 1a 0a, then IHDR's length 00 00 00 0d. Split at
    # newlines: line 1 = "\x89PNG\r\n", line 2 = "\x1a\n", line 3 starts with the NULs.
    with pytest.raises(InputFileError, match=r"picture\.jsonl:3: binary data \(NUL byte at column 1\)"):
        list(iter_jsonl(png))
    arr = _lines(tmp_path / "arr.jsonl", [{"id": 1}])
    arr.write_text(arr.read_text() + "[1, 2]\n")
    with pytest.raises(InputFileError, match=r"arr\.jsonl:2: expected a JSON object, got list"):
        list(read_jsonl(arr))
    with pytest.raises(InputFileError, match=r"nope\.jsonl: no such file"):
        list(iter_jsonl(tmp_path / "nope.jsonl"))


def test_eval_score_non_utf8_and_binary_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pred = _lines(tmp_path / "pred.jsonl", [_pred_row(0), _pred_row(1)], bad_line=LATIN1_LINE, at=1)
    assert main(["eval", "score", str(pred)]) == 2
    err = capsys.readouterr().err
    assert f"{pred}:2: not UTF-8 text: byte 0xe9 at column 66" in err
    assert "Traceback" not in err and "UnicodeDecodeError" not in err
    binary = tmp_path / "pred.bin"
    binary.write_bytes(png_bytes(draw_image(1)))
    assert main(["eval", "score", str(binary)]) == 2
    assert f"{binary}:3: binary data" in capsys.readouterr().err


def _manifest_rows(tmp: Path, n: int = 3) -> list[dict]:
    rows = []
    for i in range(n):
        img = tmp / f"m{i}.png"
        draw_image(i).save(img)
        rows.append({"id": f"m{i}", "subtask": "FI-8", "group": "ID VER", "image": str(img),
                     "label": "awe", "response": None})
    return rows


@pytest.mark.parametrize("kind", ["eval", "prompts2", "rl3"])
def test_export_reports_a_non_utf8_line_and_refuses_a_binary_file(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture
) -> None:
    src = _lines(tmp_path / "in.jsonl", _manifest_rows(tmp_path), bad_line=LATIN1_LINE, at=2)
    out = tmp_path / ("out.parquet" if kind == "rl3" else "out.jsonl")
    assert main(["export", kind, str(src), "-o", str(out)]) == 3  # written, the bad line left out
    report = [json.loads(x) for x in out.with_name(out.name + ".report.jsonl").read_text().splitlines()]
    assert [(r["line"], r["kind"]) for r in report] == [(3, "bad_json")]
    assert "not UTF-8 text: byte 0xe9" in report[0]["detail"]
    binary = tmp_path / "in.bin"
    binary.write_bytes(png_bytes(draw_image(2)))
    assert main(["export", kind, str(binary), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{binary}:3: binary data" in err and "Traceback" not in err


def test_export_sft1_binary_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    binary = tmp_path / "in.jsonl"
    binary.write_bytes(b"PAR1\x15\x04\x15\x00")  # the first bytes of a parquet file
    assert main(["export", "sft1", str(binary), "-o", str(tmp_path / "o.parquet")]) == 2
    assert f"{binary}:1: binary data (NUL byte at column 8)" in capsys.readouterr().err


def test_stage2_label_non_utf8_line_is_a_named_reject_and_binary_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    gen = _lines(tmp_path / "gen.jsonl", [{"id": "a"}], bad_line=LATIN1_LINE, at=1)
    out = tmp_path / "s2.parquet"
    assert main(["stage2", "label", str(gen), "--out", str(out), "--no-plot"]) == 1  # nothing kept
    rejects = [json.loads(x) for x in (tmp_path / "s2.parquet.rejects.jsonl").read_text().splitlines()]
    assert {r["line"]: r["reason"] for r in rejects} == {1: "missing_field", 2: "bad_json"}
    assert "byte 0xe9 at column 66" in rejects[1]["detail"]
    binary = tmp_path / "gen.bin"
    binary.write_bytes(png_bytes(draw_image(3)))
    assert main(["stage2", "label", str(binary), "--out", str(out), "--no-plot"]) == 2
    assert f"{binary}:3: binary data" in capsys.readouterr().err


def test_manifest_readers_name_line_and_field(tmp_path: Path) -> None:
    from emocaliber_rl.data.records import read_manifest
    from emocaliber_rl.inference.eval_run import read_eval_manifest
    from emocaliber_rl.stage2 import read_prompt_set

    rows = _manifest_rows(tmp_path, 2)
    bad = _lines(tmp_path / "m.jsonl", rows + [{**rows[0], "id": "z", "label": "joy"}])
    with pytest.raises(InputFileError, match=r"m\.jsonl:3: .*joy"):
        read_manifest(bad)
    ev = _lines(tmp_path / "ev.jsonl", [{"id": "e", "subtask": "FI-9", "image": "x.png", "label": "awe"}])
    with pytest.raises(InputFileError, match=r"ev\.jsonl:1: field 'subtask': .*FI-9"):
        read_eval_manifest(ev)
    pr = _lines(tmp_path / "p.jsonl", [{"id": "p", "subtask": "FI-9", "image": "x.png", "label": "awe",
                                        "messages": []}])
    with pytest.raises(InputFileError, match=r"p\.jsonl:1: field 'subtask': .*FI-9"):
        read_prompt_set(pr)


# ----------------------------------------------------------------------------------------------
# Row consistency: token lists, duplicate ids, unknown subtasks


def _gen_row(rid: str, img: Path, n_logprobs: int, n_ids: int, **extra) -> dict:
    return {"id": rid, "subtask": "FI-8", "label": "awe", "response": "<answer>awe</answer>",
            "logprobs": [-0.1] * n_logprobs, "token_ids": list(range(n_ids)), "image": str(img),
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "<image>q"}],
            **extra}


def test_stage2_label_rejects_logprobs_shorter_than_token_ids(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    img = tmp_path / "a.png"
    draw_image(0).save(img)
    gen = _lines(tmp_path / "gen.jsonl", [_gen_row("ok", img, 33, 33), _gen_row("cut", img, 3, 33)])
    out = tmp_path / "s2.parquet"
    assert main(["stage2", "label", str(gen), "--out", str(out), "--no-plot"]) == 3  # 1 row left out
    assert "  token_mismatch: 1" in capsys.readouterr().err
    rejects = [json.loads(x) for x in (tmp_path / "s2.parquet.rejects.jsonl").read_text().splitlines()]
    assert rejects == [{"line": 2, "id": "cut", "reason": "token_mismatch",
                        "detail": "3 logprobs for 33 token_ids"}]


def test_stage2_label_duplicates_and_mixed_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    img = tmp_path / "a.png"
    draw_image(0).save(img)
    gen = _lines(tmp_path / "gen.jsonl", [_gen_row("a", img, 2, 2), _gen_row("a", img, 2, 2)])
    out = tmp_path / "s2.parquet"
    assert main(["stage2", "label", str(gen), "--out", str(out), "--no-plot"]) == 3  # 1 row left out
    assert "  duplicate_id: 1" in capsys.readouterr().err
    assert main(["stage2", "label", str(gen), "--out", str(out), "--no-plot", "--duplicates", "error"]) == 2
    assert f"{gen}:2: field 'id': 'a' already at line 1" in capsys.readouterr().err
    mixed = _lines(tmp_path / "mixed.jsonl", [_gen_row("a", img, 2, 2, run_id="r1"),
                                              _gen_row("b", img, 2, 2, run_id="r2")])
    assert main(["stage2", "label", str(mixed), "--out", str(out), "--no-plot"]) == 2
    assert f"{mixed}:2: field 'run_id': \"r2\" differs from \"r1\" at line 1" in capsys.readouterr().err


def test_eval_score_duplicate_ids(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    wrong = {**_pred_row(1), "response": "<answer>negative</answer><confidence>0.9</confidence>"}
    pred = _lines(tmp_path / "pred.jsonl", [_pred_row(0), _pred_row(0), wrong])
    assert main(["eval", "score", str(pred)]) == 2
    assert f"{pred}:2: field 'id': 'r0' already at line 1" in capsys.readouterr().err
    out = tmp_path / "s.json"
    assert main(["eval", "score", str(pred), "--duplicates", "first", "--json", str(out)]) == 3  # 1 left out
    assert "1 rows repeat an earlier id and were left out" in capsys.readouterr().err
    scores = json.loads(out.read_text())
    # two samples left: r0 right, r1 wrong -> accuracy 1/2 (with the repeat it would be 2/3)
    assert scores["tasks"]["FI-2"]["n"] == 2 and scores["tasks"]["FI-2"]["acc"] == 0.5
    assert scores["meta"]["n_duplicates_dropped"] == 1


def test_stage2_generate_refuses_unknown_subtask_before_the_model(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    img = tmp_path / "a.png"
    draw_image(0).save(img)
    prompts = _lines(tmp_path / "p.jsonl", [
        {"id": "p0", "subtask": "FI-8", "image": str(img), "label": "awe", "messages": []},
        {"id": "p1", "subtask": "FI-9", "image": str(img), "label": "awe", "messages": []}])
    out = tmp_path / "gen.jsonl"
    assert main(["stage2", "generate", "--backend", "hf", "--processor-pixels", "--model", str(tiny_model_dir),
                 "--prompts", str(prompts), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{prompts}:2: field 'subtask':" in err and "FI-9" in err
    assert not out.exists()


# ----------------------------------------------------------------------------------------------
# Missing images and models


def test_missing_image_is_a_reported_skip_and_a_rerun_fills_it_in(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    from emocaliber_rl.data.exports import export_prompts_stage2
    from emocaliber_rl.data.records import Record
    from tests.inference_helpers import one_thread

    recs = []
    for i in range(3):
        draw_image(i).save(tmp_path / f"{i}.png")
        recs.append(Record.make(f"p{i}", "FI-8", tmp_path / f"{i}.png", "awe"))
    prompts = export_prompts_stage2(recs, tmp_path / "prompts.jsonl").path
    gone = tmp_path / "1.png"
    gone.rename(tmp_path / "1.png.away")
    out = tmp_path / "gen.jsonl"
    cmd = ["stage2", "generate", "--backend", "hf", "--processor-pixels", "--model", str(tiny_model_dir), "--prompts",
           str(prompts), "--out", str(out), "--max-new-tokens", "4", "--batch-size", "3",
           "--dtype", "float32", "--no-progress"]
    with one_thread():
        assert main(cmd) == 3
    err = capsys.readouterr().err
    assert f"stage2 generate: skipped p1: image {gone}: no such file" in err
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["p0", "p2"]  # batch kept
    errors = [json.loads(x) for x in (tmp_path / "gen.jsonl.errors.jsonl").read_text().splitlines()]
    assert [(e["id"], e["error"]) for e in errors] == [("p1", f"image {gone}: no such file")]
    (tmp_path / "1.png.away").rename(gone)
    with one_thread():
        assert main(cmd) == 0
    assert sorted(json.loads(x)["id"] for x in out.read_text().splitlines()) == ["p0", "p1", "p2"]


def test_eval_run_undecodable_image_is_skipped(tmp_path: Path, tiny_model_dir: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    from emocaliber_rl.data.exports import export_eval_manifest
    from emocaliber_rl.data.records import Record
    from tests.inference_helpers import one_thread

    recs = []
    for i in range(2):
        draw_image(20 + i).save(tmp_path / f"{i}.png")
        recs.append(Record.make(f"t{i}", "FI-2", tmp_path / f"{i}.png", "positive"))
    manifest = export_eval_manifest(recs, tmp_path / "test.eval.jsonl").path
    (tmp_path / "0.png").write_bytes(b"not a picture")  # damaged after export
    out = tmp_path / "pred.jsonl"
    with one_thread():
        assert main(["eval", "run", "--backend", "hf", "--processor-pixels", "--model", str(tiny_model_dir), "--manifest",
                     str(manifest), "--out", str(out), "--max-new-tokens", "4", "--dtype",
                     "float32", "--no-progress"]) == 3
    assert f"eval run: skipped t0: image {tmp_path / '0.png'}: cannot decode" in capsys.readouterr().err
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["t1"]


@pytest.mark.parametrize("cmd", ["stage2", "eval"])
def test_model_that_is_not_a_folder_is_refused_before_any_engine(
    tmp_path: Path, cmd: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_engine(*a, **k):
        raise AssertionError("an engine was started")

    monkeypatch.setattr("emocaliber_rl.inference.backends.make_engine", no_engine)
    img = tmp_path / "a.png"
    draw_image(0).save(img)
    if cmd == "stage2":
        src = _lines(tmp_path / "p.jsonl", [{"id": "p", "subtask": "FI-8", "image": str(img),
                                             "label": "awe", "messages": []}])
        base = ["stage2", "generate", "--prompts", str(src), "--out", str(tmp_path / "o.jsonl")]
    else:
        src = _lines(tmp_path / "m.jsonl", [{"id": "e", "subtask": "FI-8", "image": str(img), "label": "awe"}])
        base = ["eval", "run", "--manifest", str(src), "--out", str(tmp_path / "o.jsonl")]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "empty-model").mkdir()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for model, message in [
        (str(tmp_path / "no-such-model"), f"--model {tmp_path / 'no-such-model'}: no such folder"),
        # online, but models/ is a folder here: a mistyped path, not a hub id
        ("models/base", "--model models/base: no such folder (and models/ is a local folder"),
        ("empty-model", "--model empty-model: the folder has no config.json"),
    ]:
        assert main([*base, "--backend", "hf", "--processor-pixels", "--model", model]) == 2
        assert message in capsys.readouterr().err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main([*base, "--backend", "hf", "--processor-pixels", "--model", "nobody/no-such-model"]) == 2
    assert "--model nobody/no-such-model: no such folder, and not in the local hub cache" in (
        capsys.readouterr().err)
    assert not (tmp_path / "o.jsonl").exists()


# ----------------------------------------------------------------------------------------------
# Exit codes that mean something


def _published(tmp: Path, images: list[str]) -> Path:
    rows = [{"task": "FI-8", "ground_truth": "awe", "images": [img],
             "conversations": [{"from": "human", "value": "<image>Which emotion?"},
                               {"from": "gpt", "value": "<answer>awe</answer>"}]} for img in images]
    return _lines(tmp / "test_8k.jsonl", rows)


@pytest.mark.parametrize("no_hash", [False, True])
def test_bench_import_with_no_image_found_exits_1_and_suggests_path_map(
    tmp_path: Path, no_hash: bool, capsys: pytest.CaptureFixture
) -> None:
    # the published file names images by absolute paths on its authors' machine
    src = _published(tmp_path, ["/mnt/data/vecbench/FI/a.jpg", "/mnt/data/vecbench/FI/b.jpg"])
    out = tmp_path / "test.jsonl"
    args = ["bench", "import", str(src), "-o", str(out), "--workers", "1", "--no-progress"]
    assert main(args + (["--no-hash"] if no_hash else [])) == 1
    err = capsys.readouterr().err
    assert "error: no records written to" in err and "2 images were not found" in err
    assert "--path-map OLD=NEW" in err and "e.g. /mnt/data/vecbench/FI/a.jpg" in err
    assert "no problems" not in err
    # the hint works: mapping the prefix onto a local copy imports both rows
    local = tmp_path / "copy" / "FI"
    local.mkdir(parents=True)
    draw_image(0).save(local / "a.jpg")
    draw_image(1).save(local / "b.jpg")
    assert main(args + (["--no-hash"] if no_hash else [])
                + ["--path-map", f"/mnt/data/vecbench={tmp_path / 'copy'}"]) == 0
    assert len(out.read_text().splitlines()) == 2


def test_bench_import_no_hash_still_reports_a_missing_image(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    draw_image(0).save(tmp_path / "a.jpg")
    src = _published(tmp_path, ["a.jpg", "gone.jpg"])
    out = tmp_path / "test.jsonl"
    assert main(["bench", "import", str(src), "-o", str(out), "--no-hash", "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert f"{src}:2" in err and "image_missing" in err and "no problems" not in err
    # stored relative to the manifest's folder, where the image is (the one path rule)
    assert [json.loads(x)["image"] for x in out.read_text().splitlines()] == ["a.jpg"]


@pytest.mark.parametrize("kind", ["eval", "prompts2", "rl3", "sft1"])
def test_export_writing_zero_rows_exits_1(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture) -> None:
    rows = [{"id": "m0", "subtask": "FI-8", "image": "/elsewhere/m0.png", "label": "awe",
             "response": "<answer>awe</answer>"}]
    src = _lines(tmp_path / "in.jsonl", rows)
    out = tmp_path / ("out.parquet" if kind in ("rl3", "sft1") else "out.jsonl")
    assert main(["export", kind, str(src), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"error: no rows written to {out}" in err and "--path-map OLD=NEW" in err


# ----------------------------------------------------------------------------------------------
# CoT synthesis honesty


def _synth_inputs(tmp: Path, n: int = 5) -> Path:
    from emocaliber_rl.data.records import Record, write_manifest
    from emocaliber_rl.data.synthetic import draw_image as synth_image

    src = tmp / "train.jsonl"
    write_manifest(src, [Record.make(f"r{i}", "FI-8", synth_image(tmp / f"{i}.jpg", i), "awe")
                         for i in range(n)])
    return src


def test_cot_synthesize_without_key_is_an_error_unless_no_auth(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emocaliber_rl.data.chat_server import ServerConfig, ServerThread

    monkeypatch.delenv("EMOCALIBER_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    src = _synth_inputs(tmp_path, 2)
    out = tmp_path / "synth.jsonl"
    with ServerThread(ServerConfig()) as server:
        base = ["cot", "synthesize", str(src), "-o", str(out), "--base-url", server.url,
                "--model", "teacher", "--no-progress"]
        assert main(base) == 2
        err = capsys.readouterr().err
        assert "error: no API key: set EMOCALIBER_API_KEY or OPENAI_API_KEY" in err
        assert "--no-auth" in err
        assert sum(server.state.counts.values()) == 0 and not out.exists()
        assert main([*base, "--no-auth"]) == 0
        err = capsys.readouterr().err
        assert "warning: no API key (EMOCALIBER_API_KEY or OPENAI_API_KEY unset): requests go " \
               "without an Authorization header" in err
        assert sum(server.state.counts.values()) == 2


def test_cot_progress_counts_failures_and_cost_needs_prices(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emocaliber_rl.data.chat_server import ServerConfig, ServerThread

    monkeypatch.setenv("EMOCALIBER_API_KEY", "sk-test")
    src = _synth_inputs(tmp_path, 5)
    # 400 is not retried: every record fails for good
    with ServerThread(ServerConfig(default_script=["400"])) as server:
        args = ["cot", "synthesize", str(src), "-o", str(tmp_path / "a.jsonl"), "--base-url",
                server.url, "--model", "teacher"]
        assert main(args) == 3
    err = capsys.readouterr().err
    assert "done=0, failed=5" in err  # the bar's postfix: 5/5 processed is not 5 done
    assert "0 finished this run" in err and "5 failed" in err
    assert " out = " not in err and "(no cost: give --price-in/--price-out per 1M tokens)" in err
    with ServerThread(ServerConfig()) as server:
        args = ["cot", "synthesize", str(src), "-o", str(tmp_path / "b.jsonl"), "--base-url",
                server.url, "--model", "teacher", "--no-progress", "--price-in", "1", "--price-out", "2"]
        assert main(args) == 0
    err = capsys.readouterr().err
    assert "done=" not in err and " out = 0.00" in err and "no cost" not in err


def test_cot_judge_with_no_rows_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOCALIBER_API_KEY", "sk-test")
    empty = tmp_path / "synth.jsonl"
    empty.write_text("")
    # no server: nothing may be sent
    assert main(["cot", "judge", str(empty), "-o", str(tmp_path / "v.jsonl"), "--base-url",
                 "http://127.0.0.1:9/v1", "--model", "judge", "--no-progress"]) == 1
    assert f"error: no synthesized rows in {empty}" in capsys.readouterr().err


def test_cot_config_with_invalid_json_names_its_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tmp_path / "client.json"
    cfg.write_text('{\n  "model": "teacher",\n  "concurrency": 8,\n}\n')  # trailing comma
    src = _synth_inputs(tmp_path, 1)
    assert main(["cot", "synthesize", str(src), "-o", str(tmp_path / "o.jsonl"), "--config", str(cfg)]) == 2
    assert f"{cfg}:4: invalid JSON: Expecting property name enclosed in double quotes" in (
        capsys.readouterr().err)


def test_cot_output_damaged_in_the_middle_or_being_written_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CoT store follows the append log's one policy (it used to skip a damaged middle line
    silently and take no lock): exit 2 naming the line, nothing sent, the file left as it is."""
    from emocaliber_rl.data.chat_server import ServerConfig, ServerThread
    from emocaliber_rl.jsonl import AppendLog

    monkeypatch.setenv("EMOCALIBER_API_KEY", "sk-test")
    src = _synth_inputs(tmp_path, 3)
    out = tmp_path / "synth.jsonl"
    with ServerThread(ServerConfig()) as server:
        args = ["cot", "synthesize", str(src), "-o", str(out), "--base-url", server.url,
                "--model", "teacher", "--no-progress"]
        assert main(args) == 0
        good = out.read_bytes().splitlines(keepends=True)
        damaged = good[0] + b"not json\n" + b"".join(good[2:])
        out.write_bytes(damaged)
        sent = sum(server.state.counts.values())
        assert main(args) == 2
        assert (f"error: {out}:2: invalid JSON: Expecting value (column 1), and lines follow it"
                in capsys.readouterr().err)
        assert main(["cot", "judge", str(out), "-o", str(tmp_path / "v.jsonl"), "--base-url",
                     server.url, "--model", "judge", "--no-progress"]) == 2
        assert f"error: {out}:2: invalid JSON" in capsys.readouterr().err
        assert sum(server.state.counts.values()) == sent and out.read_bytes() == damaged

        out.write_bytes(b"".join(good[:2]))  # repaired by hand, one record short
        with AppendLog(out):  # another writer holds the output
            assert main(args) == 2
            assert f"error: {out} is being written by another process" in capsys.readouterr().err
        assert sum(server.state.counts.values()) == sent
        assert main(args) == 0  # released: the missing record is synthesized
        assert sum(server.state.counts.values()) == sent + 1
