"""`emocaliber demo`: the whole three-stage pipeline on a tiny model, on CPU (``emocaliber_rl.demo``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from emocaliber_rl.cli.common import add_command, positive_int
from emocaliber_rl.inference.backends import BACKENDS


def stage_env(glibc_defaults: bool, environ: Mapping[str, str]) -> dict[str, str]:
    """What the demo adds to its stages' environment: the kept-heap variables the user has not set."""
    from emocaliber_rl.demo import KEPT_HEAP_ENV

    return {} if glibc_defaults else {k: v for k, v in KEPT_HEAP_ENV.items() if k not in environ}


def _run(args: argparse.Namespace) -> int:
    from emocaliber_rl.demo import Demo
    from emocaliber_rl.pipeline_runner import StageFailed, run_pipeline

    out = Path(args.out).resolve()
    demo = Demo(out, seed=args.seed, eval_backend=args.eval_backend, parallel=args.parallel)
    print(f"emocaliber demo -> {out}" + (" (resuming)" if args.resume else ""), flush=True)
    env = stage_env(args.glibc_defaults, os.environ)
    if env:
        print("stages run with " + " ".join(f"{k}={v}" for k, v in env.items())
              + " (glibc keeps freed big blocks; --glibc-defaults to not)", flush=True)
    try:
        state = run_pipeline(demo.stages(), out, resume=args.resume, echo=lambda m: print(m, flush=True), env=env,
                             parallel=args.parallel)
    except StageFailed as e:
        print(f"\nFAILED: {e}\nFix the cause and continue with: emocaliber demo --out {args.out} --resume",
              file=sys.stderr)
        return 1
    print(json.dumps({name: s["seconds"] for name, s in state["stages"].items()}))
    print(f"done in {state['wall_s']:.0f} s; index: {out / 'README.md'}; report: {out / 'report' / 'summary.html'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from emocaliber_rl import demo  # light at import: --help stays instant

    p = add_command(
        sub, "demo",
        help="the whole pipeline in one command: all three stages on a tiny model on CPU, then "
             "evaluation and the report",
        description=demo.__doc__,
        example="emocaliber demo --out runs/demo",
    )
    p.add_argument("--out", default="runs/demo", help="folder for everything the demo writes (default runs/demo)")
    p.add_argument("--resume", action="store_true",
                   help="skip the stages that finished in an earlier run into the same --out")
    p.add_argument("--seed", type=int, default=0, help="seed of the model, data and sampling (default 0)")
    p.add_argument("--parallel", type=positive_int, default=2, metavar="N",
                   help="stages run at once when their inputs are ready (default 2: each checkpoint's "
                        "evaluation runs while the next stage trains; 1 runs them one after another)")
    p.add_argument("--eval-backend", choices=tuple(BACKENDS), default="vllm",
                   help="inference engine of the evaluation of the three checkpoints (default vllm: the 414 "
                        "test images take 63 s with it, engine start included, and 278 s with hf on 2 cores)")
    p.add_argument("--glibc-defaults", action="store_true",
                   help="run the stages with glibc's own malloc settings; by default they run with "
                        "MALLOC_MMAP_MAX_=0 and MALLOC_TRIM_THRESHOLD_=2^40 (freed big blocks kept in each "
                        "process's heap: stage 1 in 0.91 of the time) unless already set")
    p.set_defaults(func=_run)
