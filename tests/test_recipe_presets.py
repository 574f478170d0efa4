"""Loss presets: the Hydra config groups sft_preset / grpo_preset carry their keys into the config
veRL composes, by default and through the recipes' --preset flag (veRL's own entry points with
Hydra's --cfg job, which prints the composed job config and runs nothing)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from .conftest import REPO_ROOT

RECIPES = REPO_ROOT / "recipes"

# (stage config, group, preset) -> expected keys; written from the release's scripts and Eq. 5
EXPECTED = {
    ("stage1_sft", "official"): {"optim.lr": 1e-5, "optim.lr_warmup_steps_ratio": 0.05,
                                 "optim.lr_scheduler_type": "cosine", "optim.weight_decay": 0.1},
    ("stage1_sft", "paper"): {"optim.lr": 1e-5, "optim.lr_warmup_steps_ratio": 0.0,
                              "optim.lr_scheduler_type": "constant", "optim.weight_decay": 0.0},
    ("stage2_sft", "official"): {"optim.lr": 4e-6, "optim.lr_warmup_steps_ratio": 0.05,
                                 "optim.lr_scheduler_type": "cosine", "optim.weight_decay": 0.1},
    ("stage2_sft", "paper"): {"optim.lr": 4e-6, "optim.lr_warmup_steps_ratio": 0.0,
                              "optim.lr_scheduler_type": "constant", "optim.weight_decay": 0.0},
    ("stage3_grpo", "official"): {"actor_rollout_ref.actor.loss_agg_mode": "token-mean",
                                  "actor_rollout_ref.actor.clip_ratio_c": 3.0,
                                  "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio": 0.0,
                                  "actor_rollout_ref.actor.optim.lr": 1e-6},
    ("stage3_grpo", "paper"): {"actor_rollout_ref.actor.loss_agg_mode": "seq-mean-token-mean",
                               "actor_rollout_ref.actor.clip_ratio_c": 3.0,
                               "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio": 0.0,
                               "actor_rollout_ref.actor.optim.lr": 1e-6},
}
GROUP = {"stage1_sft": "sft_preset", "stage2_sft": "sft_preset", "stage3_grpo": "grpo_preset"}


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def _compose(stage: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(RECIPES / "config"), version_base=None):
        return compose(config_name=stage, overrides=overrides)


@pytest.mark.parametrize(("stage", "preset"), sorted(EXPECTED))
def test_composed_config_carries_the_preset(stage: str, preset: str) -> None:
    cfg = _compose(stage, [f"{GROUP[stage]}={preset}"])
    for key, value in EXPECTED[(stage, preset)].items():
        assert _get(cfg, key) == value, key


@pytest.mark.parametrize("stage", sorted(GROUP))
def test_default_is_paper_and_a_command_line_key_still_wins(stage: str) -> None:
    default = _compose(stage, [])
    for key, value in EXPECTED[(stage, "paper")].items():
        assert _get(default, key) == value, key
    key = ("optim.lr_warmup_steps_ratio" if GROUP[stage] == "sft_preset"
           else "actor_rollout_ref.actor.loss_agg_mode")
    value = 0.2 if GROUP[stage] == "sft_preset" else "seq-mean-token-sum"
    cfg = _compose(stage, [f"{GROUP[stage]}=official", f"{key}={value}"])
    assert _get(cfg, key) == value


def test_unknown_preset_is_a_hydra_error() -> None:
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="grpo_preset"):
        _compose("stage3_grpo", ["grpo_preset=paperr"])


def test_stage3_paper_preset_passes_verl_validation() -> None:
    import verl  # noqa: F401  (plug-in: registers grpo_no_std)
    from verl.utils.config import validate_config

    cfg = _compose("stage3_grpo", ["actor_rollout_ref.model.path=m", "data.train_files=t",
                                   "data.val_files=v", "grpo_preset=paper"])
    validate_config(config=cfg, use_reference_policy=True, use_critic=False)


def _job_config(script: str, args: list[str], unset: tuple[str, ...] = (), **extra_env: str) -> dict:
    """veRL's composed job config of ``script ARGS``, run without the variables ``unset`` names."""
    env = {**{k: v for k, v in os.environ.items() if k not in unset}, "PYTHON": sys.executable,
           "PYTHONPATH": str(REPO_ROOT), **extra_env}
    proc = subprocess.run(["bash", str(RECIPES / script), *args, "--", "--cfg", "job"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("[stage")) + 1
    return yaml.safe_load("\n".join(lines[start:]))


# stage 2's confidence mask as a command line sets it (value only, Eq. 3 without the tags): the
# section veRL hands ConfidenceOnlySFTDataset (tests/test_confidence_sft_dataset.py builds each
# mask; tests/test_confidence_sft_recipe.py trains on the default one)
VALUE_ONLY = {"data.confidence_mask.include_open_tag": False, "data.confidence_mask.include_close_tag": False,
              "data.confidence_mask.include_end_of_turn": False}


# gpu-sdpa: the GPU composition without flash-attn, which `--profile gpu` requires installed
@pytest.mark.parametrize(("script", "args", "stage", "keys"), [
    ("stage2_sft.sh", ["--model", "m", "--train", "t.parquet", "--nproc", "1", "--profile", "gpu-sdpa"], "stage2_sft",
     VALUE_ONLY),
    ("stage3_grpo.sh", ["--model", "m", "--train", "t.parquet", "--val", "v.parquet",
                        "--gpus-per-node", "1", "--profile", "gpu-sdpa"], "stage3_grpo", {}),
])
def test_recipe_preset_flag_reaches_verls_composed_config(script: str, args: list[str], stage: str,
                                                          keys: dict) -> None:
    cfg = _job_config(script, [*args, "--preset", "official", *(f"{k}={str(v).lower()}" for k, v in keys.items())])
    for key, value in EXPECTED[(stage, "official")].items():
        assert _get(cfg, key) == value, key
    for key, value in keys.items():
        assert _get(cfg, key) is value, key
    if stage == "stage2_sft":  # the keys a command line leaves alone keep the stage config's values
        assert _get(cfg, "data.confidence_mask.include_response") is False
        assert _get(cfg, "data.custom_cls.name") == "ConfidenceOnlySFTDataset"
    if stage == "stage3_grpo":
        # the reward preset follows --preset unless given
        assert cfg["reward"]["custom_reward_function"]["reward_kwargs"] == {"preset": "official"}


def test_sft_help_documents_the_preset() -> None:
    proc = subprocess.run(["bash", str(RECIPES / "stage1_sft.sh"), "--help"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0 and "--preset P" in proc.stdout and "official" in proc.stdout


# --profile cpu: the CPU keys (recipes/config/{sft,grpo}_profile/cpu.yaml) reach veRL's composed
# config beside the preset, and a command-line key still wins over them. Expected values are the
# ones the recipes passed as command-line overrides before the keys moved into YAML.
CPU_KEYS = {
    "stage1_sft.sh": {"trainer.device": "cpu", "model.override_config.attn_implementation": "sdpa",
                      "model.use_remove_padding": False, "model.enable_gradient_checkpointing": False,
                      "engine.use_torch_compile": False, "trainer.logger": ["console"],
                      "engine.mixed_precision": {"param_dtype": "fp32", "reduce_dtype": "fp32",
                                                 "buffer_dtype": "fp32"}},
    "stage3_grpo.sh": {"trainer.device": "cpu", "actor_rollout_ref.actor.strategy": "fsdp2",
                       "actor_rollout_ref.rollout.enable_sleep_mode": False,
                       "actor_rollout_ref.rollout.dtype": "float32", "actor_rollout_ref.rollout.n": 4,
                       "actor_rollout_ref.rollout.engine_kwargs.vllm.distributed_executor_backend": "uni",
                       "transfer_queue.backend.SimpleStorage.num_data_storage_units": 1,
                       "actor_rollout_ref.ref.fsdp_config.mixed_precision": {
                           "param_dtype": "fp32", "reduce_dtype": "fp32", "buffer_dtype": "fp32"},
                       "ray_kwargs.ray_init.num_cpus": 16, "ray_kwargs.ray_init.num_gpus": 1},
}


# what the CPU runs are composed without: a cluster to join (the recipe would leave out Ray's
# logical resources) and the loss-rows switch (the stage-3 run is its unset case)
CPU_UNSET = ("RAY_ADDRESS", "EMOCALIBER_LOSS_ROWS")


@pytest.mark.parametrize(("script", "args", "stage", "override"), [
    ("stage1_sft.sh", ["--model", "m", "--train", "t.parquet"], "stage1_sft", ("data.num_workers", 2)),
    ("stage3_grpo.sh", ["--model", "m", "--train", "t.parquet", "--val", "v.parquet"], "stage3_grpo",
     ("data.train_batch_size", 8)),
])
def test_cpu_profile_keys_reach_verls_composed_config(script: str, args: list[str], stage: str,
                                                      override: tuple[str, int]) -> None:
    # the stage-3 run is also the loss-rows switch's "not set" case (below)
    cfg = _job_config(script, [*args, "--profile", "cpu", "--preset", "official", f"{override[0]}={override[1]}"],
                      unset=CPU_UNSET)
    for key, value in CPU_KEYS[script].items():
        assert _get(cfg, key) == value, key
    for key, value in EXPECTED[(stage, "official")].items():
        assert _get(cfg, key) == value, key
    assert _get(cfg, override[0]) == override[1]
    if script == "stage3_grpo.sh":
        _assert_worker_env(cfg, None)


def _assert_worker_env(cfg: dict, switch: str | None) -> None:
    """``EMOCALIBER_LOSS_ROWS`` reaches every Ray worker's environment when it is set (through
    ``ray_kwargs.ray_init.runtime_env.env_vars``, beside the plug-in's own variables), and is not
    invented when it is not."""
    env_vars = _get(cfg, "ray_kwargs.ray_init.runtime_env.env_vars")
    assert env_vars["VERL_PLATFORM"] == "cpu"
    # without it vLLM's CPU platform turns the profile's `uni` executor back into `mp`
    assert env_vars["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert env_vars.get("EMOCALIBER_LOSS_ROWS") == switch


def test_cpu_recipe_forwards_the_loss_rows_switch_to_ray_workers() -> None:
    """The switch set (its absence is test_cpu_profile_keys_reach_verls_composed_config's stage-3 run)."""
    cfg = _job_config("stage3_grpo.sh", ["--model", "m", "--train", "t.parquet", "--val", "v.parquet",
                                         "--profile", "cpu"], unset=CPU_UNSET, EMOCALIBER_LOSS_ROWS="0")
    _assert_worker_env(cfg, "0")
