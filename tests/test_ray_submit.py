"""`ray job submit` through recipes/submit_stage3.sh against a two-node Ray cluster on 127.0.0.1
(a head and a second raylet, tests/ray_cluster.py) with token authentication on (Ray 2.60's
default, set explicitly there).

The cluster is the shared stage-3 run's (tests/stage3_shared.py): before the stage-3 job it is
sent a submission with a wrong token, then `submit_stage3.sh --check -- RECIPE_ARGS` twice, once
with the job's own arguments (files every node has) and once with a --val that no node has
(``submit_checks``). The check trains nothing: one Ray task pinned to each node runs the recipe's
dry run and fingerprints the paths (emocaliber_rl/cluster_check.py). That the cluster's processes
are all gone after teardown is tests/test_multinode.py's check of the same run."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checked(stage3_colour_run: dict) -> dict:
    """What the cluster answered (``submit_checks``), with the paths the checks were given."""
    run = stage3_colour_run
    return {**run["submit"], "model": run["initial"], "train": run["train"], "val": run["val"], "out": run["ckpt"],
            "cluster_tmp": run["cluster_tmp"]}


def test_submit_without_the_token_is_refused(checked: dict) -> None:
    proc = checked["refused"]
    assert proc.returncode != 0
    assert "auth" in (proc.stdout + proc.stderr).lower()


def test_submit_check_compares_every_node(checked: dict) -> None:
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
                        f"--model {checked['model']}": "ok", f"--train {train}": "ok", f"--val {val}": "ok",
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
