"""The tool commands: `emocaliber setup-cpu`, `tiny-model`, `ray-package`, `gpu-check`."""

from __future__ import annotations

import argparse
import json
import sys

from emocaliber_rl.cli.common import add_command


def _run_setup_cpu(args: argparse.Namespace) -> int:
    from emocaliber_rl.cpu_env import setup_cpu

    results = setup_cpu(check_only=args.check)
    for r in results:
        state = "ok" if r.ok else "NEEDS FIX" if args.check else "FAILED"
        print(f"[{state:9}] {r.name:12} {'(changed) ' if r.changed else ''}{r.detail}")
    return 0 if all(r.ok for r in results) else 1


def _register_setup_cpu(sub: argparse._SubParsersAction) -> None:
    from emocaliber_rl import cpu_env

    p = add_command(
        sub, "setup-cpu",
        help="tools: apply the install fixes the CPU profile needs (torchvision, audio libs, vllm "
             "alias); recipes/install.sh runs it",
        description=cpu_env.__doc__,
        example="emocaliber setup-cpu --check",
    )
    p.add_argument("--check", action="store_true",
                   help="only report what needs fixing; exit 1 if anything does")
    p.set_defaults(func=_run_setup_cpu)


def _run_tiny_model(args: argparse.Namespace) -> int:
    from emocaliber_rl.tiny_model import build_tiny_model

    path = build_tiny_model(args.out_dir, seed=args.seed, dtype=args.dtype, text_layers=args.text_layers)
    print(f"tiny Qwen2.5-VL written to {path}")
    return 0


def _register_tiny_model(sub: argparse._SubParsersAction) -> None:
    from emocaliber_rl import tiny_model

    p = add_command(
        sub, "tiny-model",
        help="tools: build a tiny random-weight Qwen2.5-VL offline (for tests and the CPU demo)",
        description=tiny_model.__doc__,
        example="emocaliber tiny-model runs/tiny",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="directory to write the HF model into")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="stored weight dtype (default float32)")
    p.add_argument("--text-layers", type=int, default=2,
                   help="language-model layers (default 2, the tests' model; the demo builds 4, which "
                        "learns to generate the response format unaided)")
    p.set_defaults(func=_run_tiny_model)


def _run_ray_package(args: argparse.Namespace) -> int:
    from emocaliber_rl.ray_package import job_runtime_env, measure_package

    env_vars = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"emocaliber ray-package: --env wants NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        env_vars[name] = value
    size = measure_package(args.working_dir)
    if not size.fits:
        print(f"emocaliber ray-package: {size.refusal()}", file=sys.stderr)
        return 3
    if args.runtime_env_json:
        print(json.dumps(job_runtime_env(args.working_dir, env_vars)))
    else:
        print(f"{size.working_dir}: {size.n_files} files, {size.package_bytes / 1024 ** 2:.2f} MiB "
              f"(limit {size.limit / 1024 ** 2:.2f} MiB); biggest: "
              + ", ".join(f"{n} {b / 1024 ** 2:.2f} MiB" for n, b in size.biggest()))
    return 0


def _register_ray_package(sub: argparse._SubParsersAction) -> None:
    from emocaliber_rl import ray_package

    p = add_command(
        sub, "ray-package",
        help="tools: size the Ray job package of a working dir (the submit recipes' excludes); "
             "refuse it over Ray's limit",
        description=ray_package.__doc__,
        example="emocaliber ray-package . --runtime-env-json --env HF_HUB_OFFLINE=1",
    )
    p.add_argument("working_dir", nargs="?", default=".", help="directory the job ships (default: .)")
    p.add_argument("--runtime-env-json", action="store_true",
                   help="print the job's runtime_env (working_dir, excludes, env_vars) as JSON when it fits")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="an env_vars entry of that runtime_env (repeatable)")
    p.set_defaults(func=_run_ray_package)


def _run_gpu_check(args: argparse.Namespace) -> int:
    import os

    import torch

    from emocaliber_rl.gpu_check import (
        _version,
        check_driver,
        driver_versions,
        environment_problems,
        python_include_dir,
        toolchain_problems,
    )

    ok = True
    if not args.no_driver:
        drivers = driver_versions()
        oldest = min(drivers, key=_version) if drivers else None
        ok, msg = check_driver(torch.version.cuda, oldest)
        print(f"[gpu-check] torch {torch.__version__} (CUDA {torch.version.cuda}); GPUs: {len(drivers)}; {msg}",
              file=sys.stdout if ok else sys.stderr)
    problems = toolchain_problems(dict(os.environ), python_include_dir()) + environment_problems()
    for problem in problems:
        print(f"[gpu-check] {problem}", file=sys.stderr)
    if not problems:
        print("[gpu-check] C compiler and Python headers found; the gpu profile's pins installed and importable")
    return 0 if ok and not problems else 3


def _register_gpu_check(sub: argparse._SubParsersAction) -> None:
    from emocaliber_rl import gpu_check

    p = add_command(sub, "gpu-check",
                    help="tools: check this node's NVIDIA driver against the installed torch's CUDA, and Triton's toolchain",
                    description=gpu_check.__doc__, example="emocaliber gpu-check")
    p.add_argument("--no-driver", action="store_true",
                   help="skip the driver check (a node without GPUs): the toolchain and the environment only")
    p.set_defaults(func=_run_gpu_check)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the tool commands (listed last in ``emocaliber --help``)."""
    _register_setup_cpu(sub)
    _register_tiny_model(sub)
    _register_ray_package(sub)
    _register_gpu_check(sub)
