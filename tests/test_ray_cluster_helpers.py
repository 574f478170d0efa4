"""tests/ray_cluster.run_job: a job command's output survives a timeout, and a failed job keeps the
cluster's Ray logs (teardown deletes them) with the raylets' lines on killed workers. The stage-3
shared run hung in CI once (a weight sync after a worker was killed) and left nothing to read."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.ray_cluster import run_job

# the line Ray 2.60's raylet writes (format string read from its binary with `strings`)
KILLED = "1 worker(s) were killed due to the node running low on memory. Refer to the documentation."


def _cluster(tmp_path: Path) -> dict:
    """A cluster's folder layout as two_node_cluster leaves it (session logs under tmp/ray)."""
    logs = tmp_path / "cl" / "ray" / "session_2026-12-07_11-56-00_000000_1" / "logs"
    logs.mkdir(parents=True)
    (logs / "raylet.out").write_text(f"[state-dump] fine\n[2026-12-07 12:07:40] {KILLED}\n")
    (logs / "raylet.err").write_text("")
    return {"tmp": tmp_path / "cl", "env": {"PATH": "/usr/bin:/bin"}}


def test_output_of_a_job_past_its_timeout_is_kept(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)
    log_path = tmp_path / "run.log"
    rc, log = run_job(["bash", "-c", "echo step 1 done; exec sleep 30"], cluster, log_path, timeout=2, cwd=tmp_path)
    assert rc == -9
    assert "step 1 done" in log and "[run_job] killed after 2 s" in log
    assert log_path.read_text() == log
    assert "raylet lines on killed workers: 1" in log and KILLED in log
    assert (tmp_path / "ray_logs" / "session_2026-12-07_11-56-00_000000_1" / "raylet.out").is_file()


def test_a_passing_job_keeps_no_ray_logs_and_an_expected_failure_neither(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)
    rc, log = run_job([sys.executable, "-c", "print('ok')"], cluster, tmp_path / "a.log", timeout=60, cwd=tmp_path)
    assert (rc, log.strip()) == (0, "ok")
    rc, log = run_job([sys.executable, "-c", "raise SystemExit(3)"], cluster, tmp_path / "b.log", timeout=60,
                      cwd=tmp_path, expect_failure=True)
    assert rc == 3 and "[run_job]" not in log
    assert not (tmp_path / "ray_logs").exists()
    rc, log = run_job([sys.executable, "-c", "raise SystemExit(3)"], cluster, tmp_path / "c.log", timeout=60,
                      cwd=tmp_path)
    assert rc == 3 and KILLED in log and (tmp_path / "ray_logs").is_dir()


def test_stop_cluster_also_stops_a_descendant_that_lost_the_marker() -> None:
    """A raylet's agents rename themselves (``ray::DashboardAgent``), which overwrites the start of
    their environment and the marker with it; they outlived the two-node clusters' teardown until
    stop_cluster took the marked processes' descendants too. Here the child starts with an empty
    environment: no marker at all."""
    import os
    import subprocess
    import time
    import uuid

    from tests.ray_cluster import MARKER_VAR, _alive, _with_descendants, stop_cluster

    marker = uuid.uuid4().hex
    code = "import subprocess, time; subprocess.Popen(['sleep', '300'], env={}); time.sleep(300)"
    parent = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, MARKER_VAR: marker},
                              start_new_session=True)
    child = None
    try:
        deadline = time.monotonic() + 60
        while len(_with_descendants([parent.pid])) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        child = (_with_descendants([parent.pid]) - {parent.pid}).pop()
        assert MARKER_VAR.encode() not in Path(f"/proc/{child}/environ").read_bytes()
        stop_cluster(marker)
        parent.wait(timeout=10)
        time.sleep(0.5)
        assert not _alive(child) or Path(f"/proc/{child}/stat").read_text().split(") ")[1].startswith("Z")
    finally:
        # the child outlives its parent's group when the test fails: it is an orphan by then
        for pid in (parent.pid, child):
            if pid is not None and _alive(pid):
                os.kill(pid, 9)
