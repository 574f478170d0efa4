"""Multi-node rehearsal on one machine (issue 14, item 6): stage-1 SFT through recipes/stage1_sft.sh
with torchrun across two node ranks on 127.0.0.1 (NNODES=2, NODE_RANK=0/1, one process each), on
the CPU profile and the tiny model. The reference is the same recipe on one node with two
processes (the shared stage-1 run, tests/stage1_shared.py): the same world size, data order and
seeds must give the same losses.

Every process is started in its own session and its whole group is killed at the end, whatever
happens (nothing else on the machine is touched).

Stage 3 on a two-node Ray cluster on loopback reads the shared stage-3 run (tests/stage3_shared.py),
which is that cluster's job; `submit_stage3.sh --check` starts its own small two-node cluster
(tests/ray_cluster.py, the same helper) for a job that trains nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emocaliber_rl.stage3_command import stage3_command
from tests.conftest import REPO_ROOT, draw_image
from tests.ray_cluster import free_port, marked_pids, run_job, two_node_cluster
from tests.stage1_shared import N_STEPS, command, metrics
from tests.stage1_shared import env as stage1_env

pytestmark = pytest.mark.slow


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def test_stage1_torchrun_across_two_node_ranks(tiny_model_dir, stage1_parquet, stage1_train_run, tmp_path) -> None:
    # the reference: one node, two processes (the shared run tests/test_stage1_sft.py reads too)
    _, ref = stage1_train_run(2)
    want = ref["loss"]
    assert len(want) == N_STEPS

    port = str(free_port())
    out = tmp_path / "two_nodes"
    procs = []
    t0 = time.monotonic()
    try:
        for rank in (0, 1):
            env = stage1_env(EMOCALIBER_LOSS_ROWS="1", NNODES="2", NODE_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                             MASTER_PORT=port)
            log = (tmp_path / f"node{rank}.log").open("w")
            procs.append((subprocess.Popen(command(tiny_model_dir, stage1_parquet, out, 1), env=env, stdout=log,
                                           stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                                           start_new_session=True), log))
        for p, log in procs:
            p.wait(timeout=900)
            log.close()
    finally:
        for p, _ in procs:
            _kill_group(p)
    t_two = time.monotonic() - t0
    logs = [(tmp_path / f"node{r}.log").read_text() for r in (0, 1)]
    for (p, _), log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    assert "nnodes=2" in logs[0] and "nnodes=2" in logs[1]
    got = metrics(logs[0])["loss"]
    assert got == pytest.approx(want, rel=1e-4), (got, want)
    assert (out / "final_hf" / "config.json").exists()
    print(f"\n[multinode] two node ranks x 1 proc: {t_two:.0f} s; losses {got}")


# --- stage 3 on a two-node Ray cluster on loopback ---------------------------------------------

def test_stage3_on_a_two_node_ray_cluster(stage3_colour_run: dict) -> None:
    """A head and a second raylet, each with one logical GPU; recipes/submit_stage3.sh runs stage 3
    with --nnodes 2 --gpus-per-node 1 (CPU profile) to finished steps and a checkpoint; veRL's
    workers land on both nodes; the reward file comes with the job's working_dir. The run is the
    shared stage-3 run (tests/stage3_shared.py), whose other checks are the GRPO and parity tests'."""
    from .stage3_shared import STEPS

    run = stage3_colour_run
    log, out, actors, nodes = run["log"], run["ckpt"], run["actors"], run["nodes"]
    assert not run["survivors"], "processes of the test cluster survived teardown"
    assert "nnodes=2 gpus_per_node=1" in log  # the recipe's own banner
    # veRL's printed config: the reward file relative to each node's unpacked working_dir
    assert "'path': 'reward_fns/emocaliber.py'" in log
    assert re.search(r"step:1 - .*critic/score/mean:", log), "no rewarded training step"
    assert (out / "latest_checkpointed_iteration.txt").read_text().strip() == str(STEPS)
    assert (out / f"global_step_{STEPS}" / "actor" / "huggingface" / "config.json").exists()
    assert actors.returncode == 0 and nodes.returncode == 0, actors.stderr + nodes.stderr
    alive = {n["node_id"] for n in json.loads(nodes.stdout)}
    assert len(alive) == 2
    worker_nodes = {a["node_id"] for a in json.loads(actors.stdout) if "WorkerDict" in (a.get("class_name") or "")}
    assert worker_nodes == alive, (worker_nodes, alive)  # one FSDP/vLLM worker per node


