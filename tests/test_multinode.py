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

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

ARGS = ["--profile", "cpu", "--nproc", "{nproc}", "--steps", "3", "data.train_batch_size=4",
        "data.micro_batch_size_per_gpu=2", "optim.lr=1e-3", "trainer.balance_batch=False"]


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
