"""`emocaliber ...`: one console script, thin; each subcommand lives with the module it drives.

Every module listed in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its
parser(s) and sets ``func`` (called with the parsed namespace, returns an exit code). Heavy
imports (torch, veRL, vLLM) happen inside ``func`` so that ``--help`` stays instant.

Exit codes: 0 done; 1 nothing usable written (the message says what to try); 2 bad input or
arguments (an :class:`~emocaliber_rl.jsonl.InputFileError` names file, line and field); 3 done
in part (some items failed or were skipped and are retried by a rerun).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES: tuple[str, ...] = (
    "emocaliber_rl.cpu_env",
    "emocaliber_rl.tiny_model",
    "emocaliber_rl.loops",
    "emocaliber_rl.evaluation.cli",
    "emocaliber_rl.data.cli",
    "emocaliber_rl.stage2_cli",
    "emocaliber_rl.world.cli",
    "emocaliber_rl.study.cli",
    "emocaliber_rl.demo",
    "emocaliber_rl.ray_package",
    "emocaliber_rl.gpu_check",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emocaliber",
        description=(
            "EmoCaliber on veRL: build data, train the three stages, evaluate calibration. "
            "Run `emocaliber COMMAND --help` for the options of each command."
        ),
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
    except (InputFileError, OutputLockedError) as e:
        # bad input names its file and line (emocaliber_rl.jsonl); no traceback for a user's typo
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
