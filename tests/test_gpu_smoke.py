"""recipes/gpu_smoke.sh's 7B step has the paper's shape, checked without a GPU by its --dry-run:
the step's exact arguments through recipes/stage3_grpo.sh --dry-run (veRL's validate_config), its
data written and counted (one 672x672 image per prompt, every prompt within 4096 tokens)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def _composed(log: str) -> dict:
    """The YAML the stage-3 dry run prints between its 'composed config' and 'checks pass' lines."""
    lines = log.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("[stage3_grpo] composed config")) + 1
    # the YAML ends where the next tagged line or a Python warning (FILE.py:N: ...) begins
    end = next(i for i in range(start, len(lines)) if lines[i].startswith(("[", "/")))
    return yaml.safe_load("\n".join(lines[start:end]))


def test_dry_run_of_the_7b_step_on_four_gpus(tmp_path: Path) -> None:
    out = tmp_path / "smoke"
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(["bash", str(REPO_ROOT / "recipes" / "gpu_smoke.sh"), "--dry-run", "--gpus", "4",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (out / "summary.txt").read_text()
    assert "plan: full" in summary  # 4 x 80 GB hold the 7B without offload (docs/first-gpu-run.md)
    assert "stage3_7b_dry_run: rc=0" in summary
    cfg = _composed((out / "logs" / "stage3_7b_dry_run.log").read_text())
    # the paper's shape (recipes/config/stage3_grpo.yaml), the batch scaled to 4 GPUs: 8 prompts
    # per GPU and 2 PPO updates per step, as 64 and 32 on the paper's 8
    assert cfg["data"]["max_prompt_length"] == 4096
    assert cfg["data"]["max_response_length"] == 2048
    assert cfg["data"]["train_batch_size"] == 32
    assert cfg["actor_rollout_ref"]["actor"]["ppo_mini_batch_size"] == 16
    assert cfg["actor_rollout_ref"]["rollout"]["n"] == 8
    assert cfg["trainer"]["n_gpus_per_node"] == 4
    assert cfg["actor_rollout_ref"]["model"]["path"] == str(out / "models" / "qwen2.5-vl-7b-random")
    # the model: Qwen2.5-VL-7B-Instruct's sizes (its published config.json), no weights in a dry run
    model = out / "models" / "qwen2.5-vl-7b-random"
    text = yaml.safe_load((model / "config.json").read_text())["text_config"]
    assert (text["hidden_size"], text["num_hidden_layers"], text["vocab_size"]) == (3584, 28, 152064)
    assert not list(model.glob("*.safetensors"))
    # the data: 32 prompts of one 672x672 image (451584 pixels, the official upper bound: kept as is)
    table = pq.read_table(out / "data_7b" / "train.parquet").to_pylist()
    assert len(table) == 32
    sizes = {Image.open(io.BytesIO(row["images"][0]["bytes"])).size for row in table}
    assert sizes == {(672, 672)}
