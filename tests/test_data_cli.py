"""Every `bench`, `cot` and `export` option is explained in --help, and --help stays instant
(no pyarrow/PIL/aiohttp import at parser build time)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from emocaliber_rl.cli import build_parser

COMMANDS = [("bench", "build"), ("bench", "import"), ("cot", "synthesize"), ("cot", "judge"),
            ("cot", "split"), ("export",)]


def _sub(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return action.choices[name]
    raise KeyError(name)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_option_has_help(path: tuple[str, ...]) -> None:
    parser = build_parser()
    for name in path:
        parser = _sub(parser, name)
    assert parser.description
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and len(action.help) > 8, f"{' '.join(path)} {action.dest} has no help"


def test_help_does_not_import_heavy_modules() -> None:
    code = ("import sys; from emocaliber_rl.cli import cot, data, export; import argparse; "
            "p = argparse.ArgumentParser(); s = p.add_subparsers(); "
            "[m.register(s) for m in (data, cot, export)]; "
            "print(sorted(m for m in ('pyarrow', 'PIL', 'aiohttp', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
