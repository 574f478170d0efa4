"""Kill the synthesizer with SIGKILL half-way, start it again: every record ends up in the output
exactly once, no finished record is requested again, a torn last line is ignored, and the API key
appears in no output, log or stderr."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from emocaliber_rl.data.chat_server import ServerConfig, ServerThread
from emocaliber_rl.data.records import Record, write_manifest
from emocaliber_rl.data.synthetic import draw_image

KEY = "sk-resume-SECRET-0b7e55aa"
N = 60


def _cmd(manifest: Path, out: Path, url: str, log: Path) -> list[str]:
    return [sys.executable, "-m", "emocaliber_rl.cli", "cot", "synthesize", str(manifest),
            "-o", str(out), "--base-url", url, "--model", "teacher", "--concurrency", "4",
            "--backoff-base", "0.01", "--timeout", "10", "--no-progress", "--log", str(log),
            "--price-in", "1.5", "--price-out", "6"]


def test_sigkill_then_resume(tmp_path: Path) -> None:
    recs = [Record.make(f"rec{i:03d}", "WebEmo-25", draw_image(tmp_path / "img" / f"{i}.jpg", i),
                        "irritabilty") for i in range(N)]
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, recs)
    out, log = tmp_path / "synth.jsonl", tmp_path / "synth.log"
    # Some records first get an error body that echoes the Authorization header (key redaction).
    script = {f"rec{i:03d}": ["echo500"] for i in range(0, N, 10)}
    env = {**os.environ, "EMOCALIBER_API_KEY": KEY}
    with ServerThread(ServerConfig(delay=0.08, script=script, expect_key=KEY)) as server:
        proc = subprocess.Popen(_cmd(manifest, out, server.url, log), env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline:
            if out.exists() and out.read_text().count("\n") >= N // 3:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        _, err1 = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL

        text = out.read_bytes()
        finished = {json.loads(line)["id"] for line in text.splitlines() if line.strip()
                    and line.endswith(b"}")}
        assert N // 3 <= len(finished) < N, "the kill must land half-way"
        # Simulate a write cut short by the kill (whether or not this one tore a line).
        with open(out, "ab") as f:
            f.write(b'{"id": "rec999", "response": "<think><elem')
        before = dict(server.state.counts)

        proc2 = subprocess.run(_cmd(manifest, out, server.url, log), env=env, capture_output=True, check=False,
                               timeout=120)
        after = dict(server.state.counts)
    assert proc2.returncode == 0, proc2.stderr.decode()[-2000:]
    err2 = proc2.stderr.decode()
    assert "torn last line" in err2 and "already finished" in err2

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [r["id"] for r in rows]
    assert sorted(ids) == [f"rec{i:03d}" for i in range(N)]  # each exactly once, torn line gone
    for rid in finished:  # no paid call repeated for a record finished before the kill
        assert after[rid] == before[rid]
    for rid in set(ids) - finished:
        expected_ok = 1 + (rid in script)
        assert after[rid] - before.get(rid, 0) >= 1 and after[rid] <= expected_ok + 1
    assert all(r["label"] == "irritability" and r["steps"] for r in rows)
    for blob in (out.read_text(), log.read_text(), err1.decode(), err2, proc2.stdout.decode()):
        assert KEY not in blob
    assert "Bearer ***" in log.read_text()
    assert "tokens this run" in err2
