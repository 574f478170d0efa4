"""`emocaliber ...`: one console script, thin; each subcommand lives with the module it drives.

Every module listed in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its
parser(s) and sets ``func`` (called with the parsed namespace, returns an exit code). Heavy
imports (torch, veRL, vLLM) happen inside ``func`` so that ``--help`` stays instant.
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
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
