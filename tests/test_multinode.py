"""Multi-node rehearsal on one machine (issue 14, item 6): stage-1 SFT through recipes/stage1_sft.sh
with torchrun across two node ranks on 127.0.0.1 (NNODES=2, NODE_RANK=0/1, one process each), on
the CPU profile and the tiny model. The reference is the same recipe on one node with two
processes: the same world size, data order and seeds must give the same losses.

Every process is started in its own session and its whole group is killed at the end, whatever
happens (nothing else on the machine is touched)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, draw_image

pytestmark = pytest.mark.slow

ARGS = ["--profile", "cpu", "--nproc", "{nproc}", "--steps", "3", "data.train_batch_size=4",
        "data.micro_batch_size_per_gpu=2", "optim.lr=1e-3", "trainer.balance_batch=False"]


# the two-node stage-3 run's records (FI-8, WebEmo-2, Abstract-8, FI-2: all three VECBench groups)
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmd(model: Path, data: Path, out: Path, nproc: int) -> list[str]:
    return ["bash", str(REPO_ROOT / "recipes" / "stage1_sft.sh"), "--model", str(model), "--train", str(data),
            "--out", str(out), *[a.format(nproc=nproc) for a in ARGS]]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHON": sys.executable, **extra}
    env.pop("VERL_USE_EXTERNAL_MODULES", None)
    return env


def _losses(log: str) -> list[float]:
    return [float(x) for x in re.findall(r"step:\d+ - .*?train/loss:([0-9.]+)", log)]


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="module")
def sft_parquet(tmp_path_factory) -> Path:
    from emocaliber_rl.data.exports import export_sft_stage1
    from emocaliber_rl.data.records import Record
    from emocaliber_rl.taxonomy import get_subtask
    from tests.conftest import STEPS, draw_image

    root = tmp_path_factory.mktemp("mn-data")
    records = []
    for i in range(12):
        image = root / f"img{i}.png"
        draw_image(i).save(image)
        labels = get_subtask("FI-8").labels
        records.append(Record.make(f"r{i}", "FI-8", image, labels[i % len(labels)], steps=STEPS))
    result = export_sft_stage1(records, root / "train.parquet", pixel_bounds=None)
    assert result.rows == 12
    return root / "train.parquet"


def test_stage1_torchrun_across_two_node_ranks(tiny_model_dir, sft_parquet, tmp_path) -> None:
    t0 = time.monotonic()
    ref = subprocess.run(_cmd(tiny_model_dir, sft_parquet, tmp_path / "one_node", 2), env=_env(),
                         capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path)
    assert ref.returncode == 0, (ref.stdout + ref.stderr)[-4000:]
    t_ref = time.monotonic() - t0
    want = _losses(ref.stdout + ref.stderr)
    assert len(want) == 3

    port = str(_free_port())
    out = tmp_path / "two_nodes"
    procs = []
    t0 = time.monotonic()
    try:
        for rank in (0, 1):
            env = _env(NNODES="2", NODE_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
            log = (tmp_path / f"node{rank}.log").open("w")
            procs.append((subprocess.Popen(_cmd(tiny_model_dir, sft_parquet, out, 1), env=env, stdout=log,
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
    got = _losses(logs[0])
    assert got == pytest.approx(want, rel=1e-4), (got, want)
    assert (out / "final_hf" / "config.json").exists()
    print(f"\n[multinode] one node x 2 procs: {t_ref:.0f} s; two node ranks x 1 proc: {t_two:.0f} s; losses {got}")


# --- stage 3 on a two-node Ray cluster on loopback ---------------------------------------------

def _ray_start(args: list[str], env: dict[str, str]) -> None:
    ray_bin = Path(sys.executable).with_name("ray")
    proc = subprocess.run([str(ray_bin), "start", *args, "--disable-usage-stats"], env=env, capture_output=True,
                          text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _agent_ports() -> list[str]:
    # two raylets on one host: every per-node port must differ (defaults would collide)
    return [f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
            f"--metrics-export-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}"]


def test_stage3_on_a_two_node_ray_cluster(tiny_model_dir, tmp_path) -> None:
    """A head and a second raylet, each with one logical GPU; recipes/submit_stage3.sh runs stage 3
    with --nnodes 2 --gpus-per-node 1 (CPU profile) to a finished step and checkpoint; veRL's
    workers land on both nodes; the reward file comes with the job's working_dir."""
    import json
    import secrets
    import shutil
    import tempfile
    import uuid

    from emocaliber_rl.data.exports import export_rl_stage3
    from tests.test_ray_submit import _marked_pids, _stop_cluster

    train = export_rl_stage3(_records(tmp_path, 4, 0), tmp_path / "train.parquet", pixel_bounds=None).path
    val = export_rl_stage3(_records(tmp_path, 2, 100), tmp_path / "val.parquet", split="test",
                           pixel_bounds=None).path
    tmp = Path(tempfile.mkdtemp(prefix="ecmn", dir="/tmp"))  # short: Ray's socket paths are length-limited
    marker = uuid.uuid4().hex
    token = tmp / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {**os.environ, "EMOCALIBER_RAY_TEST": marker, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "PYTHONPATH"):
        env.pop(key, None)
    gcs, dashboard = _free_port(), _free_port()
    out = tmp_path / "ckpt"
    t0 = time.monotonic()
    try:
        _ray_start(["--head", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1", f"--port={gcs}",
                    f"--dashboard-port={dashboard}", f"--ray-client-server-port={_free_port()}",
                    f"--temp-dir={tmp / 'ray'}", "--num-cpus=8", "--num-gpus=1", *_agent_ports()], env)
        _ray_start([f"--address=127.0.0.1:{gcs}", "--node-ip-address=127.0.0.1", "--num-cpus=8", "--num-gpus=1",
                    *_agent_ports()], env)
        t_cluster = time.monotonic() - t0
        proc = subprocess.run(
            ["bash", str(REPO_ROOT / "recipes" / "submit_stage3.sh"), "--address", f"http://127.0.0.1:{dashboard}",
             "--profile", "cpu", "--python", sys.executable, "--",
             "--model", str(tiny_model_dir), "--train", str(train), "--val", str(val), "--out", str(out),
             "--steps", "1", "--nnodes", "2", "--gpus-per-node", "1",
             "trainer.val_before_train=False", "trainer.test_freq=-1", "trainer.save_freq=1",
             "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
             "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=2",
             "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
             "actor_rollout_ref.actor.checkpoint.save_contents=[model,hf_model]"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False)
        t_job = time.monotonic() - t0 - t_cluster
        log = proc.stdout + proc.stderr
        (tmp_path / "job.log").write_text(log)
        assert proc.returncode == 0, log[-6000:]
        ray_bin = Path(sys.executable).with_name("ray")
        actors = subprocess.run([str(ray_bin), "list", "actors", "--address", f"127.0.0.1:{gcs}", "--format", "json",
                                 "--limit", "10000", "--detail"], env=env, capture_output=True, text=True,
                                timeout=120, check=False)
        nodes = subprocess.run([str(ray_bin), "list", "nodes", "--address", f"127.0.0.1:{gcs}", "--format", "json"],
                               env=env, capture_output=True, text=True, timeout=120, check=False)
    finally:
        _stop_cluster(marker)
        shutil.rmtree(tmp, ignore_errors=True)
    assert not _marked_pids(marker), "processes of the test cluster survived teardown"

    assert "nnodes=2 gpus_per_node=1" in log  # the recipe's own banner
    # veRL's printed config: the reward file relative to each node's unpacked working_dir
    assert "'path': 'reward_fns/emocaliber.py'" in log
    assert re.search(r"step:1 - .*critic/score/mean:", log), "no rewarded training step"
    assert (out / "latest_checkpointed_iteration.txt").read_text().strip() == "1"
    assert (out / "global_step_1" / "actor" / "huggingface" / "config.json").exists()
    assert actors.returncode == 0 and nodes.returncode == 0, actors.stderr + nodes.stderr
    alive = {n["node_id"] for n in json.loads(nodes.stdout)}
    assert len(alive) == 2
    worker_nodes = {a["node_id"] for a in json.loads(actors.stdout) if "WorkerDict" in (a.get("class_name") or "")}
    assert worker_nodes == alive, (worker_nodes, alive)  # one FSDP/vLLM worker per node
    print(f"\n[multinode] Ray cluster of 2 nodes up in {t_cluster:.0f} s; stage-3 job (1 step) {t_job:.0f} s")


def test_submit_check_compares_every_node(tiny_model_dir, tmp_path) -> None:
    """`submit_stage3.sh --check -- RECIPE_ARGS` on a head and a second raylet: one task per node
    runs the recipe's dry run and fingerprints the paths; the same files on both nodes give one
    table of `ok` rows and exit 0, a --val that no node has gives FAILS and a non-zero exit."""
    import secrets
    import shutil
    import tempfile
    import uuid

    from emocaliber_rl.data.exports import export_rl_stage3
    from tests.test_ray_submit import _marked_pids, _stop_cluster

    train = export_rl_stage3(_records(tmp_path, 4, 0), tmp_path / "train.parquet", pixel_bounds=None).path
    val = export_rl_stage3(_records(tmp_path, 2, 100), tmp_path / "val.parquet", split="test",
                           pixel_bounds=None).path
    tmp = Path(tempfile.mkdtemp(prefix="ecck", dir="/tmp"))  # short: Ray's socket paths are length-limited
    marker = uuid.uuid4().hex
    token = tmp / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {**os.environ, "EMOCALIBER_RAY_TEST": marker, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "PYTHONPATH"):
        env.pop(key, None)
    gcs, dashboard = _free_port(), _free_port()
    out = tmp_path / "ckpt"

    def check(val_path: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(REPO_ROOT / "recipes" / "submit_stage3.sh"), "--address", f"http://127.0.0.1:{dashboard}",
             "--profile", "cpu", "--python", sys.executable, "--check", "--",
             "--model", str(tiny_model_dir), "--train", str(train), "--val", str(val_path), "--out", str(out),
             "--nnodes", "2", "--gpus-per-node", "1"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)

    try:
        _ray_start(["--head", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1", f"--port={gcs}",
                    f"--dashboard-port={dashboard}", f"--ray-client-server-port={_free_port()}",
                    f"--temp-dir={tmp / 'ray'}", "--num-cpus=2", "--num-gpus=1", *_agent_ports()], env)
        _ray_start([f"--address=127.0.0.1:{gcs}", "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=1",
                    *_agent_ports()], env)
        good = check(val)
        bad = check(tmp_path / "no_such_val.parquet")
    finally:
        _stop_cluster(marker)
        shutil.rmtree(tmp, ignore_errors=True)
    assert not _marked_pids(marker), "processes of the test cluster survived teardown"

    log = good.stdout + good.stderr
    (tmp_path / "good.log").write_text(log)
    assert good.returncode == 0, log[-6000:]
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

    log = bad.stdout + bad.stderr
    (tmp_path / "bad.log").write_text(log)
    assert bad.returncode != 0, log[-6000:]
    missing = f"--val {tmp_path / 'no_such_val.parquet'}"
    assert re.search(rf"^{re.escape(missing)}\s+missing\s+missing\s+FAILS$", log, re.MULTILINE), log[-6000:]
    assert re.search(r"^dry run\s+exit 2\s+exit 2\s+FAILS$", log, re.MULTILINE), log[-6000:]
    assert "no_such_val.parquet: no such file" in log
    assert "cluster_check: the nodes do not agree: dry run, " in log
