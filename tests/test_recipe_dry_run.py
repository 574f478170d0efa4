"""The stage recipes' --dry-run (emocaliber_rl/recipe_dry_run.py) and its per-GPU memory estimate
(emocaliber_rl/memory_estimate.py): composed, validated by veRL, paths checked, no GPU needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emocaliber_rl.memory_estimate import (
    GIB,
    QWEN2_5_VL_7B_INSTRUCT,
    RunShape,
    checkpoint_bytes,
    estimate,
    parameter_counts,
)

from .conftest import REPO_ROOT

RECIPES = REPO_ROOT / "recipes"

# hidden 8, MLP 16, 2 layers, 2 heads (head dim 4), 1 KV head, vocabulary 10, LM head untied;
# a vision tower of 1 block, width 4, MLP 6, 2x2x2 patches, merger 2x2 -> 8
TINY = {"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
        "num_key_value_heads": 1, "vocab_size": 10, "tie_word_embeddings": False,
        "vision_config": {"depth": 1, "hidden_size": 4, "intermediate_size": 6, "in_chans": 3,
                          "out_hidden_size": 8, "patch_size": 2, "spatial_merge_size": 2, "temporal_patch_size": 2}}


def test_parameter_counts_by_hand() -> None:
    # a decoder layer: q 8*8+8=72, k and v 8*4+4=36 each, o 64, MLP 3*8*16=384, two norms 16 -> 608;
    # 2 layers 1216 + embedding and head 2*10*8=160 + final norm 8 = 1384.
    # vision: Conv3d 3*2*2*2*4=96; block: qkv 4*12+12=60, proj 16+4=20, gate/up 2*(24+6)=60,
    # down 24+4=28, norms 8 -> 176; merger: ln 4, 16*16+16=272, 16*8+8=136 -> 412; 96+176+412=684
    assert parameter_counts(TINY) == (1384, 684)
    # the published count of Qwen/Qwen2.5-VL-7B-Instruct (its model page: 8.29B; safetensors 8,292,166,656)
    assert sum(parameter_counts(QWEN2_5_VL_7B_INSTRUCT)) == 8_292_166_656


def test_estimate_by_hand() -> None:
    run = RunShape(world_size=2, tokens_per_micro_batch=3, train_vision=True, ref_dtype="fp32",
                   vllm_fraction=0.5, gpu_memory_gib=1.0)
    parts = estimate(TINY, run)
    # 2068 parameters over 2 GPUs: fp32 weights 4136 B, fp32 gradients 4136, Adam 8*2068/2=8272,
    # fp32 reference 4136; activations: 2 layers*3 tokens*8*2 B=96 + logits 3*10*(2+4)=180 -> 276
    assert (parts["weights"], parts["gradients"], parts["optimizer"], parts["reference"]) == (4136, 4136, 8272, 4136)
    assert parts["activations"] == 276 and parts["vllm"] == 0.5 * GIB
    assert parts["training_peak"] == 4136 + 8272 + 4136 + 4136 + 276
    assert parts["rollout_peak"] == 4136 + 8272 + 0.5 * GIB
    # stages 1-2: the vision tower is frozen: gradients and moments of the 1384 LM parameters only;
    # optimizer offload leaves the moments in host memory
    # one checkpoint: fp32 shards 4*2068=8272 B, Adam 8*2068=16544 B, a bf16 HF copy 2*2068=4136 B
    assert checkpoint_bytes(TINY, run, "bf16") == {"model": 8272, "optimizer": 16544, "hf_model": 4136,
                                                   "total": 8272 + 16544 + 4136}
    frozen = estimate(TINY, RunShape(world_size=2, tokens_per_micro_batch=3, train_vision=False, optimizer_offload=True))
    assert (frozen["gradients"], frozen["optimizer"], frozen["reference"], frozen["vllm"]) == (2768, 0, 0, 0)


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("RAY_JOB_CONFIG_JSON_ENV_VAR", None)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.pop("EMOCALIBER_HF_DTYPE", None)
    return env


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    train, val = tmp_path / "train.parquet", tmp_path / "val.parquet"
    train.write_bytes(b"")
    val.write_bytes(b"")
    return train, val


@pytest.mark.parametrize(("script", "extra", "checks"), [
    ("stage3_grpo.sh", ["--val"], "veRL's own checks pass (validate_config)"),
    ("stage1_sft.sh", [], "veRL's own checks pass (its SFT config dataclasses and batch split)"),
])
def test_dry_run_of_the_7b_on_8_gpus(script: str, extra: list[str], checks: str, data, tmp_path: Path) -> None:
    train, val = data
    args = ["--profile", "gpu", "--dry-run", "--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--train", str(train),
            "--out", str(tmp_path / "out")] + ([*extra, str(val)] if extra else [])
    proc = subprocess.run(["bash", str(RECIPES / script), *args], env=_env(), capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert checks in out
    assert f"path data.train_files: {train}" in out
    assert "Qwen/Qwen2.5-VL-7B-Instruct is no directory here: a hub id" in out
    assert "parameters: 8,292,166,656" in out and "sharded over 8 GPU(s)" in out
    assert "training phase peak" in out
    command = next(line for line in out.splitlines() if "] command: " in line)
    assert "trainer.n_gpus_per_node=8" in command and f"data.train_files={train}" in command
    if script == "stage3_grpo.sh":
        assert "vLLM share (gpu_memory_utilization 0.6)" in out and "rollout phase peak" in out
        assert "reference model (fp32)" in out
        # 8,292,166,656 parameters: fp32 shards 33.2 GB, Adam 66.3 GB, bf16 HF copy 16.6 GB (GPU profile)
        assert ("disk per checkpoint: 116.1 GB (model shards 33.2, optimizer 66.3, HF copy 16.6 bfloat16); "
                "trainer.save_freq=50") in out
    else:
        assert "--nproc_per_node=8" in command and "vLLM share" not in out
        # the vision tower frozen: Adam for the 7,615,616,512 LM parameters only, 60.9 GB
        assert "disk per checkpoint: 110.7 GB (model shards 33.2, optimizer 60.9, HF copy 16.6 bfloat16)" in out


def test_dry_run_refuses_relative_paths_for_several_nodes(data, tmp_path: Path) -> None:
    """--nnodes 2: every node resolves a relative path in its own directory; refused, one line each."""
    train, val = data
    proc = subprocess.run(["bash", str(RECIPES / "stage3_grpo.sh"), "--dry-run", "--profile", "gpu-sdpa",
                           "--nnodes", "2", "--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--train", train.name,
                           "--val", str(val), "--out", "ckpt/s3"], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 2
    assert "[stage3_grpo] data.train_files=train.parquet: relative; a Ray job or a multi-node run needs an absolute path" \
        in proc.stderr
    assert "[stage3_grpo] trainer.default_local_dir=ckpt/s3: relative" in proc.stderr
    assert "Traceback" not in proc.stderr and "] command: " not in proc.stdout


def test_dry_run_refuses_a_missing_file_and_a_batch_that_does_not_split(tmp_path: Path) -> None:
    from emocaliber_rl.recipe_dry_run import main

    base = [sys.executable, "-m", "verl.trainer.sft_trainer", f"--config-path={RECIPES / 'config'}",
            "--config-name=stage1_sft", "model.path=Qwen/Qwen2.5-VL-7B-Instruct", "trainer.nnodes=1",
            f"trainer.default_local_dir={tmp_path / 'o'}", "data.val_files=null"]
    missing = subprocess.run([sys.executable, "-m", "emocaliber_rl.recipe_dry_run", "--kind", "sft", "--",
                              *base, "trainer.n_gpus_per_node=8", f"data.train_files={tmp_path / 'nope.parquet'}"],
                             env=_env(), capture_output=True, text=True, timeout=300, check=False)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == f"[dry-run] data.train_files={tmp_path / 'nope.parquet'}: no such file"
    (tmp_path / "t.parquet").write_bytes(b"")
    assert main(["--kind", "ppo", "--", *base]) == 2  # the recipes' fixed call only
    # 128 sequences per step over 3 GPUs: veRL's SFT trainer would give each 128 // 3 = 42
    assert main(["--kind", "sft", "--", *base, "trainer.n_gpus_per_node=3",
                 f"data.train_files={tmp_path / 't.parquet'}"]) == 2


def test_smoke_plan_by_hand() -> None:
    """gpu_smoke.sh's 7B step: full when it fits, offloaded when only that fits and the host holds it,
    else skipped. TINY over 2 GPUs (test_estimate_by_hand): 20956 B per GPU without offload;
    offloaded, 276 B (activations) on the GPU and 4136+4136+8272+4136 = 20680 B per GPU on the host."""
    from emocaliber_rl.memory_estimate import smoke_plan

    def run(card_bytes: float) -> RunShape:
        return RunShape(world_size=2, tokens_per_micro_batch=3, train_vision=True, ref_dtype="fp32",
                        gpu_memory_gib=card_bytes / GIB)

    assert smoke_plan(TINY, run(21000), 2, 1.0)[0] == "full"
    assert smoke_plan(TINY, run(20000), 2, 41360 / GIB)[0] == "offload"  # 2 GPUs x 20680 B on the host
    plan, lines = smoke_plan(TINY, run(20000), 2, 41359 / GIB)
    assert plan == "skip" and "of host memory for 2 GPU(s)" in lines[-1]


@pytest.mark.parametrize(("gpus", "plan"), [(8, "full"), (4, "full"), (2, "skip"), (1, "skip")])
def test_smoke_plan_of_the_7b_on_80gb_cards(gpus: int, plan: str) -> None:
    """8.29e9 parameters x 16 B (fp32 weights, gradients, Adam) + 4 B (fp32 reference) = 165.8 GB of
    model state: on 2 GPUs 82.9 GB each before activations, over an 80 GiB card; offloaded, all of
    it (154.5 GiB) would sit in a 128 GiB host. On 4 GPUs: 41.5 GB + 17.0 GiB of activations fits."""
    from emocaliber_rl.memory_estimate import smoke_report

    assert smoke_report(gpus, 80 * 1024, 128 * 1024**2)[-1] == f"plan: {plan}"