# --- `submit_stage3.sh --check` on a two-node Ray cluster on loopback -----------------------------

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


@pytest.mark.ray_cluster
def test_submit_check_compares_every_node(tiny_model_dir, tmp_path) -> None:
    """`submit_stage3.sh --check -- RECIPE_ARGS` on a head and a second raylet: one task per node
    runs the recipe's dry run and fingerprints the paths; the same files on both nodes give one
    table of `ok` rows and exit 0, a --val that no node has gives FAILS and a non-zero exit."""
    from emocaliber_rl.data.exports import export_rl_stage3

    train = export_rl_stage3(_records(tmp_path, 4, 0), tmp_path / "train.parquet", pixel_bounds=None).path
    val = export_rl_stage3(_records(tmp_path, 2, 100), tmp_path / "val.parquet", split="test",
                           pixel_bounds=None).path
    out = tmp_path / "ckpt"

    with two_node_cluster(num_cpus=2) as cluster:
        def check(val_path: Path, name: str, expect_failure: bool = False) -> tuple[int, str]:
            return run_job(
                ["bash", str(REPO_ROOT / "recipes" / "submit_stage3.sh"), "--address", cluster["address"],
                 "--profile", "cpu", "--python", sys.executable, "--check", "--",
                 *stage3_command(model=tiny_model_dir, train=train, val=val_path, out=out, nnodes=2,
                                 gpus_per_node=1)[2:]],
                cluster, tmp_path / name, timeout=900, cwd=REPO_ROOT, expect_failure=expect_failure)

        good_rc, log = check(val, "good.log")
        bad_rc, bad_log = check(tmp_path / "no_such_val.parquet", "bad.log", expect_failure=True)
    assert not marked_pids(cluster["marker"]), "processes of the test cluster survived teardown"

    assert good_rc == 0, log[-6000:]
    assert "cluster_check: 2 alive nodes" in log
    header = next(ln for ln in log.splitlines() if ln.startswith("item "))
    assert header.split()[-1] == "verdict" and header.count("node") == 2, header
    table = log[log.index(header):].splitlines()[2:]
    verdicts = {}
    for line in table:
        if line.startswith("cluster_check:"):
            break
        verdicts[line.split("  ")[0]] = line.split()[-1]
    assert verdicts == {"dry run": "ok", "veRL plug-ins": "ok", "--python": "ok", "repo": "ok",
                        f"--model {tiny_model_dir}": "ok", f"--train {train}": "ok", f"--val {val}": "ok",
                        f"--out {out}": "ok", "--out shared": "ok"}, table
    assert "cluster_check: every node sees the same paths" in log
    assert not list(out.glob(".emocaliber-check-*"))  # the token is removed
    # one plug-in state per node, from the job's working_dir copy, not this checkout
    workers = re.findall(r"^EMOCALIBER_PLUGIN_STATE worker ", log, re.MULTILINE)
    assert len(workers) == 2

    log = bad_log
    assert bad_rc != 0, log[-6000:]
    missing = f"--val {tmp_path / 'no_such_val.parquet'}"
    assert re.search(rf"^{re.escape(missing)}\s+missing\s+missing\s+FAILS$", log, re.MULTILINE), log[-6000:]
    assert re.search(r"^dry run\s+exit 2\s+exit 2\s+FAILS$", log, re.MULTILINE), log[-6000:]
    assert "no_such_val.parquet: no such file" in log
    assert "cluster_check: the nodes do not agree: dry run, " in log
