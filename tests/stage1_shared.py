"""The stage-1 recipe runs several slow test modules share (not a test module itself).

``tests/test_stage1_sft.py`` (the loss-rows plug-in against veRL's own forward; the language model
trains, the vision tower does not, with 1 and 2 processes) and ``tests/test_multinode.py`` (two
torchrun node ranks give the losses of one node with two processes) all read four steps of
``recipes/stage1_sft.sh --profile cpu`` on one 16-row parquet: 4 rows a step in micro-batches of 2,
lr 1e-3, no batch balancing. Each (processes, ``EMOCALIBER_LOSS_ROWS``) run happens once per
session (session fixture ``stage1_train_run``, tests/conftest.py), so the two-process run is the
multi-node test's one-node reference too (it used to run its own, 3 steps on 12 rows).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from .conftest import REPO_ROOT, STEPS, draw_image

N_STEPS = 4
ARGS = ["--profile", "cpu", "--steps", str(N_STEPS), "data.train_batch_size=4", "data.micro_batch_size_per_gpu=2",
        "optim.lr=1e-3", "trainer.balance_batch=False"]
SUBTASKS = ("FI-8", "EmoSet-8", "WebEmo-7", "FI-2")


def parquet(root: Path) -> Path:
    """16 stage-1 rows over four subtasks, images under ``root``."""
    from emocaliber_rl.data.exports import export_sft_stage1
    from emocaliber_rl.data.records import Record
    from emocaliber_rl.taxonomy import get_subtask

    records = []
    for i in range(16):
        subtask = SUBTASKS[i % len(SUBTASKS)]
        image = root / f"img{i}.png"
        draw_image(i).save(image)
        labels = get_subtask(subtask).labels
        records.append(Record.make(f"r{i}", subtask, image, labels[i % len(labels)], steps=STEPS))
    result = export_sft_stage1(records, root / "train.parquet", pixel_bounds=None)
    assert result.rows == 16 and not result.report.problems
    return root / "train.parquet"


def command(model: Path, data: Path, out: Path, nproc: int) -> list[str]:
    return ["bash", str(REPO_ROOT / "recipes" / "stage1_sft.sh"), "--nproc", str(nproc), "--model", str(model),
            "--train", str(data), "--out", str(out), *ARGS]


def env(**extra: str) -> dict[str, str]:
    out = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHON": sys.executable, **extra}
    out.pop("VERL_USE_EXTERNAL_MODULES", None)
    return out


def metrics(log: str) -> dict[str, list[float]]:
    """veRL's per-step loss and gradient norm from a run's console log."""
    return {key: [float(x) for x in re.findall(rf"step:\d+ - .*?train/{key}:([0-9.e+-]+)", log)]
            for key in ("loss", "grad_norm")}


def train(nproc: int, model: Path, data: Path, out: Path, loss_rows: str) -> dict[str, list[float]]:
    """One run of the recipe; veRL's per-step loss and gradient norm."""
    proc = subprocess.run(command(model, data, out, nproc), check=False, capture_output=True, text=True,
                          timeout=900, env=env(EMOCALIBER_LOSS_ROWS=loss_rows), cwd=out.parent)
    log = proc.stdout + proc.stderr
    (out.parent / "run.log").write_text(log)
    assert proc.returncode == 0, log[-4000:]
    assert "froze" in log  # EMOCALIBER_FREEZE_MODULES=visual took effect
    return metrics(log)
