"""`ray job submit` through recipes/submit_stage3.sh against a Ray head this test starts on
127.0.0.1 with token authentication on (Ray 2.60's default, set explicitly here).

The cluster gets its own temp dir, ports and token file, and every process it starts carries a
marker in its environment; teardown kills exactly those processes (tests/ray_cluster.py; never
`ray stop`, which stops every Ray cluster of the user on this machine)."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from .conftest import REPO_ROOT
from .ray_cluster import MARKER_VAR, free_port, marked_pids, run_job, stop_cluster

pytestmark = [pytest.mark.slow, pytest.mark.ray_cluster]

VENV_BIN = REPO_ROOT / ".venv" / "bin"


@pytest.fixture(scope="module")
def ray_head():
    ray_bin = VENV_BIN / "ray"
    if not ray_bin.exists():
        pytest.skip("no .venv/bin/ray (install the cpu extra)")
    tmp = Path(tempfile.mkdtemp(prefix="ecray", dir="/tmp"))  # short: Ray's socket paths are length-limited
    marker = uuid.uuid4().hex
    token_file = tmp / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    dashboard = free_port()
    env = {**os.environ, MARKER_VAR: marker, "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": str(token_file), "RAY_USAGE_STATS_ENABLED": "0"}
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN"):
        env.pop(key, None)
    cmd = [str(ray_bin), "start", "--head", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
           f"--port={free_port()}", f"--dashboard-port={dashboard}",
           f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
           f"--temp-dir={tmp / 'ray'}", "--num-cpus=2", "--disable-usage-stats"]
    try:
        proc = subprocess.run(cmd, env=env, check=False, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        yield {"address": f"http://127.0.0.1:{dashboard}", "env": env, "tmp": tmp, "marker": marker}
    finally:
        stop_cluster(marker)
        shutil.rmtree(tmp, ignore_errors=True)
    assert not marked_pids(marker), "processes of the test cluster survived teardown"


def test_submit_without_the_token_is_refused(ray_head: dict) -> None:
    env = {**ray_head["env"], "RAY_AUTH_TOKEN": secrets.token_hex(32)}  # a wrong token wins over the file
    proc = subprocess.run([str(VENV_BIN / "ray"), "job", "submit", "--address", ray_head["address"], "--",
                           "python", "-c", "print(1)"], env=env, check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "auth" in (proc.stdout + proc.stderr).lower()


def test_submit_stage3_check_job_succeeds_with_token(ray_head: dict, tmp_path: Path) -> None:
    sub_id = f"emocaliber-check-{uuid.uuid4().hex[:8]}"
    # the loss-rows plug-in's switch, set on the submitting machine, must reach the job's workers
    env = {**ray_head["env"], "EMOCALIBER_LOSS_ROWS": "0"}
    rc, out = run_job(["bash", str(REPO_ROOT / "recipes" / "submit_stage3.sh"), "--address", ray_head["address"],
                       "--profile", "cpu", "--submission-id", sub_id, "--check"],
                      {**ray_head, "env": env}, tmp_path / "check.log", timeout=400, cwd=REPO_ROOT)
    assert rc == 0, out[-5000:]
    # the job's own output lines (ray job submit also echoes the entrypoint's source)
    states = {m.group(1): json.loads(m.group(2))
              for m in re.finditer(r"^EMOCALIBER_PLUGIN_STATE (driver|worker) (\{.*\})$", out, re.MULTILINE)}
    assert set(states) == {"driver", "worker"}, out[-3000:]
    for where, state in states.items():
        assert state["VERL_USE_EXTERNAL_MODULES"] == "emocaliber_rl.verl_plugins", where
        assert state["VERL_PLATFORM"] == "cpu" and state["platform"] == "PlatformCPU", where
        assert state["EMOCALIBER_LOSS_ROWS"] == "0", where
        assert state["grpo_no_std"] is True and state["val_calibration_hook"] is True, where
        # the project came with the job (runtime_env working_dir), not from this checkout
        assert not state["emocaliber_rl"].startswith(str(REPO_ROOT)), state["emocaliber_rl"]
        assert state["emocaliber_rl"].startswith(str(ray_head["tmp"])), state["emocaliber_rl"]
    # the job server's own record of the job (Ray's SDK, authenticated by the same token file)
    code = ("import sys; from ray.job_submission import JobSubmissionClient; "
            "print('STATUS', JobSubmissionClient(sys.argv[1]).get_job_status(sys.argv[2]).value)")
    status = subprocess.run([str(VENV_BIN / "python"), "-c", code, ray_head["address"], sub_id],
                            env=env, check=False, capture_output=True, text=True, timeout=120)
    assert "STATUS SUCCEEDED" in status.stdout, status.stdout[-2000:] + status.stderr[-2000:]
