"""`emocaliber study table9 | calibration`: paper Table 9 / Figure 6, and whether stage 3
calibrates the demo's cold-start model, through veRL's real trainer."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from emocaliber_rl.cli.common import add_command, add_group_command
from emocaliber_rl.inference.backends import BACKENDS


def _run(args: argparse.Namespace) -> int:
    from emocaliber_rl.study.table9 import RUNS, recipe_command, run_study

    out = Path(args.out).resolve()
    extra = list(args.overrides or [])
    if extra[:1] == ["--"]:
        extra = extra[1:]
    if args.dry_run:
        for run in RUNS:
            print(shlex.join(recipe_command(run, model=args.model, train=args.train, val=args.val,
                                            out=out / run.name, steps=args.steps, lr=args.lr,
                                            profile=args.profile, seed=args.seed, extra=extra)))
        return 0
    eval_args = ["--backend", args.eval_backend, "--max-new-tokens", str(args.max_new_tokens)]
    if args.processor_pixels:
        eval_args.append("--processor-pixels")
    if args.greedy:
        eval_args.append("--greedy")
    oracle = Path(args.oracle).resolve() if args.oracle else None
    if oracle is not None and not (oracle / "scores.json").exists():
        print(f"[table9] --oracle {args.oracle}: no scores.json there (a folder of `eval score --json scores.json "
              "--samples samples.jsonl`, e.g. the demo's eval/oracle)", file=sys.stderr)
        return 2
    summary = run_study(model=args.model, train=args.train, val=args.val, manifest=args.manifest, out=out,
                        steps=args.steps, lr=args.lr, profile=args.profile, seed=args.seed,
                        eval_args=eval_args, extra=extra, oracle=oracle)
    print(f"[table9] Table 9: {summary['table']}; curves: {summary['curves']}; report: {summary.get('report')}")
    return 0


def _run_calibration(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from emocaliber_rl.study.calibration import Settings, recipe_command, run_study

    s = replace(Settings(), steps=args.steps, lr=args.lr, temperature=args.temperature, kl=args.kl,
                prompts_per_step=args.prompts, rollouts=args.rollouts, val_every=args.val_every, go_step=args.go_step)
    if s.go_step > s.steps or s.go_step % s.val_every:
        print(f"error: --go-step {s.go_step} must be a multiple of --val-every {s.val_every} and at most --steps "
              f"{s.steps} (the go/no-go reads that step's validation)", file=sys.stderr)
        return 2
    demo, out = Path(args.demo).resolve(), Path(args.out).resolve()
    extra = list(args.overrides or [])
    if extra[:1] == ["--"]:
        extra = extra[1:]
    if args.dry_run:
        for steps in (s.go_step, s.steps):
            print(shlex.join(recipe_command(model=str(demo / "checkpoints" / "stage2" / "final_hf"),
                                            train=out / "data" / "train.parquet",
                                            val=demo / "data" / "stage3_parity.parquet", out=out / "ckpt",
                                            steps=steps, s=s, seed=args.seed, extra=extra,
                                            validate_first=steps == s.go_step)))
        return 0
    try:
        code = run_study(demo, out, settings=s, seed=args.seed, extra=extra)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"[calibration] table and goals: {out / 'calibration.md'}; curves: {out / 'curves.png'}")
    return code


def register(sub: argparse._SubParsersAction) -> None:
    from emocaliber_rl.study import table9  # standard library only at import: --help stays instant

    ssub = add_group_command(
        sub, "study", help="ablation studies on the real trainer (Table 9: confidence reward and "
                           "std normalisation)",
        description="Ablation studies of the paper run through veRL's real trainer and the "
                    "evaluation commands.",
        dest="study_command", metavar="STUDY")
    t = add_command(
        ssub, "table9", help="four stage-3 runs: Brier vs log-likelihood reward, with and without std normalisation",
        description=table9.__doc__,
        example="emocaliber study table9 --model runs/demo/checkpoints/stage2/final_hf "
                "--train runs/demo/data/stage3_train.parquet --val runs/demo/data/stage3_val.parquet "
                "--manifest runs/demo/data/test.eval.jsonl --out runs/table9 --steps 20 --lr 1e-4 --processor-pixels")
    t.add_argument("--model", required=True, help="the cold-start (stage-2) model every run starts from")
    t.add_argument("--train", required=True, help="stage-3 training parquet (`emocaliber export rl3`)")
    t.add_argument("--val", required=True, help="validation parquet (val-calib curves)")
    t.add_argument("--manifest", required=True, help="evaluation manifest for the final scores (`export eval`)")
    t.add_argument("--out", required=True, help="study folder: one subfolder per run, table9.md, curves")
    t.add_argument("--steps", type=int, default=20, help="training steps per run (default 20)")
    t.add_argument("--lr", type=float, default=1e-6, help="actor learning rate of every run (default 1e-6, the paper's)")
    t.add_argument("--profile", choices=("cpu", "gpu", "gpu-sdpa"), default="cpu",
                   help="stage3_grpo.sh profile (default cpu)")
    t.add_argument("--seed", type=int, default=0, help="data and evaluation seed, the same for every run")
    t.add_argument("--eval-backend", choices=tuple(BACKENDS), default="hf", help="engine of the final evaluation")
    t.add_argument("--max-new-tokens", type=int, default=256, help="evaluation response budget (default 256)")
    t.add_argument("--greedy", action="store_true",
                   help="evaluate greedily, as veRL's validation rollouts decode (default: eval run's sampling)")
    t.add_argument("--oracle", metavar="DIR",
                   help="a scored run to show as the known optimum: first row of Table 9, dashed reference of "
                        "Figure 6 (the demo's eval/oracle)")
    t.add_argument("--processor-pixels", action="store_true",
                   help="evaluate with the model processor's own pixel bounds (the tiny model)")
    t.add_argument("--dry-run", action="store_true", help="print the four recipe commands and stop")
    t.add_argument("overrides", nargs=argparse.REMAINDER, help="after --: Hydra overrides for every run")
    t.set_defaults(func=_run)

    from emocaliber_rl.study import calibration

    c = add_command(
        ssub, "calibration", help="stage 3 alone from the demo's cold-start model on fresh prompts: does it calibrate?",
        description=calibration.__doc__,
        example="emocaliber study calibration --demo runs/demo --out runs/calibration --steps 40")
    c.add_argument("--demo", required=True, help="a finished `emocaliber demo --out` folder (its cold-start model, "
                                                 "parity and test data, oracle)")
    c.add_argument("--out", required=True, help="study folder: world draw, checkpoints, calibration.md, curves.png")
    c.add_argument("--steps", type=int, default=40, help="GRPO steps in all (default 40: ~32 s a step on 2 cores)")
    c.add_argument("--lr", type=float, default=1e-4, help="actor learning rate (default 1e-4; the paper's 1e-6 moves "
                                                         "the tiny model by ~4e-6)")
    c.add_argument("--temperature", type=float, default=0.7, help="rollout temperature (default 0.7)")
    c.add_argument("--kl", type=float, default=0.01, help="KL loss coefficient against the cold-start model "
                                                         "(actor_rollout_ref.actor.kl_loss_coef; default 0.01)")
    c.add_argument("--prompts", type=int, default=8, help="prompts a step (default 8)")
    c.add_argument("--rollouts", type=int, default=4, help="rollouts a prompt (default 4)")
    c.add_argument("--val-every", type=int, default=20, help="validate and checkpoint every N steps (default 20)")
    c.add_argument("--go-step", type=int, default=20, help="the go/no-go step (default 20); exit code 4 on no-go")
    c.add_argument("--seed", type=int, default=1, help="seed of the second world draw and the data order (default 1)")
    c.add_argument("--dry-run", action="store_true", help="print the two recipe commands (go/no-go phase, rest) and stop")
    c.add_argument("overrides", nargs=argparse.REMAINDER, help="after --: Hydra overrides for the run")
    c.set_defaults(func=_run_calibration)
