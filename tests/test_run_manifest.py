"""Run manifests (issue 13): a resumed output continues only the run that started it.

`stage2 generate` and `eval run` with the tiny model (HF backend), `cot synthesize` against the
package's local chat server: a rerun with another model or temperature is refused with a
message naming the setting, `--force-new` moves the old run aside and starts a new one, every
row carries the run id, and `eval score` refuses a file that mixes two runs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from emocaliber_rl.cli import main
from emocaliber_rl.run_manifest import RunMismatchError, manifest_path, open_run
from tests.conftest import draw_image
from tests.inference_helpers import one_thread


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_open_run_rule(tmp_path: Path) -> None:
    out = tmp_path / "gen.jsonl"
    settings = {"model": {"path": "/m", "config_sha256": "ab"}, "sampling": {"temperature": 0.7}}
    rid, notes = open_run(out, "stage2 generate", settings)
    man = json.loads(manifest_path(out).read_text())
    assert man["run_id"] == rid and man["settings"] == settings and notes == []
    out.write_text(json.dumps({"id": "a", "run_id": rid}) + "\n")
    assert open_run(out, "stage2 generate", settings)[0] == rid  # same settings: resumed
    other = {**settings, "sampling": {"temperature": 0.1}}
    with pytest.raises(RunMismatchError) as e:
        open_run(out, "stage2 generate", other)
    assert "sampling.temperature: 0.7 recorded, 0.1 now" in str(e.value)
    assert "--force-new" in str(e.value)
    with pytest.raises(RunMismatchError, match=r'kind: "stage2 generate" recorded, "eval run" now'):
        open_run(out, "eval run", settings)
    rid2, notes = open_run(out, "stage2 generate", other, force_new=True)
    archived = tmp_path / f"gen.{rid}.jsonl"
    assert rid2 != rid and notes == [f"--force-new: moved the previous run to {archived}"]
    assert _rows(archived) == [{"id": "a", "run_id": rid}]  # nothing deleted
    assert json.loads(manifest_path(archived).read_text())["run_id"] == rid
    assert not out.exists() and json.loads(manifest_path(out).read_text())["run_id"] == rid2
    from emocaliber_rl.inference.resumable import ResumableJsonl

    out.write_text(json.dumps({"id": "a", "run_id": rid2}) + "\n")
    with ResumableJsonl(out), pytest.raises(RunMismatchError, match="being written by another process"):
        open_run(out, "stage2 generate", other, force_new=True)  # a writer holds it: not moved
    # --force-new with unchanged settings is a new run too (a checkpoint retrained in place)
    out.write_text(json.dumps({"id": "b", "run_id": rid2}) + "\n")
    rid3, _ = open_run(out, "stage2 generate", other, force_new=True)
    assert rid3 not in (rid, rid2) and _rows(tmp_path / f"gen.{rid2}.jsonl") == [{"id": "b", "run_id": rid2}]


def test_rows_without_manifest_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "old.jsonl"
    out.write_text('{"id": "a"}\n')
    with pytest.raises(RunMismatchError, match=r"old\.jsonl has rows but no run manifest"):
        open_run(out, "eval run", {})
    out.write_text("\n")  # an empty (or blank) file is a fresh output
    rid = open_run(out, "eval run", {})[0]
    # ... and so is one whose run wrote no row yet, whatever its manifest says
    rid2 = open_run(out, "eval run", {"sampling": {"temperature": 0.1}})[0]
    assert rid2 != rid and json.loads(manifest_path(out).read_text())["run_id"] == rid2


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from emocaliber_rl.data.exports import export_prompts_stage2
    from emocaliber_rl.data.records import Record

    d = tmp_path_factory.mktemp("prompts")
    recs = []
    for i in range(3):
        draw_image(i).save(d / f"{i}.png")
        recs.append(Record.make(f"p{i}", "FI-8", d / f"{i}.png", "awe"))
    return export_prompts_stage2(recs, d / "prompts.jsonl").path


def _gen(model: Path, prompts: Path, out: Path, *extra: str) -> int:
    with one_thread():
        return main(["stage2", "generate", "--backend", "hf", "--processor-pixels", "--model", str(model), "--prompts",
                     str(prompts), "--out", str(out), "--max-new-tokens", "4", "--batch-size", "3",
                     "--dtype", "float32", "--no-progress", *extra])


def test_stage2_generate_resume_refuses_other_settings(
    tmp_path: Path, tiny_model_dir: Path, prompts: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "gen.jsonl"
    assert _gen(tiny_model_dir, prompts, out, "--limit", "2") == 0
    first = _rows(out)
    rid = first[0]["run_id"]
    assert len(first) == 2 and {r["run_id"] for r in first} == {rid}
    man = json.loads(manifest_path(out).read_text())
    assert man["run_id"] == rid and man["kind"] == "stage2 generate"
    assert man["settings"]["sampling"] == {"temperature": 0.7, "top_p": 1.0, "max_new_tokens": 4,
                                           "seed": 0, "n": 1}
    assert man["settings"]["model"]["path"] == str(tiny_model_dir.resolve())
    assert len(man["settings"]["model"]["config_sha256"]) == 64
    assert man["settings"]["engine"] == {"backend": "hf", "dtype": "float32", "pixel_bounds": None}
    assert man["settings"]["prompts"]["path"] == str(prompts.resolve())
    capsys.readouterr()

    before = out.read_bytes()
    assert _gen(tiny_model_dir, prompts, out, "--temperature", "0.2") == 2
    err = capsys.readouterr().err
    assert f"{out} belongs to run {rid} with other settings" in err
    assert "sampling.temperature: 0.7 recorded, 0.2 now" in err and "--force-new" in err
    other_model = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other_model)
    assert _gen(other_model, prompts, out) == 2
    assert f'model.path: "{tiny_model_dir.resolve()}" recorded, "{other_model.resolve()}" now' in (
        capsys.readouterr().err)
    assert out.read_bytes() == before  # refused runs write nothing

    assert _gen(tiny_model_dir, prompts, out) == 0  # same settings, --limit lifted: resumed
    rows = _rows(out)
    assert [r["id"] for r in rows] == ["p0", "p1", "p2"] and {r["run_id"] for r in rows} == {rid}

    assert _gen(tiny_model_dir, prompts, out, "--temperature", "0.2", "--force-new") == 0
    new = _rows(out)
    assert len(new) == 3 and new[0]["run_id"] != rid and {r["temperature"] for r in new} == {0.2}
    assert _rows(tmp_path / f"gen.{rid}.jsonl") == rows
    assert f"moved the previous run to {tmp_path / f'gen.{rid}.jsonl'}" in capsys.readouterr().err


def test_eval_run_resume_and_eval_score_refuses_mixed_runs(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    from emocaliber_rl.data.exports import export_eval_manifest
    from emocaliber_rl.data.records import Record

    recs = []
    for i in range(2):
        draw_image(10 + i).save(tmp_path / f"{i}.png")
        recs.append(Record.make(f"t{i}", "FI-2", tmp_path / f"{i}.png", "positive"))
    manifest = export_eval_manifest(recs, tmp_path / "test.eval.jsonl").path
    out = tmp_path / "pred.jsonl"

    def run(*extra: str) -> int:
        with one_thread():
            return main(["eval", "run", "--backend", "hf", "--processor-pixels", "--model", str(tiny_model_dir),
                         "--manifest", str(manifest), "--out", str(out), "--max-new-tokens", "4",
                         "--dtype", "float32", "--no-progress", *extra])

    assert run() == 0
    rows = _rows(out)
    rid = rows[0]["run_id"]
    assert {r["run_id"] for r in rows} == {rid}
    assert {r["model"] for r in rows} == {str(tiny_model_dir)}
    capsys.readouterr()
    assert run("--temperature", "0.1") == 2
    assert "sampling.temperature: 0.7 recorded, 0.1 now" in capsys.readouterr().err
    assert run("--ask-confidence") == 2
    assert "ask_confidence: null recorded, true now" in capsys.readouterr().err

    assert run("--temperature", "0.1", "--force-new") == 0
    new = _rows(out)
    mixed = tmp_path / "mixed.jsonl"
    # the hand-made mix the issue found: rows of two runs in one file (a second sample id so
    # that only the run check can object)
    mixed.write_text(json.dumps(rows[0]) + "\n" + json.dumps({**new[1], "id": "t9"}) + "\n")
    capsys.readouterr()
    assert main(["eval", "score", str(mixed)]) == 2
    err = capsys.readouterr().err
    assert (f'{mixed}:2: field \'run_id\': "{new[1]["run_id"]}" differs from "{rid}" at line 1: '
            "the file mixes rows of different runs") in err
    assert main(["eval", "score", str(out)]) == 0  # one run: scored
    from emocaliber_rl.evaluation.scoring import PredictionFileError, read_samples

    with pytest.raises(PredictionFileError, match=r"mixed\.jsonl:2: field 'run_id'"):
        read_samples(mixed)  # what `eval report` reads


def test_cot_synthesize_resume_refuses_other_settings(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from emocaliber_rl.data.chat_server import ServerConfig, ServerThread
    from emocaliber_rl.data.records import Record, write_manifest
    from emocaliber_rl.data.synthetic import draw_image as synth_image

    recs = [Record.make(f"r{i}", "FI-8", synth_image(tmp_path / f"{i}.jpg", i), "awe") for i in range(3)]
    src = tmp_path / "train.jsonl"
    write_manifest(src, recs)
    out = tmp_path / "synth.jsonl"
    monkeypatch.setenv("EMOCALIBER_API_KEY", "sk-test-key")
    with ServerThread(ServerConfig()) as server:
        def run(*extra: str) -> int:
            return main(["cot", "synthesize", str(src), "-o", str(out), "--base-url", server.url,
                         "--model", "teacher", "--no-progress", *extra])

        assert run() == 0
        rows = _rows(out)
        rid = rows[0]["run_id"]
        assert len(rows) == 3 and {r["run_id"] for r in rows} == {rid}
        assert json.loads(manifest_path(out).read_text())["settings"]["model"] == {"path": "teacher"}
        capsys.readouterr()
        assert run("--temperature", "0.2") == 2
        assert "sampling.temperature: 0.7 recorded, 0.2 now" in capsys.readouterr().err
        assert run("--model", "other-teacher") == 2
        assert 'model.path: "teacher" recorded, "other-teacher" now' in capsys.readouterr().err
        assert run("--model", "other-teacher", "--force-new") == 0
    new = _rows(out)
    assert len(new) == 3 and new[0]["run_id"] != rid
    assert json.loads(manifest_path(out).read_text())["settings"]["model"] == {"path": "other-teacher"}
    assert _rows(tmp_path / f"synth.{rid}.jsonl") == rows
