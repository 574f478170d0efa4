"""`emocaliber ...`: one console script; every command is defined in this package.

Each module listed in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its
parser(s) and sets ``func`` (called with the parsed namespace, returns an exit code); the order of
the list is the order of ``emocaliber --help``, the order a real run takes (data, CoT, exports,
stage 2, evaluation, studies and the demo; tools last). Library modules hold no argparse: a command
parses its flags here and calls one library function. Heavy imports (torch, veRL, vLLM) happen
inside ``func`` so that ``--help`` stays instant.

Exit codes (``common.EXIT_CODES_HELP``, printed at the end of ``emocaliber --help``): 0 every row
used; 1 nothing usable written; 2 bad invocation or input (a :class:`~emocaliber_rl.cli.common.CliError`
or an :class:`~emocaliber_rl.jsonl.InputFileError`, printed here as one line); 3 written with rows
left out; 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from emocaliber_rl.cli.common import EXIT_CODES_HELP, EXIT_INTERRUPTED, CliError, HelpFormatter

COMMAND_MODULES: tuple[str, ...] = (
    "emocaliber_rl.cli.data",
    "emocaliber_rl.cli.cot",
    "emocaliber_rl.cli.export",
    "emocaliber_rl.cli.loops",
    "emocaliber_rl.cli.stage2",
    "emocaliber_rl.cli.evaluate",
    "emocaliber_rl.cli.study",
    "emocaliber_rl.cli.world",
    "emocaliber_rl.cli.demo",
    "emocaliber_rl.cli.tools",
)

_EPILOG = """\
A run takes the commands in the order listed: bench (data) -> cot -> export -> stage 1
(recipes/stage1_sft.sh on the sft1 export) -> stage2 generate/label -> stage 2
(recipes/stage2_sft.sh) -> stage 3 (recipes/stage3_grpo.sh on the rl3 export) -> eval run/score
-> eval report. `emocaliber demo` runs all of it on a tiny model.

example:
  emocaliber demo --out runs/demo
  emocaliber export --help

""" + EXIT_CODES_HELP


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emocaliber",
        description=(
            "EmoCaliber on veRL: build data, train the three stages, evaluate calibration. "
            "Run `emocaliber COMMAND --help` for the options of each command."
        ),
        epilog=_EPILOG,
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from emocaliber_rl.inference.resumable import OutputLockedError
    from emocaliber_rl.jsonl import InputFileError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except (InputFileError, OutputLockedError) as e:
        # bad input names its file and line (emocaliber_rl.jsonl); no traceback for a user's typo
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C: every output is committed whole (atomic renames, append logs cut at a line), so
        # one line is all there is to say; the traceback would only show where the wait was
        print("interrupted: what was committed is kept; rerun the same command to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
