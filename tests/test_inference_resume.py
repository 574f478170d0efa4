"""Resumable generation output: a run killed with SIGKILL after its first batch and restarted
writes every id exactly once and never rewrites earlier lines; the jsonl writer's recovery
rules (torn tail, garbage in the middle, duplicate ids, one writer at a time)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emocaliber_rl.inference.resumable import OutputLockedError, ResumableJsonl, run_batches
from tests.conftest import REPO_ROOT, draw_image


def _ids(path: Path) -> list[str]:
    return [json.loads(x)["id"] for x in path.read_text().splitlines()]


def test_append_skips_known_ids_and_reopen_resumes(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    with ResumableJsonl(out) as w:
        assert w.append([{"id": "a", "v": 1}, {"id": "b", "v": 2}, {"id": "a", "v": 3}]) == 2
    with ResumableJsonl(out) as w:
        assert w.done == {"a", "b"}
        assert w.append([{"id": "b", "v": 9}, {"id": "c", "v": 4}]) == 1
    assert [json.loads(x) for x in out.read_text().splitlines()] == [
        {"id": "a", "v": 1}, {"id": "b", "v": 2}, {"id": "c", "v": 4}]


@pytest.mark.parametrize("tail", [b'{"id": "c", "v"', b'{"id": "c", "v"\n', b"\x00\x00"])
def test_torn_tail_is_cut_and_earlier_lines_kept(tmp_path: Path, tail: bytes) -> None:
    out = tmp_path / "o.jsonl"
    good = b'{"id": "a"}\n{"id": "b"}\n'
    out.write_bytes(good + tail)
    with ResumableJsonl(out) as w:
        assert w.done == {"a", "b"} and w.torn_bytes == len(tail)
        w.append([{"id": "c"}])
    assert out.read_bytes() == good + b'{"id": "c"}\n'


def test_garbage_in_the_middle_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    out.write_bytes(b'{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ValueError, match=r"o.jsonl:2"):
        ResumableJsonl(out).open()
    assert out.read_bytes() == b'{"id": "a"}\nnot json\n{"id": "b"}\n'


def test_second_writer_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    with ResumableJsonl(out), pytest.raises(OutputLockedError):
        ResumableJsonl(out).open()
    with ResumableJsonl(out) as w:  # released on close
        assert w.done == set()


def test_run_batches_counts(tmp_path: Path) -> None:
    items = [{"id": str(i % 5)} for i in range(7)]  # ids 0-4, then 0 and 1 again
    calls: list[int] = []

    def process(batch):
        calls.append(len(batch))
        return [{"id": b["id"], "n": 1} for b in batch], 10 * len(batch)

    with ResumableJsonl(tmp_path / "o.jsonl") as w:
        w.append([{"id": "3"}])
        stats = run_batches(items, w, process, key=lambda r: r["id"], batch_size=2, progress=False)
    assert calls == [2, 2]  # ids 0, 1, 2, 4 pending; 3 done; two duplicates skipped
    assert (stats["written"], stats["skipped"], stats["duplicates"], stats["tokens"]) == (4, 1, 2, 40)
    assert sorted(_ids(tmp_path / "o.jsonl")) == ["0", "1", "2", "3", "4"]


def test_sigkill_after_first_batch_then_restart(tmp_path: Path, tiny_model_dir: Path) -> None:
    from emocaliber_rl.data.exports import export_prompts_stage2
    from emocaliber_rl.data.records import Record

    recs = []
    for i in range(12):
        p = tmp_path / f"{i}.png"
        draw_image(i).save(p)
        recs.append(Record.make(f"p{i:02d}", "FI-8", p, "awe"))
    prompts = tmp_path / "prompts.jsonl"
    export_prompts_stage2(recs, prompts)
    gen = tmp_path / "gen.jsonl"
    cmd = [sys.executable, "-m", "emocaliber_rl.cli", "stage2", "generate", "--backend", "hf", "--processor-pixels",
           "--model", str(tiny_model_dir), "--prompts", str(prompts), "--out", str(gen),
           "--batch-size", "2", "--max-new-tokens", "48", "--dtype", "float32", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if gen.is_file() and gen.read_bytes().count(b"\n") >= 1:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run finished (or died) before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    before = gen.read_bytes()
    complete = before[: before.rfind(b"\n") + 1]
    n_before = complete.count(b"\n")
    assert 2 <= n_before < 12  # the first batch (2 prompts) is on disk, not all of them
    # what a crash in the middle of the next batch's write would leave behind
    with open(gen, "ab") as f:
        f.write(b'{"id": "p11", "response": "half a li')

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "dropped a torn last line" in done.stderr
    after = gen.read_bytes()
    assert after.startswith(complete)  # earlier lines byte for byte unchanged
    ids = _ids(gen)
    assert sorted(ids) == [f"p{i:02d}" for i in range(12)] and len(ids) == len(set(ids))
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["skipped"] == n_before and summary["written"] == 12 - n_before
    for line in after.splitlines():
        row = json.loads(line)
        assert len(row["token_ids"]) == len(row["logprobs"]) == row["num_tokens"] > 0
