"""`ray job submit` through recipes/submit_stage3.sh against a two-node Ray cluster on 127.0.0.1
(a head and a second raylet, tests/ray_cluster.py) with token authentication on (Ray 2.60's
default, set explicitly there).

One cluster serves every test here (the module fixture ``checked``): a submission with a wrong
token, then `submit_stage3.sh --check -- RECIPE_ARGS` twice, once with files every node has and
once with a --val that no node has. The check trains nothing: one Ray task pinned to each node runs
the recipe's dry run and fingerprints the paths (emocaliber_rl/cluster_check.py). The cluster gets
its own temp dir, ports and token file, and every process it starts carries a marker in its
environment; teardown kills exactly those processes and their descendants (never `ray stop`, which
stops every Ray cluster of the user on this machine)."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from emocaliber_rl.stage3_command import stage3_command

from .conftest import REPO_ROOT, draw_image
from .ray_cluster import marked_pids, ray_bin, run_job, two_node_cluster

pytestmark = [pytest.mark.slow, pytest.mark.ray_cluster]

# the check's records (FI-8, WebEmo-2, Abstract-8, FI-2: all three VECBench groups)
RECORD_TASKS = ["FI-8", "WebEmo-2", "Abstract-8", "FI-2"]


def _records(tmp: Path, n: int, offset: int):
    from emocaliber_rl.data.records import Record
    from emocaliber_rl.taxonomy import get_subtask

    out = []
    for i in range(n):
        task = RECORD_TASKS[i % len(RECORD_TASKS)]
        labels = get_subtask(task).labels
        path = tmp / f"img{offset + i}.png"
        draw_image(offset + i, size=(84, 84)).save(path)
        out.append(Record.make(str(offset + i), task, path, labels[(i // len(RECORD_TASKS)) % len(labels)]))
    return out


@pytest.fixture(scope="module")
def checked(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """What the cluster answered: the refused submission, the two check jobs (exit status and
    output), the job server's status of the first, and the paths they were given."""
    from emocaliber_rl.data.exports import export_rl_stage3

    tmp = tmp_path_factory.mktemp("ray-submit")
    train = export_rl_stage3(_records(tmp, 4, 0), tmp / "train.parquet", pixel_bounds=None).path
    val = export_rl_stage3(_records(tmp, 2, 100), tmp / "val.parquet", split="test", pixel_bounds=None).path
    out = tmp / "ckpt"
    sub_id = f"emocaliber-check-{uuid.uuid4().hex[:8]}"
    res: dict = {"train": train, "val": val, "out": out, "missing": tmp / "no_such_val.parquet"}

    with two_node_cluster(num_cpus=2) as cluster:
        res["cluster_tmp"] = cluster["tmp"]
        # a wrong token wins over the token file
        wrong = {**cluster["env"], "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        res["refused"] = subprocess.run([str(ray_bin()), "job", "submit", "--address", cluster["address"], "--",
                                         "python", "-c", "print(1)"], env=wrong, check=False, capture_output=True,
                                        text=True, timeout=120)

        def check(val_path: Path, name: str, *extra: str, expect_failure: bool = False) -> tuple[int, str]:
            # the loss-rows plug-in's switch, set on the submitting machine, must reach the job's workers
            env = {**cluster["env"], "EMOCALIBER_LOSS_ROWS": "0"}
            return run_job(
                ["bash", str(REPO_ROOT / "recipes" / "submit_stage3.sh"), "--address", cluster["address"],
                 "--profile", "cpu", "--python", sys.executable, *extra, "--check", "--",
                 *stage3_command(model=tiny_model_dir, train=train, val=val_path, out=out, nnodes=2,
                                 gpus_per_node=1)[2:]],
                {**cluster, "env": env}, tmp / name, timeout=900, cwd=REPO_ROOT, expect_failure=expect_failure)

        res["good"] = check(val, "good.log", "--submission-id", sub_id)
        # the job server's own record of the job (Ray's SDK, authenticated by the same token file)
        code = ("import sys; from ray.job_submission import JobSubmissionClient; "
                "print('STATUS', JobSubmissionClient(sys.argv[1]).get_job_status(sys.argv[2]).value)")
        res["status"] = subprocess.run([sys.executable, "-c", code, cluster["address"], sub_id], env=cluster["env"],
                                       check=False, capture_output=True, text=True, timeout=120)
        res["bad"] = check(res["missing"], "bad.log", expect_failure=True)
    res["survivors"] = marked_pids(cluster["marker"])
    return res


