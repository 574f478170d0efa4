"""The stage recipes' ``--dry-run``: check a run's command on any machine before a GPU is used.

``bash recipes/stage{1_sft,2_sft,3_grpo}.sh ... --dry-run`` hands the command it would run to
``python -m emocaliber_rl.recipe_dry_run --kind sft|grpo -- COMMAND...``, which

1. composes the config from the command's ``--config-path``/``--config-name`` and overrides,
   as veRL's Hydra entry point would, and prints it;
2. validates it with veRL's own checks: ``verl.utils.config.validate_config`` for the PPO
   trainer (what ``verl.trainer.main_ppo.main`` calls first), the dataclass conversion of the
   engine, optimizer, checkpoint and profiler sections for the SFT trainer (what
   ``SFTTrainer._build_config`` does), plus the SFT trainer's batch split over the GPUs;
3. checks the paths: data files and the reward file exist, a model is a directory with a
   config.json or a hub id; with ``--absolute`` (a Ray job, several nodes) relative paths are
   refused, since each node resolves them in a working directory of its own;
4. prints the command and the per-GPU memory estimate (:mod:`emocaliber_rl.memory_estimate`).

Exit 0 when all holds; otherwise one line per problem on stderr and exit 2.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from emocaliber_rl.memory_estimate import KNOWN_CONFIGS, RunShape, checkpoint_bytes, report

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def split_command(command: list[str]) -> tuple[Path, str, list[str]]:
    """``(config_dir, config_name, overrides)`` of a ``python -m verl.trainer.X`` command line (torchrun's
    own arguments before ``-m verl.trainer...`` are skipped)."""
    start = next(i for i, arg in enumerate(command) if arg.startswith("verl.trainer.")) + 1
    config_dir = config_name = None
    overrides = []
    for arg in command[start:]:
        if arg.startswith("--config-path="):
            config_dir = Path(arg.split("=", 1)[1])
        elif arg.startswith("--config-name="):
            config_name = arg.split("=", 1)[1]
        else:
            overrides.append(arg)
    if config_dir is None or config_name is None:
        raise ValueError("the command has no --config-path=/--config-name=")
    return config_dir, config_name, overrides


def compose(config_dir: Path, config_name: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return hydra_compose(config_name=config_name, overrides=overrides)


def validate(cfg, kind: str) -> None:
    """veRL's own checks of a composed config (raises what veRL raises)."""
    if kind == "grpo":
        import verl  # noqa: F401  (imports the plug-ins: grpo_no_std is registered)
        from verl.trainer.ppo.utils import need_critic, need_reference_policy
        from verl.utils.config import validate_config

        validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
        return
    from verl.utils.config import omega_conf_to_dataclass

    for section in ("engine", "optim", "checkpoint", "profiler"):
        omega_conf_to_dataclass(cfg[section])
    # SFTTrainer splits the global batch evenly over the data-parallel ranks (train_batch_size // dp)
    world = cfg.trainer.nnodes * cfg.trainer.n_gpus_per_node
    if cfg.data.train_batch_size % world:
        raise ValueError(f"data.train_batch_size={cfg.data.train_batch_size} is not divisible by "
                         f"{world} GPUs (trainer.nnodes x trainer.n_gpus_per_node)")


def _files(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in value.split(",") if v]
    return [str(v) for v in value]


def check_paths(cfg, kind: str, absolute: bool, cwd: Path) -> tuple[list[str], list[str]]:
    """``(notes, problems)`` about every path the run reads or writes."""
    from omegaconf import OmegaConf

    notes: list[str] = []
    problems: list[str] = []
    sel = (lambda key: OmegaConf.select(cfg, key))
    data = [("data.train_files", f) for f in _files(sel("data.train_files"))]
    data += [("data.val_files", f) for f in _files(sel("data.val_files"))]
    if kind == "grpo":
        data.append(("reward.custom_reward_function.path", sel("reward.custom_reward_function.path")))
    for key, path in data:
        p = Path(path)
        # the reward file stays relative under a Ray job: each node's copy of the working_dir has it
        if absolute and not p.is_absolute() and key != "reward.custom_reward_function.path":
            problems.append(f"{key}={path}: relative; a Ray job or a multi-node run needs an absolute path")
        elif not (cwd / p).is_file():
            problems.append(f"{key}={path}: no such file")
        else:
            notes.append(f"{key}: {(cwd / p).resolve()}")
    model_key = "actor_rollout_ref.model.path" if kind == "grpo" else "model.path"
    model = str(sel(model_key))
    model_dir = cwd / model
    if model_dir.is_dir():
        if absolute and not Path(model).is_absolute():
            problems.append(f"{model_key}={model}: relative; a Ray job or a multi-node run needs an absolute path")
        elif not (model_dir / "config.json").is_file():
            problems.append(f"{model_key}={model}: the directory has no config.json")
        else:
            notes.append(f"{model_key}: {model_dir.resolve()}")
    elif HUB_ID.match(model) and not model.startswith("."):
        notes.append(f"{model_key}: {model} is no directory here: a hub id, downloaded at the run's start")
    else:
        problems.append(f"{model_key}={model}: no such directory")
    out = str(sel("trainer.default_local_dir"))
    if absolute and not Path(out).is_absolute():
        problems.append(f"trainer.default_local_dir={out}: relative; a Ray job or a multi-node run needs an absolute path")
    else:
        notes.append(f"trainer.default_local_dir: {(cwd / out).resolve()} (written by the run)")
    return notes, problems


