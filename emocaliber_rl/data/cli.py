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
# shared


def _add_path_map(p: argparse.ArgumentParser) -> None:
    p.add_argument("--path-map", action="append", default=[], metavar="OLD=NEW",
                   help="rewrite image paths starting with OLD to start with NEW (repeatable; for "
                        "published files that name images by absolute paths on another machine)")


def _path_map(args: argparse.Namespace) -> list[tuple[str, str]]:
    out = []
    for item in args.path_map:
        old, sep, new = item.partition("=")
        if not sep or not old:
            raise SystemExit(f"error: --path-map needs OLD=NEW, got {item!r}")
        out.append((old, new))
    return out


def _nothing_usable(report, what: str, out: Path) -> int:
    """Say why nothing usable was written and what to try; the exit code (1) for it."""
    print(f"error: {what} written to {out}: every input row has a problem (listed above and in "
          "the problem report)", file=sys.stderr)
    missing = [p for p in report.problems if p.kind == "image_missing"]
    if missing:
        example = missing[0].detail.split(" does not exist")[0].split(": ")[0]
        print(f"hint: {len(missing)} images were not found (e.g. {example}). If the file names "
              "them by paths on another machine, rewrite the prefix with --path-map OLD=NEW "
              "(e.g. --path-map /their/data=/my/data); relative paths resolve against "
              "--image-root DIR (default: the input file's folder)", file=sys.stderr)
    return 1


# ----------------------------------------------------------------------------------------------
# export


def _run_export(args: argparse.Namespace) -> int:
    from emocaliber_rl.data import exports
    from emocaliber_rl.data.report import DataProblemError, ProblemReport

    report = ProblemReport(strict=args.strict)
    out = Path(args.output)
    try:
        rows = exports.load_rows(args.inputs, report, image_root=args.image_root,
                                 default_subtask=args.subtask, path_map=_path_map(args))
        if args.only_subtask:
            keep = set(args.only_subtask)
            rows = [r for r in rows if r.record.subtask in keep]
        bounds = _pixel_bounds(args)
        lengths = {"tokenizer": args.tokenizer}
        if args.max_length is not None:
            lengths["max_length"] = args.max_length or None  # 0: no length check
        if args.kind == "sft1":
            res = exports.export_sft_stage1(rows, out, report, user_prompt=args.user_prompt,
                                            pixel_bounds=bounds, **lengths)
        elif args.kind == "prompts2":
            res = exports.export_prompts_stage2(rows, out, report)
        elif args.kind == "rl3":
            res = exports.export_rl_stage3(rows, out, report, split=args.split, pixel_bounds=bounds, **lengths)
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
        return _nothing_usable(report, "no rows", res.path)
    return 0


