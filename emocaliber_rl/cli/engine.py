"""The options of every command that runs a model (``stage2 generate``, ``eval run``), as parent
parsers, and the helpers that turn them into an engine, sampling settings and a run manifest.

Heavy imports (torch, transformers, vLLM) happen inside the helpers so that ``--help`` stays
instant.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emocaliber_rl.cli.common import pixel_bounds_from_args, pixel_options
from emocaliber_rl.inference.backends import BACKENDS

if TYPE_CHECKING:
    from emocaliber_rl.inference.engine import Engine, SamplingConfig


def engine_options() -> list[argparse.ArgumentParser]:
    """Parent parsers: ``--model``, ``--backend`` and its settings, and the pixel bounds."""
    parent = argparse.ArgumentParser(add_help=False)
    g = parent.add_argument_group("model and engine")
    g.add_argument("--model", required=True, metavar="PATH",
                   help="HF model directory or hub id (the scaffold model for stage 2, any VLM for eval)")
    g.add_argument("--backend", choices=tuple(BACKENDS), default="vllm",
                   help="vllm: vLLM's offline LLM (GPU, or CPU with vLLM's CPU build); hf: "
                        "transformers generate, batched with left padding (default: vllm)")
    g.add_argument("--dtype", default="auto",
                   help="weight dtype: auto (as stored; vllm on CPU computes in float32, bf16 GEMMs "
                        "being ~2.8x slower without bf16 matrix units), float32, bfloat16, float16 "
                        "(default: auto)")
    g.add_argument("--batch-size", type=int, default=64,
                   help="prompts per engine call; also the unit of resumption: each batch is "
                        "appended and fsynced before the next starts (default: 64)")
    g.add_argument("--max-model-len", type=int, default=None,
                   help="vllm: prompt + completion tokens per sequence (default: the model's)")
    g.add_argument("--kv-cache-memory-bytes", type=int, default=None,
                   help="vllm: KV-cache size in bytes (default: vLLM's on GPU, 64 MiB on CPU, "
                        "which vLLM's CPU build needs to start)")
    g.add_argument("--gpu-memory-utilization", type=float, default=None,
                   help="vllm: fraction of GPU memory vLLM may take (default: vLLM's, 0.9)")
    g.add_argument("--tensor-parallel-size", type=int, default=1,
                   help="vllm: GPUs to shard the model over (default: 1)")
    g.add_argument("--device", default=None,
                   help="hf: torch device (default: cuda when available, else cpu)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return [parent, pixel_options("Each image is resized into these bounds before the model "
                                  "processor sees it, as the training exports store them.")]


def sampling_options(default_temperature: float = 0.7) -> argparse.ArgumentParser:
    """Parent parser: temperature, top-p, length cap, greedy, seed."""
    parent = argparse.ArgumentParser(add_help=False)
    g = parent.add_argument_group("sampling")
    g.add_argument("--temperature", type=float, default=default_temperature,
                   help=f"sampling temperature (default: {default_temperature}, the official "
                        "release's inference setting)")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default: 1.0)")
    g.add_argument("--max-new-tokens", type=int, default=1024,
                   help="completion length cap (default: 1024, the official release's)")
    g.add_argument("--greedy", action="store_true",
                   help="greedy decoding (temperature 0); overrides --temperature/--top-p")
    g.add_argument("--seed", type=int, default=0,
                   help="run seed; each sample's seed is derived from it and the sample id, so "
                        "with vllm a resumed run draws what an unbroken one would (hf seeds a "
                        "whole batch with its first sample's seed) (default: 0)")
    return parent


def run_options() -> argparse.ArgumentParser:
    """Parent parser: ``--force-new`` (the resume rule's opt-out)."""
    parent = argparse.ArgumentParser(add_help=False)
    g = parent.add_argument_group("resuming")
    g.add_argument("--force-new", action="store_true",
                   help="start a new run even if the output holds one: move it aside as "
                        "OUT-STEM.<run id>.jsonl (e.g. after retraining a checkpoint in place; "
                        "weights are not hashed). Without it a rerun resumes a run with the same "
                        "settings (model, sampling, prompts, engine) and refuses other settings, "
                        "naming them")
    return parent


def model_run_options() -> list[argparse.ArgumentParser]:
    """Every parent parser of a command that runs a model over prompts."""
    return [*engine_options(), sampling_options(), run_options()]


def run_settings_from_args(args: argparse.Namespace, prompts: Any, **extra: Any) -> dict[str, Any]:
    """The run-manifest settings of a generation command, from its flags (before any engine)."""
    from emocaliber_rl.inference.resumable import generation_settings

    return generation_settings(model=args.model, backend=args.backend, dtype=args.dtype,
                               pixel_bounds=pixel_bounds_from_args(args),
                               sampling=sampling_from_args(args), prompts=prompts, **extra)


def precheck_run(args: argparse.Namespace, out: Any, kind: str, settings: dict[str, Any]) -> None:
    """Apply the resume rule without writing, so a refused resume never loads a model."""
    from emocaliber_rl.run_manifest import open_run

    open_run(out, kind, settings, force_new=args.force_new, dry_run=True)


def sampling_from_args(args: argparse.Namespace) -> SamplingConfig:
    from emocaliber_rl.inference.engine import SamplingConfig

    return SamplingConfig(
        temperature=0.0 if args.greedy else args.temperature,
        top_p=1.0 if args.greedy else args.top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().upper() in ("1", "ON", "YES", "TRUE")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def check_model(model: str) -> None:
    """Refuse a ``--model`` that cannot load, before any engine starts (a typo otherwise
    surfaces as a transformers error about repo ids after seconds of imports).

    Accepted: a folder holding ``config.json``; a hub id (``org/name``) when it is in the local
    cache or online use is allowed (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` unset) and its
    first part is not a local folder (``models/base`` with a ``models/`` folder here is a
    mistyped path, not a hub id).

    Raises:
        InputFileError: naming the path and what is wrong with it.
    """
    from emocaliber_rl.jsonl import InputFileError

    p = Path(model).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise InputFileError(f"--model {model}: the folder has no config.json, so it is not a "
                                 "Hugging Face model folder (give the folder save_pretrained wrote)")
        return
    if p.exists():
        raise InputFileError(f"--model {model}: is a file; give the model's folder")
    if _HUB_ID.match(model):
        from emocaliber_rl.run_manifest import model_fingerprint

        if model_fingerprint(model)["config_sha256"] is not None:
            return  # in the local hub cache
        if Path(model.split("/")[0]).is_dir():
            raise InputFileError(f"--model {model}: no such folder (and {model.split('/')[0]}/ is a "
                                 "local folder, so this is not a hub id)")
        if not _offline():
            return
        raise InputFileError(f"--model {model}: no such folder, and not in the local hub cache "
                             "(HF_HUB_OFFLINE is set, so it is not downloaded)")
    raise InputFileError(f"--model {model}: no such folder")


def engine_from_args(args: argparse.Namespace) -> Engine:
    from emocaliber_rl.inference.backends import make_engine

    bounds = pixel_bounds_from_args(args)

    if args.backend == "vllm":
        from emocaliber_rl.inference.vllm_engine import on_gpu

        opts: dict[str, Any] = {"dtype": args.dtype, "max_model_len": args.max_model_len,
                                "kv_cache_memory_bytes": args.kv_cache_memory_bytes,
                                "tensor_parallel_size": args.tensor_parallel_size,
                                "seed": args.seed, "pixel_bounds": bounds,
                                # this command owns its process: vLLM's engine runs in it, not in
                                # two more processes that each import torch, vLLM and the tokenizer
                                "in_process": not on_gpu() and args.tensor_parallel_size == 1}
        if args.gpu_memory_utilization is not None:
            opts["gpu_memory_utilization"] = args.gpu_memory_utilization
        return make_engine("vllm", args.model, **opts)
    return make_engine("hf", args.model, dtype=args.dtype, device=args.device, pixel_bounds=bounds)


def print_stats(prefix: str, stats: dict[str, Any]) -> None:
    print(f"{prefix}: {stats['written']} written, {stats['skipped']} already done"
          + (f", {stats['duplicates']} duplicate ids skipped" if stats["duplicates"] else "")
          + f"; {stats['samples_per_s']:.2f} samples/s, {stats['tokens_per_s']:.1f} tokens/s",
          file=sys.stderr)
    if stats.get("torn_bytes_dropped"):
        print(f"{prefix}: dropped a torn last line ({stats['torn_bytes_dropped']} bytes) "
              "left by an interrupted run", file=sys.stderr)
    failures = stats.get("failures") or []
    for item in failures[:20]:
        print(f"{prefix}: skipped {item['id']}: {item['error']}", file=sys.stderr)
    if len(failures) > 20:
        print(f"{prefix}: ... and {len(failures) - 20} more", file=sys.stderr)
    if failures:
        print(f"{prefix}: {len(failures)} skipped (no row written; listed in "
              f"{stats['errors_path']}); fix them and rerun the same command to fill them in "
              "(exit code 3)", file=sys.stderr)


def exit_code(stats: dict[str, Any]) -> int:
    """0: every item has its row; 3: some were skipped (a rerun retries them)."""
    return 3 if stats.get("failed") else 0
