"""`emocaliber stage2 generate` and `emocaliber stage2 label`: the scaffold model's generations and
their Eq. 2 confidence targets as the stage-2 SFT parquet.

Other stage-2 commands (e.g. the confidence-only SFT) can join the ``stage2`` parser from their
own module with :func:`add_stage2_subcommand`, the same pattern as ``eval``'s subcommands.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emocaliber_rl.cli.common import (
    add_command,
    add_extra_subcommand,
    output_file,
    output_folder,
    rows_exit_code,
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
from emocaliber_rl.limits import OFFICIAL_PIXEL_BOUNDS, SFT_MAX_LENGTH

_LO, _HI = OFFICIAL_PIXEL_BOUNDS

_EXTRA: dict[str, tuple[Callable[[argparse.ArgumentParser], None], dict[str, Any]]] = {}
_STAGE2_SUBPARSERS: argparse._SubParsersAction | None = None


def add_stage2_subcommand(
    name: str, configure: Callable[[argparse.ArgumentParser], None], **parser_kwargs: Any
) -> None:
    """Add ``emocaliber stage2 NAME``; ``configure(parser)`` adds its options and ``func``."""
    if name in ("generate", "label"):
        raise ValueError(f"stage2 {name} is built in")
    _EXTRA[name] = (configure, parser_kwargs)
    if _STAGE2_SUBPARSERS is not None and name not in _STAGE2_SUBPARSERS.choices:
        add_extra_subcommand(_STAGE2_SUBPARSERS, name, configure, parser_kwargs)


def _run_generate(args: argparse.Namespace) -> int:
    from emocaliber_rl.stage2 import STAGE2_RUN_KIND, generate_stage2, read_prompt_set

    try:
        prompts = read_prompt_set(args.prompts)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.limit is not None:
        prompts = prompts[: args.limit]
    check_model(args.model)
    settings = run_settings_from_args(args, args.prompts)
    precheck_run(args, args.out, STAGE2_RUN_KIND, settings)
    engine = engine_from_args(args)
    try:
        stats = generate_stage2(engine, prompts, args.out, batch_size=args.batch_size,
                                sampling=sampling_from_args(args), progress=not args.no_progress,
                                settings=settings, force_new=args.force_new)
    finally:
        engine.close()
    print_stats("stage2 generate", stats)
    print(json.dumps({"generations": str(args.out), **stats}))
    return exit_code(stats)


def _run_label(args: argparse.Namespace) -> int:
    from emocaliber_rl.stage2 import label_generations, print_reject_counts

    if not Path(args.generations).is_file():
        print(f"error: {args.generations}: no such file", file=sys.stderr)
        return 2
    if args.p_source == "answer" and args.tokenizer is None:
        print("error: --p-source answer needs --tokenizer MODEL_DIR (the model that wrote the generations: "
              "its tokenizer finds the answer token among the token ids)", file=sys.stderr)
        return 2
    if args.bin_rows < 1:
        print(f"error: --bin-rows must be >= 1, got {args.bin_rows}", file=sys.stderr)
        return 2
    if not (args.prior_rows >= 0 and math.isfinite(args.prior_rows)):
        print(f"error: --prior-rows must be a finite number >= 0, got {args.prior_rows}", file=sys.stderr)
        return 2

    output_file(args.out, "--out")
    if args.summary_dir is not None:
        output_folder(args.summary_dir, "--summary-dir")
    res = label_generations(args.generations, args.out, summary_dir=args.summary_dir,
                            require_format=args.require_format, plot=not args.no_plot,
                            duplicates=args.duplicates,
                            pixel_bounds=None if args.processor_pixels else OFFICIAL_PIXEL_BOUNDS,
                            max_length=args.max_length or None, tokenizer=args.tokenizer,
                            p_source=args.p_source, target=args.target, bin_rows=args.bin_rows,
                            bin_by=args.bin_by, prior_rows=args.prior_rows)
    print_reject_counts(res)
    print(json.dumps({"parquet": str(res.out_path), "p_source": args.p_source, "target": args.target,
                      "kept": res.kept,
                      "rejected": res.rejected,
                      "rejects": str(res.rejects_path), "targets": str(res.targets_path),
                      "summary": str(res.summary_json),
                      "histogram": str(res.summary_png) if res.summary_png else None}))
    # labelling is a filter: rejected rows are left out (OUT.rejects.jsonl), so 3 when any were
    return rows_exit_code(res.kept, res.rejected)


def _configure_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompts", required=True, metavar="PROMPTS",
                   help="the VEC-CoT-2 prompt set from `emocaliber export prompts2` (.jsonl or "
                        ".parquet; rows: id, subtask, image, label, candidates, messages)")
    p.add_argument("--out", required=True, metavar="GEN.jsonl",
                   help="generations, one line per prompt (response, token ids, per-token "
                        "log-probabilities); resumable: rerun the same command after a crash and "
                        "finished ids are skipped; a rerun with other settings is refused "
                        "(GEN.jsonl.run.json records them) unless --force-new")
    p.add_argument("--limit", type=int, default=None, help="only the first N prompts (smoke runs)")
    p.set_defaults(func=_run_generate)


def _configure_label(p: argparse.ArgumentParser) -> None:
    p.add_argument("generations", metavar="GEN.jsonl", help="output of `stage2 generate`")
    p.add_argument("--out", required=True, metavar="STAGE2.parquet",
                   help="veRL SFT parquet (stage-1 schema: messages [system, user, assistant = "
                        "response + <confidence>c</confidence>], images, id, subtask, label); "
                        "OUT.rejects.jsonl and OUT.targets.jsonl are written beside it")
    p.add_argument("--summary-dir", default=None, metavar="DIR",
                   help="where STEM.summary.json (counts per 0.1 bin, correct vs wrong) and "
                        "STEM.summary.png (histogram) go (default: the parquet's folder)")
    p.add_argument("--require-format", action="store_true",
                   help="also reject responses whose target fails the strict response format "
                        "(think with five steps, answer, confidence); default: keep them, the "
                        "paper filters nothing but unparseable answers")
    p.add_argument("--no-plot", action="store_true", help="skip the histogram PNG")
    p.add_argument("--duplicates", choices=("first", "error"), default="first",
                   help="a line repeating an earlier id: first keeps the earlier one and counts "
                        "the repeat as a duplicate_id reject; error refuses the file "
                        "(default: first). A file mixing run ids is always refused")
    p.add_argument("--processor-pixels", action="store_true",
                   help="store no pixel bounds with the images (default: the official release's "
                        f"{_LO}..{_HI}, as `export sft1`); the tiny test model's opt-out")
    p.add_argument("--max-length", type=int, default=SFT_MAX_LENGTH,
                   help=f"rows longer than this many tokens are rejected as overlong (default {SFT_MAX_LENGTH}, the "
                        "stage-2 recipe's data.max_length; 0: no check)")
    p.add_argument("--tokenizer", default=None,
                   help="the model whose tokenizer counts the text tokens (without it only image tokens count); "
                        "required by --p-source answer")
    p.add_argument("--p-source", choices=("mean", "answer"), default="mean",
                   help="Eq. 2's p. mean (default): the paper's Eq. 2, the mean probability of all the "
                        "response's tokens. answer: this project's named alternative, not the paper's: the "
                        "probability of the first decisive token inside <answer> (the evaluation's Ans); "
                        "where the reasoning tokens are forced the mean is ~constant, the answer token's "
                        "probability is the model's own answer uncertainty. answer needs --tokenizer; a row "
                        "whose answer token cannot be located is a no_answer_token reject")
    p.add_argument("--target", choices=("eq2", "binned"), default="eq2",
                   help="the confidence target. eq2 (default): the paper's Eq. 2 per row (>= 0.5 when the "
                        "sampled answer is right, < 0.5 when wrong). binned: this project's named alternative, "
                        "not the paper's: the accuracy of the rows of the same subtask whose p is in the same "
                        "bin of --bin-rows rows (histogram binning, made isotonic in p), an estimate of "
                        "P(correct | p) that a model can say back; Eq. 2 splits on a coin it cannot see")
    p.add_argument("--bin-rows", type=int, default=25, metavar="N",
                   help="rows per bin of --target binned, per group of --bin-by (default 25)")
    p.add_argument("--bin-by", choices=("subtask", "prompt", "answer"), default="subtask",
                   help="which rows share the bins of --target binned. subtask (default): one subtask's. "
                        "prompt: the rows whose prompt offers the same candidate labels (what the model can "
                        "tell apart: FI-8 and EmoSet-8 share one). answer: the rows of one prompt that answered "
                        "the same label; the confidence follows the answer, so the model can look up that "
                        "answer's precision. Each answer group is shrunk toward its prompt's accuracy by "
                        "--prior-rows pseudo-rows")
    p.add_argument("--prior-rows", type=float, default=2.0, metavar="M",
                   help="pseudo-rows of the prompt's accuracy added to each bin with --bin-by answer, so a "
                        "label answered twice does not get 0.00 or 1.00 (default 2; 0: none)")
    p.set_defaults(func=_run_label)


def register(sub: argparse._SubParsersAction) -> None:
    global _STAGE2_SUBPARSERS
    p = add_command(
        sub, "stage2", help="stage 2: scaffold generations and their Eq. 2 confidence targets "
                            "(the stage-2 SFT parquet)",
        description="Stage 2 of the paper (section 3.2): the scaffold model answers the VEC-CoT-2 "
                    "prompts (`generate`), then each answer gets the Eq. 2 confidence target "
                    "from its correctness, its mean token probability and the emotion-loop "
                    "distance, written as a veRL SFT parquet (`label`) for recipes/stage2_sft.sh.")
    _STAGE2_SUBPARSERS = p.add_subparsers(dest="stage2_command", metavar="STAGE2_COMMAND",
                                          required=True)
    _configure_generate(add_command(
        _STAGE2_SUBPARSERS, "generate",
        help="scaffold model + prompt set -> generations jsonl (resumable)",
        description="Generate one response per stage-2 prompt with its per-token "
                    "log-probabilities. Written batch by batch (append + fsync); a rerun skips "
                    "finished ids and drops a torn last line.",
        parents=model_run_options(),
        example="emocaliber stage2 generate --model ckpt/stage1/final_hf "
                "--prompts data/stage2_prompts.jsonl --out runs/stage2/gen.jsonl"))
    _configure_label(add_command(
        _STAGE2_SUBPARSERS, "label",
        help="generations jsonl -> stage-2 SFT parquet with Eq. 2 confidences",
        description="Eq. 2: c = 0.5*(1+p) if the <answer> names the label, else 0.5 - d*p (p: "
                    "mean token probability of the response, the paper's, or with --p-source answer "
                    "the probability of the first answer token, this project's alternative; d: "
                    "emotion-loop distance in [0, 0.5]); rounded to two decimals and appended as "
                    "<confidence>c</confidence>. Unparseable answers are left out and counted "
                    "per reason on stderr. Exit 0: every row kept; 3: written, with rows rejected "
                    "(OUT.rejects.jsonl); 1: no row kept; 2: a bad flag or file, or --out naming a folder.",
        example="emocaliber stage2 label runs/stage2/gen.jsonl --out runs/stage2/stage2.parquet "
                "--tokenizer ckpt/stage1/final_hf"))
    for name, (configure, kwargs) in _EXTRA.items():
        add_extra_subcommand(_STAGE2_SUBPARSERS, name, configure, kwargs)