def model_config(cfg, kind: str, cwd: Path) -> dict | None:
    from omegaconf import OmegaConf

    model = str(OmegaConf.select(cfg, "actor_rollout_ref.model.path" if kind == "grpo" else "model.path"))
    path = cwd / model / "config.json"
    if path.is_file():
        return json.loads(path.read_text())
    return KNOWN_CONFIGS.get(model)


def gpu_memory_gib() -> tuple[float, bool]:
    """The smallest visible card's memory in GiB from nvidia-smi, else 80 (an 80 GB card), assumed."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        mib = [float(x) for x in out.split()]
        if mib:
            return min(mib) / 1024, True
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    return 80.0, False


def run_shape(cfg, kind: str, gib: float) -> RunShape:
    from omegaconf import OmegaConf

    sel = (lambda key, default=None: OmegaConf.select(cfg, key, default=default))
    world = int(cfg.trainer.nnodes) * int(cfg.trainer.n_gpus_per_node)
    if kind == "grpo":
        from verl.trainer.ppo.utils import need_reference_policy

        actor = "actor_rollout_ref.actor"
        if sel(f"{actor}.use_dynamic_bsz"):
            tokens = int(sel(f"{actor}.ppo_max_token_len_per_gpu"))
        else:
            tokens = int(sel(f"{actor}.ppo_micro_batch_size_per_gpu")) * (
                int(cfg.data.max_prompt_length) + int(cfg.data.max_response_length))
        freeze = "visual" in os.environ.get("EMOCALIBER_FREEZE_MODULES", "").split(",")
        return RunShape(world_size=world, tokens_per_micro_batch=tokens,
                        train_vision=not sel(f"{actor}.freeze_vision_tower", False) and not freeze,
                        model_dtype=sel(f"{actor}.fsdp_config.model_dtype", "fp32"),
                        ref_dtype=sel("actor_rollout_ref.ref.fsdp_config.model_dtype", "fp32")
                        if need_reference_policy(cfg) else None,
                        vllm_fraction=float(sel("actor_rollout_ref.rollout.gpu_memory_utilization", 0.0)),
                        gpu_memory_gib=gib,
                        param_offload=bool(sel(f"{actor}.fsdp_config.param_offload", False)),
                        optimizer_offload=bool(sel(f"{actor}.fsdp_config.optimizer_offload", False)),
                        ref_offload=bool(sel("actor_rollout_ref.ref.fsdp_config.param_offload", False)))
    if sel("data.use_dynamic_bsz"):
        tokens = int(sel("data.max_token_len_per_gpu"))
    else:
        tokens = int(sel("data.micro_batch_size_per_gpu")) * int(sel("data.max_length"))
    freeze = "visual" in os.environ.get("EMOCALIBER_FREEZE_MODULES", "").split(",")
    return RunShape(world_size=world, tokens_per_micro_batch=tokens, train_vision=not freeze,
                    model_dtype=sel("engine.model_dtype", "fp32"), gpu_memory_gib=gib,
                    param_offload=bool(sel("engine.param_offload", False)),
                    optimizer_offload=bool(sel("engine.optimizer_offload", False)))


USAGE = "usage: python -m emocaliber_rl.recipe_dry_run --kind sft|grpo [--absolute] [--tag TAG] -- COMMAND..."


def parse_args(argv: list[str]) -> tuple[str, bool, str, list[str]]:
    """``(kind, absolute, tag, command)`` from the recipes' fixed call (no argparse outside cli/).

    Raises:
        ValueError: anything else, with the usage line.
    """
    kind, absolute, tag = None, False, "dry-run"
    i = 0
    while i < len(argv) and argv[i] != "--":
        if argv[i] == "--kind" and i + 1 < len(argv) and argv[i + 1] in ("sft", "grpo"):
            kind, i = argv[i + 1], i + 2
        elif argv[i] == "--tag" and i + 1 < len(argv):
            tag, i = argv[i + 1], i + 2
        elif argv[i] == "--absolute":
            absolute, i = True, i + 1
        else:
            raise ValueError(f"unexpected {argv[i]!r}; {USAGE}")
    if kind is None or i + 1 >= len(argv):
        raise ValueError(USAGE)
    return kind, absolute, tag, argv[i + 1:]


def main(argv: list[str] | None = None) -> int:
    try:
        kind, absolute, tag_name, command = parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        print(f"recipe_dry_run: {exc}", file=sys.stderr)
        return 2
    tag = f"[{tag_name}]"
    cwd = Path.cwd()
    from omegaconf import OmegaConf

    try:
        config_dir, config_name, overrides = split_command(command)
        cfg = compose(config_dir, config_name, overrides)
    except Exception as exc:  # noqa: BLE001  (Hydra's errors name the override; one line, no traceback)
        print(f"{tag} the config does not compose: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    print(f"{tag} composed config ({config_dir / config_name}.yaml with the command's overrides):")
    print(OmegaConf.to_yaml(cfg))
    try:
        validate(cfg, kind)
    except Exception as exc:  # noqa: BLE001  (veRL raises AssertionError/ValueError; one line each)
        print(f"{tag} veRL rejects the config: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    check = "validate_config" if kind == "grpo" else "its SFT config dataclasses and batch split"
    print(f"{tag} veRL's own checks pass ({check})")

    notes, problems = check_paths(cfg, kind, absolute, cwd)
    for note in notes:
        print(f"{tag} path {note}")
    for problem in problems:
        print(f"{tag} {problem}", file=sys.stderr)
    if problems:
        return 2

    print(f"{tag} command: {shlex.join(command)}")
    config = model_config(cfg, kind, cwd)
    if config is None:
        print(f"{tag} memory estimate skipped: no config.json for the model here and no table entry for it")
        return 0
    gib, measured = gpu_memory_gib()
    shape = run_shape(cfg, kind, gib)
    where = "from nvidia-smi" if measured else "assumed: no GPU visible here"
    print(f"{tag} per-GPU memory estimate (card: {gib:g} GiB, {where}; "
          "assumptions in emocaliber_rl/memory_estimate.py):")
    for line in report(config, shape):
        print(f"{tag} {line}")
    print(f"{tag} {disk_line(cfg, kind, config, shape)}")
    return 0


def disk_line(cfg, kind: str, config: dict, shape: RunShape) -> str:
    """One checkpoint's disk and how many the config keeps (veRL keeps every one when the limit is null)."""
    from omegaconf import OmegaConf

    sel = (lambda key: OmegaConf.select(cfg, key))
    contents = sel("actor_rollout_ref.actor.checkpoint.save_contents" if kind == "grpo" else "checkpoint.save_contents")
    hf_dtype = None
    if "hf_model" in (contents or []):
        # the HF copy's dtype: EMOCALIBER_HF_DTYPE (emocaliber_rl/verl_plugins/hf_dtype.py), else veRL's fp32
        hf_dtype = os.environ.get("EMOCALIBER_HF_DTYPE") or shape.model_dtype
    disk = checkpoint_bytes(config, shape, hf_dtype)
    keep_key = "trainer.max_actor_ckpt_to_keep" if kind == "grpo" else "trainer.max_ckpt_to_keep"
    keep = sel(keep_key)
    gb = 1e9
    return (f"disk per checkpoint: {disk['total'] / gb:.1f} GB (model shards {disk['model'] / gb:.1f}, optimizer "
            f"{disk['optimizer'] / gb:.1f}, HF copy {disk['hf_model'] / gb:.1f}{' ' + hf_dtype if hf_dtype else ''}); "
            f"trainer.save_freq={sel('trainer.save_freq')} (and the last step), {keep_key}={keep}"
            f"{' (every checkpoint kept)' if keep is None else ''}")


if __name__ == "__main__":
    sys.exit(main())
