"""Stages 1-3 save checkpoints during the run, and stage 1 resumes after a crash: the recipe saves
every ``trainer.save_freq`` steps, and the same command run again continues from the newest saved
step (veRL's ``resume_mode: auto``), on the CPU profile and the tiny Qwen2.5-VL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, STEPS, draw_image


def _parquet(root: Path) -> Path:
    from emocaliber_rl.data.exports import export_sft_stage1
    from emocaliber_rl.data.records import Record
    from emocaliber_rl.taxonomy import get_subtask

    labels = get_subtask("FI-8").labels
    records = []
    for i in range(16):
        image = root / f"img{i}.png"
        draw_image(i).save(image)
        records.append(Record.make(f"r{i}", "FI-8", image, labels[i % len(labels)], steps=STEPS))
    res = export_sft_stage1(records, root / "train.parquet", pixel_bounds=None)
    assert res.rows == 16
    return root / "train.parquet"


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and all its descendants: torchrun starts each trainer in a session of its
    own, so killing the recipe's process group would leave the trainer running on."""
    import psutil

    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)


def test_every_stage_saves_during_the_run_with_a_bound() -> None:
    """The stage configs save every N steps and bound what is kept; the CPU profile saves at the
    end only (the demo's tiny runs save no more than before)."""
    import yaml

    config = REPO_ROOT / "recipes" / "config"

    def trainer(name: str) -> dict:
        return yaml.safe_load((config / name).read_text())["trainer"]

    for name in ("stage1_sft.yaml", "stage2_sft.yaml"):
        t = trainer(name)
        assert (t["save_freq"], t["max_ckpt_to_keep"], t["resume_mode"]) == (100, 2, "auto"), name
    t = trainer("stage3_grpo.yaml")
    assert (t["save_freq"], t["max_actor_ckpt_to_keep"], t["resume_mode"]) == (50, 2, "auto")
    assert trainer("sft_profile/cpu.yaml")["save_freq"] == -1


KILLED, LAST = 3, 4  # the step whose checkpoint the kill follows, the run's last step


@pytest.mark.slow
def test_stage1_killed_mid_run_resumes_from_last_saved_step(tiny_model_dir, tmp_path):
    data = _parquet(tmp_path)
    out = tmp_path / "ckpt"
    # 4 steps of 2 rows, a checkpoint every step, the newest 2 kept (max_ckpt_to_keep from
    # recipes/config/stage1_sft.yaml); killed after the step-3 checkpoint, the third saved, so the
    # limit has deleted one; the rerun trains step 4 only (8 steps with a checkpoint every 2 checked
    # the same at twice the training)
    cmd = ["bash", str(REPO_ROOT / "recipes" / "stage1_sft.sh"), "--profile", "cpu",
           "--model", str(tiny_model_dir), "--train", str(data), "--out", str(out), "--steps", str(LAST),
           "data.train_batch_size=2", "data.micro_batch_size_per_gpu=2", "trainer.save_freq=1",
           "trainer.balance_batch=False"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHON": sys.executable}
    env.pop("VERL_USE_EXTERNAL_MODULES", None)
    tracker = out / "latest_checkpointed_iteration.txt"
    log1 = tmp_path / "run1.log"
    with open(log1, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        try:
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline and proc.poll() is None:
                if tracker.is_file() and tracker.read_text().strip() == str(KILLED):
                    break
                time.sleep(0.5)
            assert proc.poll() is None, "stage 1 ended before it was killed:\n" + log1.read_text()[-3000:]
            assert tracker.is_file(), "no checkpoint within the deadline:\n" + log1.read_text()[-3000:]
            # the crash: every process of the run at once, no cleanup
            _kill_tree(proc.pid)
        finally:
            if proc.poll() is None:
                _kill_tree(proc.pid)
            proc.wait()
    saved = int(tracker.read_text().strip())
    assert saved == KILLED and not (out / f"global_step_{LAST}").exists()
    # the limit of 2: the killed run deleted global_step_1 before it wrote global_step_3
    assert sorted(p.name for p in out.glob("global_step_*")) == ["global_step_2", "global_step_3"]

    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900, check=False)
    log = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, log[-4000:]
    # veRL names the checkpoint it resumed from, and trains only the steps after it
    (tmp_path / "run2.log").write_text(log)
    said = [line for line in log.splitlines() if "checkpoint" in line.lower() or "resume" in line.lower()]
    assert f"Found latest checkpoint: {out / f'global_step_{saved}'} (step {saved})" in log, said
    steps = [int(s) for s in re.findall(r"step:(\d+) - ", log)]
    assert steps and min(steps) == saved + 1 and max(steps) == LAST, steps
    assert tracker.read_text().strip() == str(LAST)
    assert (out / "final_hf" / "config.json").is_file()
    # veRL counts the checkpoints of the running process: the rerun wrote only step 4, so the
    # killed run's two stay beside it (docs/outputs-and-resume.md says so)
    kept = sorted(p.name for p in out.glob("global_step_*"))
    assert kept == ["global_step_2", "global_step_3", "global_step_4"], kept