def test_cluster_stopped_whole(checked: dict) -> None:
    assert not checked["survivors"], "processes of the test cluster survived teardown"


def test_submit_without_the_token_is_refused(checked: dict) -> None:
    proc = checked["refused"]
    assert proc.returncode != 0
    assert "auth" in (proc.stdout + proc.stderr).lower()


def test_submit_check_compares_every_node(tiny_model_dir: Path, checked: dict) -> None:
    """The same files on both nodes give one table of `ok` rows and exit 0."""
    rc, log = checked["good"]
    assert rc == 0, log[-6000:]
    assert "cluster_check: 2 alive nodes" in log
    header = next(ln for ln in log.splitlines() if ln.startswith("item "))
    assert header.split()[-1] == "verdict" and header.count("node") == 2, header
    table = log[log.index(header):].splitlines()[2:]
    verdicts = {}
    for line in table:
        if line.startswith("cluster_check:"):
            break
        verdicts[line.split("  ")[0]] = line.split()[-1]
    train, val, out = checked["train"], checked["val"], checked["out"]
    assert verdicts == {"dry run": "ok", "veRL plug-ins": "ok", "--python": "ok", "repo": "ok",
                        f"--model {tiny_model_dir}": "ok", f"--train {train}": "ok", f"--val {val}": "ok",
                        f"--out {out}": "ok", "--out shared": "ok"}, table
    assert "cluster_check: every node sees the same paths" in log
    assert not list(out.glob(".emocaliber-check-*"))  # the token is removed
    assert "STATUS SUCCEEDED" in checked["status"].stdout, checked["status"].stdout[-2000:] + checked["status"].stderr[-2000:]


def test_check_job_runs_the_plugins_from_the_jobs_working_dir(checked: dict) -> None:
    """The job's driver and the task on each node report the veRL plug-in state: loaded from the
    job's working_dir copy (not this checkout), the CPU platform, and the loss-rows switch the
    submitting shell set."""
    rc, log = checked["good"]
    assert rc == 0, log[-6000:]
    states = [(m.group(1), json.loads(m.group(2)))
              for m in re.finditer(r"^EMOCALIBER_PLUGIN_STATE (driver|worker) (\{.*\})$", log, re.MULTILINE)]
    assert sorted(where for where, _ in states) == ["driver", "worker", "worker"], log[-3000:]
    for where, state in states:
        assert state["VERL_USE_EXTERNAL_MODULES"] == "emocaliber_rl.verl_plugins", where
        assert state["VERL_PLATFORM"] == "cpu" and state["platform"] == "PlatformCPU", where
        assert state["EMOCALIBER_LOSS_ROWS"] == "0", where
        assert state["grpo_no_std"] is True and state["val_calibration_hook"] is True, where
        assert not state["emocaliber_rl"].startswith(str(REPO_ROOT)), state["emocaliber_rl"]
        assert state["emocaliber_rl"].startswith(str(checked["cluster_tmp"])), state["emocaliber_rl"]


def test_submit_check_fails_on_a_path_no_node_has(checked: dict) -> None:
    """A --val that no node has gives FAILS rows and a non-zero exit."""
    rc, log = checked["bad"]
    assert rc != 0, log[-6000:]
    missing = f"--val {checked['missing']}"
    assert re.search(rf"^{re.escape(missing)}\s+missing\s+missing\s+FAILS$", log, re.MULTILINE), log[-6000:]
    assert re.search(r"^dry run\s+exit 2\s+exit 2\s+FAILS$", log, re.MULTILINE), log[-6000:]
    assert "no_such_val.parquet: no such file" in log
    assert "cluster_check: the nodes do not agree: dry run, " in log
