"""Multi-node rehearsal on one machine (issue 14, item 6): stage-1 SFT through recipes/stage1_sft.sh
with torchrun across two node ranks on 127.0.0.1 (NNODES=2, NODE_RANK=0/1, one process each), on
the CPU profile and the tiny model. The reference is the same recipe on one node with two
processes (the shared stage-1 run, tests/stage1_shared.py): the same world size, data order and
seeds must give the same losses.

Every process is started in its own session and its whole group is killed at the end, whatever
happens (nothing else on the machine is touched).

Stage 3 on a two-node Ray cluster on loopback reads the shared stage-3 run (tests/stage3_shared.py),
which is that cluster's job; the token refusal and `submit_stage3.sh --check` sent to the same cluster
before the job are read by tests/test_ray_submit.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from tests.ray_cluster import free_port
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