def _pixel_bounds(args: argparse.Namespace) -> tuple[int, int] | None:
    from emocaliber_rl.data import exports

    if (args.min_pixels is None) != (args.max_pixels is None):
        raise SystemExit("export: give both --min-pixels and --max-pixels, or neither")
    if sum([args.official_pixels, args.processor_pixels, args.min_pixels is not None]) > 1:
        raise SystemExit("export: give one of --official-pixels, --processor-pixels, --min/--max-pixels")
    if args.processor_pixels:
        return None
    if args.min_pixels is None:
        return exports.OFFICIAL_PIXEL_BOUNDS
    return exports.check_pixel_bounds((args.min_pixels, args.max_pixels))


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
    _add_path_map(p)
    p.add_argument("--only-subtask", action="append", default=[], metavar="NAME",
                   help="keep only records of this subtask (repeatable)")
    p.add_argument("--user-prompt", choices=("ours", "original"), default="ours",
                   help="sft1 only: user turn from prompts.task_question (ours) or the published "
                        "row's own user turn (original)")
    p.add_argument("--split", default="train", help="rl3 only: extra_info.split for records without one")
    p.add_argument("--no-confidence", action="store_true",
                   help="eval only: the prompt does not ask for a confidence (plain baselines)")
    p.add_argument("--min-pixels", type=int, default=None,
                   help="sft1/rl3: smallest image area in pixels the trainer resizes to (stored with "
                        "each image; veRL hands it to qwen-vl-utils). Default: the official release's "
                        "200704..451584 (256..576 image tokens)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="sft1/rl3: largest image area in pixels (with --min-pixels)")
    p.add_argument("--official-pixels", action="store_true",
                   help="sft1/rl3: the official release's bounds, 200704..451584 (the default)")
    p.add_argument("--processor-pixels", action="store_true",
                   help="sft1/rl3: store no bounds, leaving images to the model processor's own (the opt-out; "
                        "Qwen2.5-VL's allow 16384 image tokens, the tiny test model's a few)")
    p.add_argument("--max-length", type=int, default=None,
                   help="sft1/rl3: rows longer than this many tokens are reported (kind overlong) and left "
                        "out; default the recipes' limits, 2048 (sft1: data.max_length) and 4096 (rl3: "
                        "data.max_prompt_length); 0: no check")
    p.add_argument("--tokenizer", default=None,
                   help="sft1/rl3: the model (path or hub id) whose tokenizer counts the text tokens; "
                        "without it only image tokens are counted against --max-length")
    p.add_argument("--report", default=None,
                   help="problem report path (default: OUTPUT.report.jsonl)")
    p.add_argument("--strict", action="store_true",
                   help="stop with exit code 2 at the first record that cannot be converted")
    p.set_defaults(func=_run_export)


# ----------------------------------------------------------------------------------------------
# bench

DATASET_FLAGS = {
    "FI": "--fi",
    "EmoSet": "--emoset",
    "WebEmo": "--webemo",
    "Abstract": "--abstract",
    "ArtPhoto": "--artphoto",
    "UnbiasedEmo": "--unbiasedemo",
}
DATASET_HELP = {
    "FI": "FI root: emotion_dataset/, i.e. <emotion>/<file>.jpg folders",
    "EmoSet": "EmoSet-118K root: image/<emotion>/*.jpg + train/val/test.json + info.json",
    "WebEmo": "WebEmo root: {train,test}/<label_index>/<url basename> as ccivit/download_webEmo's "
              "download_dataset.py writes them, + train25.txt/test25.txt/category.txt",
    "Abstract": "Abstract root: testImages_abstract/, images + ABSTRACT_groundTruth.csv "
                "(majority vote; ties reported)",
    "ArtPhoto": "ArtPhoto root: testImages_artphoto/, <emotion>_<n>.jpg (spellings like sad accepted)",
    "UnbiasedEmo": "UnbiasedEmo root: the zip's images/ folder, <emotion>/<object>/*.jpg",
}


def _run_build(args: argparse.Namespace) -> int:
    from emocaliber_rl.data.raw import LayoutError
    from emocaliber_rl.data.splits import build_splits, write_build

    roots = {name: getattr(args, flag[2:]) for name, flag in DATASET_FLAGS.items()
             if getattr(args, flag[2:]) is not None}
    if not roots:
        print("error: give at least one dataset root (--fi, --emoset, ...)", file=sys.stderr)
        return 2
    try:
        res = build_splits(roots, seed=args.seed, test_size=args.test_size, workers=args.workers,
                           progress=not args.no_progress, near_duplicates=not args.no_near_duplicates,
                           near_threshold=args.near_threshold)
    except LayoutError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    paths = write_build(res, args.output, seed=args.seed, test_size=args.test_size)
    print(res.table())
    print()
    print(res.dataset_table())
    print(res.overlap_line())
    for note in res.report.notes:
        print(f"note: {note}", file=sys.stderr)
    for name, n in res.short.items():
        print(f"note: {name} has only {n} test samples (requested {args.test_size})", file=sys.stderr)
    res.report.print_summary("images or entries")
    print(f"manifests: {paths['train']} {paths['test']}; summary: {paths['summary']}; "
          f"problem report: {paths['report']}", file=sys.stderr)
    rc = 0
    for name in res.empty:
        print(f"error: {name} ({DATASET_FLAGS[name]} {roots[name]}) yielded no usable sample; "
              "see the problem report", file=sys.stderr)
        rc = 1
    if res.overlap or res.overlap_near:
        print(f"error: {res.overlap} identical and {res.overlap_near or 0} near-duplicate images "
              "are in both train and test", file=sys.stderr)
        rc = 1
    return rc


def _register_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="build or import the VECBench manifests",
                       description="Build VECBench from raw datasets, or import the published release.")
    bsub = p.add_subparsers(dest="bench_command", metavar="SUBCOMMAND", required=True)

    b = bsub.add_parser(
        "build",
        help="split local copies of the six datasets into VECBench train/test manifests",
        description=(
            "FI -> FI-2/FI-8 halves; WebEmo -> WebEmo-25/7/2 thirds; EmoSet -> EmoSet-8; "
            "TEST_SIZE test samples each, the rest train. Abstract-8 and Artphoto-8: all samples, "
            "test only; UnbiasedEmo-6: TEST_SIZE samples, test only. Every image is decoded and "
            "hashed; undecodable images, duplicates (same sha256), near-duplicates (perceptual "
            "hash; the test-only copy is kept) and unknown labels are listed in OUTPUT/report.jsonl. "
            "Writes OUTPUT/train.jsonl, test.jsonl, summary.md (per-dataset found/kept/reported). "
            "Exit 2: a root or metadata file is not the published layout; exit 1: a dataset "
            "yielded no usable sample, or train and test overlap."
        ),
        formatter_class=_FMT,
    )
    for name, flag in DATASET_FLAGS.items():
        b.add_argument(flag, default=None, metavar="DIR", help=DATASET_HELP[name])
    b.add_argument("-o", "--output", required=True, help="output folder for the manifests")
    b.add_argument("--seed", type=int, default=0, help="shuffle seed (same seed + files = same bytes)")
    b.add_argument("--test-size", type=int, default=1000,
                   help="test samples per subtask (fewer when a subset is smaller; reported)")
    b.add_argument("--workers", type=int, default=None,
                   help="decode/hash processes (default: the cores this process may use)")
    from emocaliber_rl.data.splits import PHASH_THRESHOLD  # light: no PIL/numpy at import

    def bits(text: str) -> int:
        if not text.isdigit() or int(text) > 63:
            raise argparse.ArgumentTypeError(f"need a whole number of bits 0..63, got {text!r}")
        return int(text)

    b.add_argument("--near-threshold", type=bits, default=PHASH_THRESHOLD,
                   help="largest pHash Hamming distance (of 64 bits) treated as the same picture")
    b.add_argument("--no-near-duplicates", action="store_true",
                   help="skip perceptual hashing: duplicates are then caught by identical bytes only")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=_run_build)
    _register_bench_import(bsub)


