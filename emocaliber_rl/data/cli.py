"""`emocaliber bench ...`, `emocaliber cot ...` and `emocaliber export ...`.

Thin wrappers: every command parses flags and calls one function of this package. Heavy imports
(pyarrow, PIL, httpx) happen inside the command functions so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_FMT = argparse.ArgumentDefaultsHelpFormatter

EXPORT_KINDS = {
    "sft1": "stage-1 SFT parquet for veRL MultiTurnSFTDataset (needs a CoT per record)",
    "prompts2": "stage-2 prompt set for the scaffold model (.jsonl, or .parquet by suffix)",
    "rl3": "stage-3 RL parquet for veRL RLHFDataset (prompt asks for a confidence)",
    "eval": "evaluation manifest (jsonl: id, task, group, image, label, candidates, prompt)",
}


# ----------------------------------------------------------------------------------------------
# export


def _run_export(args: argparse.Namespace) -> int:
    from emocaliber_rl.data import exports
    from emocaliber_rl.data.report import DataProblemError, ProblemReport

    report = ProblemReport(strict=args.strict)
    out = Path(args.output)
    try:
        rows = exports.load_rows(args.inputs, report, image_root=args.image_root,
                                 default_subtask=args.subtask)
        if args.only_subtask:
            keep = set(args.only_subtask)
            rows = [r for r in rows if r.record.subtask in keep]
        if args.kind == "sft1":
            res = exports.export_sft_stage1(rows, out, report, user_prompt=args.user_prompt)
        elif args.kind == "prompts2":
            res = exports.export_prompts_stage2(rows, out, report)
        elif args.kind == "rl3":
            res = exports.export_rl_stage3(rows, out, report, split=args.split)
        else:
            res = exports.export_eval_manifest(rows, out, report,
                                               ask_confidence=not args.no_confidence)
    except DataProblemError as e:
        print(f"error (--strict): {e}", file=sys.stderr)
        return 2
    report_path = Path(args.report) if args.report else out.with_name(out.name + ".report.jsonl")
    report.write(report_path)
    print(f"wrote {res.rows} rows to {res.path}", file=sys.stderr)
    report.print_summary("input records")
    print(f"problem report: {report_path}", file=sys.stderr)
    return 0


def _register_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write the stage-1 SFT / stage-2 prompt / stage-3 RL / evaluation files",
        description=(
            "Convert manifests (from `bench build`/`bench import`/`cot split`) or published "
            "VEC-CoT / VECBench jsonl files (ms-swift `messages`+`images`, ShareGPT "
            "`conversations`+`image(s)`) into the files each stage reads. Records that cannot be "
            "converted are listed, with file and line, in a report file and summarised on stderr."
        ),
        formatter_class=_FMT,
    )
    p.add_argument("kind", choices=sorted(EXPORT_KINDS),
                   help="what to write: " + "; ".join(f"{k}: {v}" for k, v in EXPORT_KINDS.items()))
    p.add_argument("inputs", nargs="+", help="input jsonl file(s), any accepted layout")
    p.add_argument("-o", "--output", required=True, help="output file (.parquet or .jsonl)")
    p.add_argument("--image-root", default=None,
                   help="folder that relative image paths are resolved against "
                        "(default: each input file's folder)")
    p.add_argument("--subtask", default=None,
                   help="subtask for rows that name none (otherwise inferred from the candidates)")
    p.add_argument("--only-subtask", action="append", default=[], metavar="NAME",
                   help="keep only records of this subtask (repeatable)")
    p.add_argument("--user-prompt", choices=("ours", "original"), default="ours",
                   help="sft1 only: user turn from prompts.task_question (ours) or the published "
                        "row's own user turn (original)")
    p.add_argument("--split", default="train", help="rl3 only: extra_info.split for records without one")
    p.add_argument("--no-confidence", action="store_true",
                   help="eval only: the prompt does not ask for a confidence (plain baselines)")
    p.add_argument("--report", default=None,
                   help="problem report path (default: OUTPUT.report.jsonl)")
    p.add_argument("--strict", action="store_true",
                   help="stop with exit code 2 at the first record that cannot be converted")
    p.set_defaults(func=_run_export)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench``, ``cot`` and ``export`` commands."""
    _register_export(sub)
