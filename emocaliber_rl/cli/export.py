"""`emocaliber export KIND`: manifests or published jsonl files -> the file each stage reads
(stage-1 SFT parquet, stage-2 prompt set, stage-3 RL parquet, evaluation manifest)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emocaliber_rl.cli.common import (
    CliError,
    add_command,
    add_path_map,
    add_test_guard,
    nothing_usable,
    output_file,
    path_map_from_args,
    pixel_bounds_from_args,
    pixel_options,
    rows_exit_code,
)
from emocaliber_rl.limits import RL_MAX_PROMPT_LENGTH, SFT_MAX_LENGTH

# the file formats each kind writes (prompts2 picks by the name's suffix); a name with another
# suffix is refused, so that no .parquet file holds JSON lines and no .jsonl file parquet
_SUFFIXES = {"sft1": (".parquet",), "rl3": (".parquet",), "eval": (".jsonl",),
             "prompts2": (".jsonl", ".parquet")}


def _check_output(kind: str, path: str) -> Path:
    out = output_file(path)
    allowed = _SUFFIXES[kind]
    if out.suffix not in allowed:
        raise CliError(f"-o {path}: export {kind} writes {' or '.join(s[1:] for s in allowed)}; "
                       f"give a name ending {' or '.join(allowed)}")
    return out

EXPORT_KINDS = {
    "sft1": "stage-1 SFT parquet for veRL MultiTurnSFTDataset (needs a CoT per record)",
    "prompts2": "stage-2 prompt set for the scaffold model (.jsonl, or .parquet by suffix)",
    "rl3": "stage-3 RL parquet for veRL RLHFDataset (prompt asks for a confidence)",
    "eval": "evaluation manifest (jsonl: id, subtask, group, image, label, candidates, prompt)",
}
# The kinds that feed training: the train/test guard refuses test data in them.
TRAINING_KINDS = ("sft1", "prompts2", "rl3")


def _run_export(args: argparse.Namespace) -> int:
    from emocaliber_rl.data import exports
    from emocaliber_rl.data.report import DataProblemError, ProblemReport

    out = _check_output(args.kind, args.output)
    if args.report:
        output_file(args.report, "--report")
    report = ProblemReport(strict=args.strict)
    try:
        rows = exports.load_rows(args.inputs, report, image_root=args.image_root,
                                 default_subtask=args.subtask, path_map=path_map_from_args(args))
        if args.only_subtask:
            keep = set(args.only_subtask)
            rows = [r for r in rows if r.record.subtask in keep]
        if args.kind in TRAINING_KINDS and not args.allow_test:
            from emocaliber_rl.data.leak_guard import Located, hashes_of_manifests, refuse_test_data

            located = [Located(r.record, f"{r.source}:{r.line}" if r.line else r.source) for r in rows]
            refuse_test_data(located, hashes_of_manifests(args.test_manifest), f"export {args.kind}")
        bounds = pixel_bounds_from_args(args)
        lengths = {"tokenizer": args.tokenizer}
        if args.max_length is not None:
            lengths["max_length"] = args.max_length or None  # 0: no length check
        if args.kind == "sft1":
            res = exports.export_sft_stage1(rows, out, report, user_prompt=args.user_prompt,
                                            pixel_bounds=bounds, **lengths)
        elif args.kind == "prompts2":
            res = exports.export_prompts_stage2(rows, out, report)
        elif args.kind == "rl3":
            res = exports.export_rl_stage3(rows, out, report, split=args.split, pixel_bounds=bounds,
                                           ask_confidence=not args.no_confidence, **lengths)
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
    if res.rows == 0:
        return nothing_usable(report, "no rows", res.path)
    return rows_exit_code(res.rows, len(report.problems))


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``emocaliber export KIND``."""
    p = add_command(
        sub, "export",
        help="the file each stage reads: sft1 (stage-1 SFT parquet), prompts2 (stage-2 prompt set), "
             "rl3 (stage-3 RL parquet), eval (evaluation manifest)",
        description=(
            "Convert manifests (from `bench build`/`bench import`/`cot split`) or published "
            "VEC-CoT / VECBench jsonl files (ms-swift `messages`+`images`, ShareGPT "
            "`conversations`+`image(s)`) into the files each stage reads. Records that cannot be "
            "converted are listed, with file and line, in a report file and summarised on stderr "
            "(a repeated id too: duplicate_id, the first row kept). Relative image paths resolve "
            "against each input file's folder; prompts2 and eval store them absolute, or relative "
            "to OUTPUT's folder when inside it. "
            "sft1, prompts2 and rl3 feed training: test data among their inputs (split test, a "
            "test-only OOD subtask, an image of a --test-manifest) stops the export before anything "
            "is written (exit 2), unless --allow-test (a stage-3 validation parquet). "
            "Exit 0: every record exported; 3: written, with records left out (the report); 1: no "
            "row written; 2: a bad flag or file, --strict and a bad record, test data, or an OUTPUT "
            "that is a folder or whose suffix is not the kind's (sft1, rl3: .parquet; eval: .jsonl; "
            "prompts2: either)."
        ),
        parents=[pixel_options("sft1 and rl3 only: stored with each image; veRL hands them to "
                               "qwen-vl-utils, which resizes the image into them.")],
        example="emocaliber export sft1 cot/split/vec_cot_1.jsonl -o data/stage1_sft.parquet "
                "--test-manifest data/vecbench/test.jsonl\n"
                "emocaliber export rl3 data/vecbench/test.jsonl -o data/stage3_val.parquet --split test "
                "--allow-test\n"
                "emocaliber export eval data/vecbench/test.jsonl -o data/vecbench/test.eval.jsonl",
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
    add_path_map(p)
    p.add_argument("--only-subtask", action="append", default=[], metavar="NAME",
                   help="keep only records of this subtask (repeatable)")
    add_test_guard(p)
    p.add_argument("--user-prompt", choices=("ours", "original"), default="ours",
                   help="sft1 only: user turn from prompts.task_question (ours) or the published "
                        "row's own user turn (original)")
    p.add_argument("--split", default="train", help="rl3 only: extra_info.split for records without one")
    p.add_argument("--no-confidence", action="store_true",
                   help="eval and rl3: the prompt does not ask for a confidence (plain baselines; a policy "
                        "trained on stage 1/2's prompts, which do not ask either)")
    p.add_argument("--max-length", type=int, default=None,
                   help="sft1/rl3: rows longer than this many tokens are reported (kind overlong) and left "
                        f"out; default the recipes' limits, {SFT_MAX_LENGTH} (sft1: data.max_length) and "
                        f"{RL_MAX_PROMPT_LENGTH} (rl3: data.max_prompt_length); 0: no check")
    p.add_argument("--tokenizer", default=None,
                   help="sft1/rl3: the model (path or hub id) whose tokenizer counts the text tokens; "
                        "without it only image tokens are counted against --max-length")
    p.add_argument("--report", default=None,
                   help="problem report path (default: OUTPUT.report.jsonl)")
    p.add_argument("--strict", action="store_true",
                   help="stop with exit code 2 at the first record that cannot be converted")
    p.set_defaults(func=_run_export)