def _run_import(args: argparse.Namespace) -> int:
    from emocaliber_rl.data.release import import_release, inline_image_dir, write_import
    from emocaliber_rl.data.report import DataProblemError

    try:
        res = import_release(args.inputs, split=args.split, keep_response=args.keep_response,
                             image_root=args.image_root, default_subtask=args.subtask,
                             path_map=_path_map(args),
                             strict=args.strict, hash_files=not args.no_hash, workers=args.workers,
                             progress=not args.no_progress, image_dir=inline_image_dir(args.output))
    except DataProblemError as e:
        print(f"error (--strict): {e}", file=sys.stderr)
        return 2
    out, rep = write_import(res, args.output)
    print(res.table())
    res.report.print_summary("rows")
    print(f"manifest: {out}; problem report: {rep}", file=sys.stderr)
    if not res.records:
        return _nothing_usable(res.report, "no records", out)
    return 0


def _register_bench_import(bsub: argparse._SubParsersAction) -> None:
    p = bsub.add_parser(
        "import",
        help="turn the published VECBench test file or VEC-CoT stage files into a manifest",
        description=(
            "Reads jsonl rows in the ms-swift layout (messages + images) or ShareGPT layout "
            "(conversations + image/images) with task, ground_truth/label and candidates; "
            "validates every label against the taxonomy and reports bad rows by line number. "
            "Image parts in every form qwen-vl-utils reads ({'image': ...} with or without "
            "type, image_url parts, file:// paths, data URIs: saved under OUTPUT.images/); "
            "http(s) images are reported (map them to local copies with --path-map)."
        ),
        formatter_class=_FMT,
    )
    p.add_argument("inputs", nargs="+", help="published jsonl file(s)")
    p.add_argument("-o", "--output", required=True, help="output manifest (jsonl)")
    p.add_argument("--split", default="test", help="split name written into every record")
    p.add_argument("--keep-response", action="store_true",
                   help="keep the assistant turn as the record's CoT (VEC-CoT files)")
    p.add_argument("--image-root", default=None,
                   help="folder relative image paths resolve against (default: the file's folder)")
    p.add_argument("--subtask", default=None, help="subtask for rows without a task field")
    _add_path_map(p)
    p.add_argument("--strict", action="store_true", help="exit 2 at the first invalid row")
    p.add_argument("--no-hash", action="store_true",
                   help="skip decoding/hashing images (no checksums; each image is still checked "
                        "to exist)")
    p.add_argument("--workers", type=int, default=None, help="decode/hash processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_import)


# ----------------------------------------------------------------------------------------------
# cot

# Client options that a --config JSON file may set (flags win); builtin defaults when neither does.
CLIENT_DEFAULTS = {
    "base_url": None,
    "model": None,
    "api_key_env": ["EMOCALIBER_API_KEY", "OPENAI_API_KEY"],
    "concurrency": 16,
    "timeout": 120.0,
    "max_retries": 6,
    "backoff_base": 0.5,
    "backoff_max": 30.0,
    "max_tokens": None,
    "temperature": 0.7,
    "price_in": None,  # unknown: the cost is left out of the summary
    "price_out": None,
    "max_pixels": 451584,
}


def _resolve(args: argparse.Namespace) -> dict:
    import json

    cfg = {}
    if args.config:
        from emocaliber_rl.jsonl import InputFileError

        try:
            cfg = json.loads(Path(args.config).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise InputFileError(f"{args.config}: cannot read ({e})") from None
        except json.JSONDecodeError as e:
            raise InputFileError(f"{args.config}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(cfg, dict):
            raise InputFileError(f"{args.config}: expected a JSON object of client options")
        unknown = set(cfg) - set(CLIENT_DEFAULTS)
        if unknown:
            raise SystemExit(f"error: unknown keys in {args.config}: {sorted(unknown)} "
                             f"(known: {sorted(CLIENT_DEFAULTS)})")
    out = {}
    for key, default in CLIENT_DEFAULTS.items():
        value = getattr(args, key)
        out[key] = value if value is not None else cfg.get(key, default)
    if isinstance(out["api_key_env"], str):
        out["api_key_env"] = [out["api_key_env"]]
    for key in ("base_url", "model"):
        if not out[key]:
            raise SystemExit(f"error: --{key.replace('_', '-')} is required (flag or --config)")
    return out


def _make_logger(path: str | None):
    """stderr (and --log file) writer; every line goes through the client's key redaction."""
    fh = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115 (process lifetime)
    holder: dict = {}

    def log(msg: str) -> None:
        client = holder.get("client")
        if client is not None:
            msg = client.redact(msg)
        print(msg, file=sys.stderr, flush=True)
        if fh is not None:
            fh.write(msg + "\n")
            fh.flush()

    return log, holder


def _api_key(opts: dict, no_auth: bool, log) -> str | None:
    """The key from the environment; none is an error unless ``--no-auth`` (then a warning)."""
    from emocaliber_rl.data.cot_client import read_api_key

    key = read_api_key(opts["api_key_env"])
    if key:
        return key
    names = " or ".join(opts["api_key_env"])
    if not no_auth:
        raise ValueError(f"no API key: set {names} (or name another variable with "
                         "--api-key-env); for a local server that needs no key pass --no-auth")
    log(f"warning: no API key ({names} unset): requests go without an Authorization header "
        "(--no-auth)")
    return None


def _client(opts: dict, log, api_key: str | None):
    from emocaliber_rl.data.cot_client import ChatClient

    return ChatClient(opts["base_url"], opts["model"], api_key=api_key,
                      concurrency=opts["concurrency"], timeout=opts["timeout"],
                      max_retries=opts["max_retries"], backoff_base=opts["backoff_base"],
                      backoff_max=opts["backoff_max"], log=log)


def _run_synthesize(args: argparse.Namespace) -> int:
    from emocaliber_rl.data import cot_run
    from emocaliber_rl.data.cot_client import run_async
    from emocaliber_rl.data.exports import load_rows
    from emocaliber_rl.data.report import ProblemReport

    opts = _resolve(args)
    log, holder = _make_logger(args.log)
    try:
        api_key = _api_key(opts, args.no_auth, log)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = ProblemReport()
    records = [r.record for r in load_rows(args.inputs, report, image_root=args.image_root,
                                           path_map=_path_map(args))]
    if report.problems:
        report.print_summary("input rows")
    if args.only_subtask:
        records = [r for r in records if r.subtask in set(args.only_subtask)]
    if args.limit is not None:
        records = records[: args.limit]
    if not records:
        print("error: no records to synthesize (check the inputs, --only-subtask and --limit)",
              file=sys.stderr)
        return 1
    settings = cot_run.synth_settings(
        opts["model"], opts["base_url"].rstrip("/") + "/chat/completions",
        temperature=opts["temperature"], max_tokens=opts["max_tokens"] or 1024,
        max_pixels=opts["max_pixels"] or None, inputs=args.inputs)

    async def go():
        async with _client(opts, log, api_key) as client:
            holder["client"] = client
            return await cot_run.synthesize(records, args.output, client,
                                            max_tokens=opts["max_tokens"] or 1024,
                                            temperature=opts["temperature"],
                                            max_pixels=opts["max_pixels"] or None,
                                            progress=not args.no_progress, log=log,
                                            settings=settings, force_new=args.force_new)

    stats = run_async(go())
    log(stats.summary(opts["price_in"], opts["price_out"]))
    return 0 if stats.failed == 0 else 3


def _run_judge(args: argparse.Namespace) -> int:
    from emocaliber_rl.data import cot_run
    from emocaliber_rl.data.cot_client import run_async
    from emocaliber_rl.data.cot_store import ResultLog

    opts = _resolve(args)
    log, holder = _make_logger(args.log)
    try:
        api_key = _api_key(opts, args.no_auth, log)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = []
    for path in args.inputs:
        src = ResultLog(path)
        rows.extend(src.load(repair=False).values())
        for note in src.notes:
            log(note)
    if args.limit is not None:
        rows = rows[: args.limit]
    if not rows:
        print(f"error: no synthesized rows in {', '.join(args.inputs)} (give the output of `cot "
              "synthesize`)", file=sys.stderr)
        return 1

    async def go():
        async with _client(opts, log, api_key) as client:
            holder["client"] = client
            return await cot_run.judge(rows, args.output, client,
                                       max_tokens=opts["max_tokens"] or 512,
                                       max_pixels=opts["max_pixels"] or None,
                                       progress=not args.no_progress, log=log)

    stats = run_async(go())
    log(stats.summary(opts["price_in"], opts["price_out"]))
    kept_path = args.kept or str(Path(args.output).with_name(Path(args.output).stem + ".kept.jsonl"))
    kept, judged = cot_run.write_kept(args.output, kept_path)
    log(f"kept {kept} of {judged} judged CoTs -> {kept_path}")
    return 0 if stats.failed == 0 else 3


def _run_cot_split(args: argparse.Namespace) -> int:
    from emocaliber_rl.data.cot_split import split_cot, table, write_split
    from emocaliber_rl.data.records import read_manifest

    records = [r for path in args.inputs for r in read_manifest(path)]
    ratios = tuple(int(x) for x in args.ratios.split(":"))
    parts = split_cot(records, seed=args.seed, ratios=ratios)
    paths = write_split(parts, args.output)
    print(table(parts))
    print("wrote " + ", ".join(map(str, paths)), file=sys.stderr)
    return 0


def _client_flags(p: argparse.ArgumentParser, max_tokens: int) -> None:
    p.add_argument("inputs", nargs="+", help="input jsonl file(s)")
    p.add_argument("-o", "--output", required=True,
                   help="append-only results (jsonl); rerun with the same path to resume")
    p.add_argument("--config", default=None,
                   help="JSON file with any of: " + ", ".join(CLIENT_DEFAULTS) + " (flags win)")
    p.add_argument("--base-url", default=None,
                   help="OpenAI-compatible API base, e.g. https://api.openai.com/v1")
    p.add_argument("--model", default=None, help="model name sent in each request")
    p.add_argument("--api-key-env", action="append", default=None, metavar="VAR",
                   help="environment variable holding the API key (repeatable; first set wins; "
                        "default EMOCALIBER_API_KEY then OPENAI_API_KEY). Keys are never accepted "
                        "as flags, logged or written")
    p.add_argument("--no-auth", action="store_true",
                   help="send requests without an API key (local servers); without this flag a "
                        "missing key is an error")
    p.add_argument("--concurrency", type=int, default=None, help="requests in flight (default 16)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per request (default 120)")
    p.add_argument("--max-retries", type=int, default=None,
                   help="retries on 429/5xx/timeouts/malformed bodies (default 6)")
    p.add_argument("--backoff-base", type=float, default=None,
                   help="first backoff in seconds, doubled per retry, with jitter (default 0.5)")
    p.add_argument("--backoff-max", type=float, default=None, help="backoff cap in seconds (default 30)")
    p.add_argument("--max-tokens", type=int, default=None, help=f"completion token limit (default {max_tokens})")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (default 0.7)")
    p.add_argument("--price-in", type=float, default=None,
                   help="price per 1M prompt tokens, for the cost line (none given: no cost line)")
    p.add_argument("--price-out", type=float, default=None, help="price per 1M completion tokens")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="downscale larger images to this many pixels before sending (default "
                        "451584, the stage-1 training maximum; 0 sends originals)")
    p.add_argument("--limit", type=int, default=None, help="process at most this many input records")
    p.add_argument("--log", default=None, help="also append log lines to this file (key redacted)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _register_cot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cot", help="synthesize, judge and split VEC-CoT",
                       description="VEC-CoT construction (paper Figure 4): synthesize -> judge -> split.")
    csub = p.add_subparsers(dest="cot_command", metavar="SUBCOMMAND", required=True)
    s = csub.add_parser(
        "synthesize",
        help="ask a teacher model for five-step CoTs conditioned on image and label",
        description=(
            "For each manifest record not yet in OUTPUT, send the image (data URL) and label to an "
            "OpenAI-compatible chat endpoint. Resumable: kill it at any time and rerun; finished "
            "records are never requested again. Failed records go to OUTPUT.errors.jsonl and are "
            "retried on the next run (exit code 3 when any failed)."
        ),
        formatter_class=_FMT,
    )
    _client_flags(s, 1024)
    s.add_argument("--image-root", default=None, help="folder relative image paths resolve against")
    _add_path_map(s)
    s.add_argument("--only-subtask", action="append", default=[], metavar="NAME",
                   help="only records of this subtask (repeatable)")
    s.add_argument("--force-new", action="store_true",
                   help="start a new run even if OUTPUT holds one: move it aside (as "
                        "OUTPUT-STEM.<run id>.jsonl). Without it a rerun resumes a run with the "
                        "same settings (teacher model, endpoint, sampling, prompt template, inputs; "
                        "recorded in OUTPUT.run.json) and refuses other settings, naming them")
    s.set_defaults(func=_run_synthesize)

    j = csub.add_parser(
        "judge",
        help="check synthesized CoTs locally, then with a judge model; keep the passing ones",
        description=(
            "Local structural check first (five tags, answer == label, no label word in the steps); "
            "its failures are recorded without any API call. The rest get a JSON verdict on "
            "hallucination, label leakage and logical inconsistency. Resumable like synthesize. "
            "Passing records are written as a manifest to --kept."
        ),
        formatter_class=_FMT,
    )
    _client_flags(j, 512)
    j.add_argument("--kept", default=None, help="manifest of passing CoTs (default OUTPUT stem + .kept.jsonl)")
    j.set_defaults(func=_run_judge)

    sp = csub.add_parser(
        "split",
        help="split kept CoTs into VEC-CoT-1/2/3 (6:3:1, stratified by subtask)",
        description="Writes OUTPUT/vec_cot_{1,2,3}.jsonl and OUTPUT/table.md (paper Table 1 layout).",
        formatter_class=_FMT,
    )
    sp.add_argument("inputs", nargs="+", help="kept-CoT manifest(s)")
    sp.add_argument("-o", "--output", required=True, help="output folder")
    sp.add_argument("--seed", type=int, default=0, help="shuffle seed")
    sp.add_argument("--ratios", default="6:3:1", help="subset ratios")
    sp.set_defaults(func=_run_cot_split)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench``, ``cot`` and ``export`` commands."""
    _register_bench(sub)
    _register_cot(sub)
    _register_export(sub)
