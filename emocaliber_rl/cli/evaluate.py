"""`emocaliber eval run | score | report`: run a model over an evaluation manifest, score its
predictions, and write the comparison report.

Adding another ``eval`` subcommand from its own module::

    from emocaliber_rl.cli.evaluate import add_eval_subcommand

    def _configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", required=True)
        p.set_defaults(func=_run)          # _run(args) -> exit code

    add_eval_subcommand("calibrate", _configure, help="...")

Subcommands are kept in a registry and added every time the ``eval`` parser is built, so the
order of ``COMMAND_MODULES`` does not matter (the module must be imported by then: put it in
``COMMAND_MODULES`` and call ``add_eval_subcommand`` at its import or in its ``register``).
Heavy imports (matplotlib, the scorer, the engines) happen inside the command functions so
``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emocaliber_rl.cli.common import (
    EXIT_PARTIAL,
    add_command,
    add_extra_subcommand,
    output_file,
    output_folder,
    positive_int,
)
from emocaliber_rl.cli.engine import (
    check_model,
    engine_from_args,
    exit_code,
    model_run_options,
    precheck_run,
    print_stats,
    run_settings_from_args,
    sampling_from_args,
)

# The ``eval`` subparsers of the most recently built parser, and every extra subcommand ever
# registered (re-applied on each build: tests build several parsers in one process).
_EVAL_SUBPARSERS: argparse._SubParsersAction | None = None
_EXTRA: dict[str, tuple[Callable[[argparse.ArgumentParser], None], dict[str, Any]]] = {}
_BUILT_IN = ("run", "score", "report")


def add_eval_subcommand(
    name: str, configure: Callable[[argparse.ArgumentParser], None], **parser_kwargs: Any
) -> None:
    """Add ``emocaliber eval NAME``; ``configure(parser)`` adds its options and ``func``.

    ``parser_kwargs`` go to ``add_parser`` (``help=``, ``description=``...).
    """
    if name in _BUILT_IN:
        raise ValueError(f"eval {name} is built in")
    _EXTRA[name] = (configure, parser_kwargs)
    if _EVAL_SUBPARSERS is not None and name not in _EVAL_SUBPARSERS.choices:
        add_extra_subcommand(_EVAL_SUBPARSERS, name, configure, parser_kwargs)


def _score(args: argparse.Namespace) -> int:
    from emocaliber_rl.evaluation.scoring import (
        PredictionFileError,
        problems,
        score_file,
        write_samples,
    )

    for flag in ("json", "samples"):
        if getattr(args, flag):
            output_file(getattr(args, flag), f"--{flag}")
    try:
        scores, samples = score_file(args.predictions, parse=args.parse,
                                     missing_conf=args.missing_conf, n_bins=args.bins,
                                     duplicates=args.duplicates)
    except PredictionFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.samples:
        Path(args.samples).parent.mkdir(parents=True, exist_ok=True)
        write_samples(samples, args.samples)
        scores["meta"]["samples"] = str(Path(args.samples).resolve())
    for line in problems(scores):
        print(f"warning: {line}", file=sys.stderr)
    if samples.n_duplicates_dropped:
        print(f"warning: {samples.n_duplicates_dropped} rows repeat an earlier id and were left "
              "out (--duplicates first)", file=sys.stderr)
    text = json.dumps(scores, indent=2)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    if not args.json or args.print:
        print(text)
    else:
        # a short human summary; the JSON is the record
        def pct(v: float | None) -> float:
            return v * 100 if v is not None else float("nan")

        for name, g in scores["groups"].items():
            print(f"{name:8} acc {pct(g['acc']):6.2f}  macro-F1 {pct(g['macro_f1']):6.2f}  "
                  f"weighted-F1 {pct(g['weighted_f1']):6.2f}  n {g['n']}")
        print("(the paper's F1 columns are weighted-F1)")
        print(f"wrote {args.json}")
    # 3: rows left out of the score (repeated ids under --duplicates first; under --parse official
    # rows whose confidence is not a float, as the release drops them)
    return EXIT_PARTIAL if samples.n_duplicates_dropped or samples.dropped else 0


def _report(args: argparse.Namespace) -> int:
    from emocaliber_rl.evaluation.report import write_report
    from emocaliber_rl.evaluation.scoring import PredictionFileError

    if args.names and len(args.names) != len(args.runs):
        print(f"error: --names has {len(args.names)} names for {len(args.runs)} runs",
              file=sys.stderr)
        return 2
    output_folder(args.out, "--out")
    try:
        written = write_report(args.runs, args.out, names=args.names, source=args.source)
    except (PredictionFileError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


def _configure_score(p: argparse.ArgumentParser) -> None:
    p.add_argument("predictions", metavar="PRED.jsonl",
                   help="one JSON object per line: subtask (or an old file's task), label, candidates, "
                        "response [, conf_verb, conf_ans, conf_avg]")
    p.add_argument("--json", metavar="OUT.json", help="write the score JSON here "
                   "(default: print it)")
    p.add_argument("--print", action="store_true", help="print the JSON even with --json")
    p.add_argument("--samples", metavar="OUT.jsonl",
                   help="also write the per-sample parsed rows (eval report draws plots from them)")
    p.add_argument("--parse", choices=("strict", "official"), default="strict",
                   help="strict: I(e), the <answer> must name exactly one candidate (aliases allowed), "
                        "as the reward reads it; official: the release's whole pipeline (first "
                        "single-line <confidence> read by float(), rows where that fails dropped "
                        "and counted, first-substring rule, its ECE binning) (default: strict)")
    p.add_argument("--missing-conf", choices=("exclude", "zero", "half"), default="exclude",
                   help="how a sample without a parseable confidence enters ECE/Brier/AUC: left "
                        "out, or as 0.0 or 0.5; it is always counted and reported "
                        "(default: exclude)")
    p.add_argument("--bins", type=positive_int, default=10, help="ECE bins on [0, 1] (default: 10)")
    p.add_argument("--duplicates", choices=("error", "first"), default="error",
                   help="a row whose id an earlier row has: error refuses the file (a sample "
                        "counted twice); first keeps the first and reports how many were left "
                        "out (default: error). A file mixing run ids is always refused")
    p.set_defaults(func=_score)


def _configure_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="a score JSON, or a directory holding scores.json and the per-sample "
                        "rows (samples.jsonl) or the predictions *.jsonl")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--names", nargs="+", help="one display name per run (default: directory or "
                   "file names)")
    p.add_argument("--source", choices=("verb", "ans", "avg"), default="verb",
                   help="confidence source of the stage-evolution table (default: verb)")
    p.set_defaults(func=_report)


def _run_eval(args: argparse.Namespace) -> int:
    from emocaliber_rl.inference.eval_run import EVAL_RUN_KIND, read_eval_manifest, run_eval

    if not args.manifest.is_file():
        print(f"error: no evaluation manifest at {args.manifest} (write one with "
              "`emocaliber export eval TEST.jsonl -o MANIFEST`)", file=sys.stderr)
        return 2
    check_model(args.model)
    read_eval_manifest(args.manifest)  # a bad row is refused before the model loads
    settings = run_settings_from_args(args, args.manifest, ask_confidence=args.ask_confidence)
    precheck_run(args, args.out, EVAL_RUN_KIND, settings)
    engine = engine_from_args(args)
    try:
        stats = run_eval(engine, args.manifest, args.out, sampling=sampling_from_args(args),
                         ask_confidence=args.ask_confidence, batch_size=args.batch_size,
                         limit=args.limit, progress=not args.no_progress, settings=settings,
                         force_new=args.force_new)
    finally:
        engine.close()
    print_stats("eval run", stats)
    print(json.dumps({"predictions": str(args.out), **stats}))
    return exit_code(stats)


def _configure_eval_run(p: argparse.ArgumentParser) -> None:
    from emocaliber_rl.inference.eval_run import DEFAULT_MANIFEST

    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, metavar="MANIFEST.jsonl",
                   help="evaluation manifest from `emocaliber export eval` (rows: id, subtask, "
                        "image, label, candidates, system, prompt) "
                        f"(default: {DEFAULT_MANIFEST}, the VECBench test manifest)")
    p.add_argument("--out", required=True, metavar="PRED.jsonl",
                   help="predictions, one row per sample in `eval score`'s format; resumable: "
                        "an existing file of the same run (PRED.jsonl.run.json: model, "
                        "sampling, manifest, engine) is continued, finished ids are skipped")
    conf = p.add_mutually_exclusive_group()
    conf.add_argument("--ask-confidence", dest="ask_confidence", action="store_const", const=True,
                      default=None,
                      help="rebuild each prompt asking for a verbalized confidence in "
                           "<confidence></confidence> (Table 5 'Verb' for a baseline model)")
    conf.add_argument("--no-ask-confidence", dest="ask_confidence", action="store_const",
                      const=False,
                      help="rebuild each prompt without the confidence request "
                           "(default: neither; the manifest's prompt is used verbatim)")
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N manifest rows (smoke runs)")
    p.set_defaults(func=_run_eval)


EVAL_RUN_DESCRIPTION = (
    "Run a model over an evaluation manifest and write predictions that `emocaliber eval score` "
    "reads: response, parsed prediction, and the three confidences of paper section 4.5 "
    "(conf_verb: the verbalized <confidence>; conf_ans: probability of the first answer token; "
    "conf_avg: mean token probability). Sampling follows the official release (vLLM, "
    "temperature 0.7, 1024 new tokens) unless --greedy."
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``eval`` command with ``run``, ``score`` and ``report`` (and every registered extra)."""
    global _EVAL_SUBPARSERS
    p = add_command(
        sub, "eval",
        help="run a model over the test manifest, score predictions (accuracy, F1, calibration), "
             "write comparison reports",
        description="Evaluate on VECBench: `run` a model over an evaluation manifest, `score` its "
                    "predictions for emotion prediction (Acc, macro-F1, weighted-F1) and "
                    "confidence calibration (ECE, Brier, AUC), and `report` one or many runs side "
                    "by side in the paper's tables.")
    _EVAL_SUBPARSERS = p.add_subparsers(dest="eval_command", metavar="EVAL_COMMAND", required=True)
    _configure_eval_run(add_command(
        _EVAL_SUBPARSERS, "run", help="model + manifest -> predictions JSONL (resumable)",
        description=EVAL_RUN_DESCRIPTION, parents=model_run_options(),
        example="emocaliber eval run --model ckpt/emocaliber --manifest data/vecbench/test.eval.jsonl "
                "--out runs/emocaliber/predictions.jsonl"))
    _configure_score(add_command(
        _EVAL_SUBPARSERS, "score", help="predictions JSONL -> score JSON",
        description="Score predictions: per-task Acc/F1, per-group averages and calibration per "
                    "confidence source. Exit 0: every row scored; 3: scored, with rows left out "
                    "(--duplicates first, or --parse official's dropped rows); 2: a bad row or flag, "
                    "or --json/--samples naming a folder.",
        example="emocaliber eval score runs/emocaliber/predictions.jsonl --json runs/emocaliber/scores.json "
                "--samples runs/emocaliber/samples.jsonl"))
    _configure_report(add_command(
        _EVAL_SUBPARSERS, "report", help="score JSONs -> tables (md/csv/tex), plots, summary.html",
        description="Tables in the paper's layout (Tables 2-6) for one or many runs side by side, "
                    "reliability diagrams, confidence histograms, accuracy-coverage curves and "
                    "summary.html.",
        example="emocaliber eval report runs/base/scores.json runs/emocaliber --names Base EmoCaliber "
                "--out reports/cmp"))
    for name, (configure, kwargs) in _EXTRA.items():
        add_extra_subcommand(_EVAL_SUBPARSERS, name, configure, kwargs)
