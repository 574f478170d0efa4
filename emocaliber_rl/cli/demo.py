"""`emocaliber demo`: the whole three-stage pipeline on a tiny model, on CPU (``emocaliber_rl.demo``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emocaliber_rl.cli.common import add_command
from emocaliber_rl.inference.backends import BACKENDS


def _run(args: argparse.Namespace) -> int:
    from emocaliber_rl.demo import Demo
    from emocaliber_rl.pipeline_runner import StageFailed, run_pipeline

    out = Path(args.out).resolve()
    demo = Demo(out, seed=args.seed, eval_backend=args.eval_backend)
    print(f"emocaliber demo -> {out}" + (" (resuming)" if args.resume else ""), flush=True)
    try:
        state = run_pipeline(demo.stages(), out, resume=args.resume, echo=lambda m: print(m, flush=True))
    except StageFailed as e:
        print(f"\nFAILED: {e}\nFix the cause and continue with: emocaliber demo --out {args.out} --resume",
              file=sys.stderr)
        return 1
    total = sum(s["seconds"] for s in state["stages"].values())
    print(json.dumps({name: s["seconds"] for name, s in state["stages"].items()}))
    print(f"done in {total:.0f} s of stage time; index: {out / 'README.md'}; report: {out / 'report' / 'summary.html'}")
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
    p.add_argument("--eval-backend", choices=tuple(BACKENDS), default="vllm",
                   help="inference engine of the evaluation of the three checkpoints (default vllm: the 414 "
                        "test images take 63 s with it, engine start included, and 278 s with hf on 2 cores)")
    p.set_defaults(func=_run)
