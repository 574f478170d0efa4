"""`emocaliber cot synthesize | judge | split`: VEC-CoT construction (paper Figure 4) against any
OpenAI-compatible endpoint; resumable, keys only from the environment."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emocaliber_rl.cli.common import (
    EXIT_PARTIAL,
    CliError,
    add_command,
    add_group_command,
    add_path_map,
    add_test_guard,
    output_file,
    output_folder,
    path_map_from_args,
)
from emocaliber_rl.limits import OFFICIAL_PIXEL_BOUNDS

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
    "max_pixels": OFFICIAL_PIXEL_BOUNDS[1],
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
    output_file(args.output)
    log, holder = _make_logger(args.log)
    try:
        api_key = _api_key(opts, args.no_auth, log)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = ProblemReport()
    records = [r.record for r in load_rows(args.inputs, report, image_root=args.image_root,
                                           path_map=path_map_from_args(args))]
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
    # 3: failed records (retried by a rerun) or input rows that could not be read (the report)
    return EXIT_PARTIAL if stats.failed or report.problems else 0


def _run_judge(args: argparse.Namespace) -> int:
    from emocaliber_rl.data import cot_run
    from emocaliber_rl.data.cot_client import run_async

    opts = _resolve(args)
    output_file(args.output)
    if args.kept:
        output_file(args.kept, "--kept")
    log, holder = _make_logger(args.log)
    try:
        api_key = _api_key(opts, args.no_auth, log)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows, notes = cot_run.read_synthesized(args.inputs)
    for note in notes:
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
    return EXIT_PARTIAL if stats.failed else 0


def _run_cot_split(args: argparse.Namespace) -> int:
    from emocaliber_rl.data.cot_split import split_cot, table, write_split
    from emocaliber_rl.data.leak_guard import Located, hashes_of_manifests, refuse_test_data
    from emocaliber_rl.data.records import iter_manifest, refuse_duplicate_ids

    ratios = _ratios(args.ratios)
    output_folder(args.output)
    located = [Located(r, f"{path}:{n}") for path in args.inputs for n, r in iter_manifest(path)]
    if not located:
        print(f"error: nothing written to {args.output}: {', '.join(args.inputs)} holds no records "
              "(give the --kept manifest of `cot judge`)", file=sys.stderr)
        return 1
    refuse_duplicate_ids((it.where, it.record) for it in located)
    if not args.allow_test:
        refuse_test_data(located, hashes_of_manifests(args.test_manifest), "cot split")
    records = [it.record for it in located]
    parts = split_cot(records, seed=args.seed, ratios=ratios)
    paths = write_split(parts, args.output)
    print(table(parts))
    print("wrote " + ", ".join(map(str, paths)), file=sys.stderr)
    return 0


def _ratios(text: str) -> tuple[int, int, int]:
    """``--ratios A:B:C``: three whole numbers, not all 0 (one subset per training stage)."""
    parts = text.split(":")
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
        raise CliError(f"--ratios {text!r}: give three whole numbers A:B:C, one per stage's subset "
                       "(e.g. 6:3:1)")
    ratios = (int(parts[0]), int(parts[1]), int(parts[2]))
    if sum(ratios) == 0:
        raise CliError(f"--ratios {text!r}: all three are 0; at least one subset needs a share")
    return ratios


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
                        f"{OFFICIAL_PIXEL_BOUNDS[1]}, the stage-1 training maximum; 0 sends originals)")
    p.add_argument("--limit", type=int, default=None, help="process at most this many input records")
    p.add_argument("--log", default=None, help="also append log lines to this file (key redacted)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``emocaliber cot synthesize | judge | split``."""
    csub = add_group_command(
        sub, "cot",
        help="VEC-CoT: synthesize five-step CoTs with a teacher model, judge them, split them "
             "into the three stages' subsets",
        description="VEC-CoT construction (paper Figure 4): synthesize -> judge -> split.",
        dest="cot_command")
    s = add_command(
        csub, "synthesize",
        help="ask a teacher model for five-step CoTs conditioned on image and label",
        description=(
            "For each manifest record not yet in OUTPUT, send the image (data URL) and label to an "
            "OpenAI-compatible chat endpoint. Resumable: kill it at any time and rerun; finished "
            "records are never requested again. Failed records go to OUTPUT.errors.jsonl and are "
            "retried on the next run. Exit 0: every record synthesized; 3: some failed (rerun to "
            "retry them) or input rows could not be read; 1: no record to synthesize; 2: a bad "
            "flag or file, or no API key; 130: interrupted (Ctrl-C; the output stays whole, rerun "
            "to resume)."
        ),
        example="emocaliber cot synthesize data/vecbench/train.jsonl -o cot/synth.jsonl "
                "--base-url https://api.example.com/v1 --model teacher-vl",
    )
    _client_flags(s, 1024)
    s.add_argument("--image-root", default=None, help="folder relative image paths resolve against")
    add_path_map(s)
    s.add_argument("--only-subtask", action="append", default=[], metavar="NAME",
                   help="only records of this subtask (repeatable)")
    s.add_argument("--force-new", action="store_true",
                   help="start a new run even if OUTPUT holds one: move it aside (as "
                        "OUTPUT-STEM.<run id>.jsonl). Without it a rerun resumes a run with the "
                        "same settings (teacher model, endpoint, sampling, prompt template, inputs; "
                        "recorded in OUTPUT.run.json) and refuses other settings, naming them")
    s.set_defaults(func=_run_synthesize)

    j = add_command(
        csub, "judge",
        help="check synthesized CoTs locally, then with a judge model; keep the passing ones",
        description=(
            "Local structural check first (five tags, answer == label, no label word in the steps); "
            "its failures are recorded without any API call. The rest get a JSON verdict on "
            "hallucination, label leakage and logical inconsistency. Resumable like synthesize. "
            "Passing records are written as a manifest to --kept. Exit 0: every CoT judged; 3: "
            "some requests failed (rerun to retry them); 1: no synthesized row; 2: a bad flag or "
            "file, or no API key; 130: interrupted."
        ),
        example="emocaliber cot judge cot/synth.jsonl -o cot/verdicts.jsonl --kept cot/kept.jsonl "
                "--base-url https://api.example.com/v1 --model judge-vl",
    )
    _client_flags(j, 512)
    j.add_argument("--kept", default=None, help="manifest of passing CoTs (default OUTPUT stem + .kept.jsonl)")
    j.set_defaults(func=_run_judge)

    sp = add_command(
        csub, "split",
        help="split kept CoTs into VEC-CoT-1/2/3 (6:3:1, stratified by subtask)",
        description=(
            "Writes OUTPUT/vec_cot_{1,2,3}.jsonl and OUTPUT/table.md (paper Table 1 layout). Each "
            "record's split becomes its subset (vec-cot-N); the split it had is kept in "
            "extra.origin_split. Test data (split test, a test-only OOD subtask, or an image of a "
            "--test-manifest) is refused, naming the records, before anything is written "
            "(exit 2), unless --allow-test. So is an id used twice across the inputs (exit 2, "
            "naming both lines). Exit 0: every record in a subset; 1: no record in the inputs "
            "(nothing written); 2: a bad row, --ratios or OUTPUT."
        ),
        example="emocaliber cot split cot/kept.jsonl -o cot/split --seed 0",
    )
    sp.add_argument("inputs", nargs="+", help="kept-CoT manifest(s)")
    sp.add_argument("-o", "--output", required=True, help="output folder")
    sp.add_argument("--seed", type=int, default=0, help="shuffle seed")
    sp.add_argument("--ratios", default="6:3:1",
                    help="subset ratios A:B:C, whole numbers (VEC-CoT-1:2:3), not all 0")
    add_test_guard(sp)
    sp.set_defaults(func=_run_cot_split)
