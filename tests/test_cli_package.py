"""The command line lives in one package (`emocaliber_rl/cli/`) and its help is complete: every
command listed in workflow order, each default printed once and never as "None", every subcommand
ending with an example, the recipes naming commands that exist, and one backend map behind
`make_engine` and every `--backend`-style option."""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from emocaliber_rl.cli import build_parser

PACKAGE = Path(__file__).resolve().parents[1] / "emocaliber_rl"
RECIPES = PACKAGE.parent / "recipes"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth of the file (function-level imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser, bool]]:
    """(command path, parser, is_leaf) for the root and every subcommand."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    yield path, parser, not subs
    for action in subs:
        for name, child in action.choices.items():
            yield from _parsers(child, (*path, name))


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(action.choices)


def test_no_library_module_imports_argparse() -> None:
    offenders = [str(p.relative_to(PACKAGE)) for p in sorted(PACKAGE.rglob("*.py"))
                 if "cli" not in p.relative_to(PACKAGE).parts[:1] and "argparse" in _imports(p)]
    assert offenders == []
    assert "argparse" in _imports(PACKAGE / "cli" / "common.py")  # the walk does see imports


def test_help_lists_every_command_in_workflow_order() -> None:
    out = subprocess.run([sys.executable, "-m", "emocaliber_rl.cli", "--help"], capture_output=True,
                         text=True, check=True, env={**os.environ, "COLUMNS": "200"}).stdout
    listed = re.findall(r"^    ([a-z0-9-]+)(?:\s|$)", out, re.MULTILINE)
    commands = _commands(build_parser())
    assert listed == commands
    for name in commands:
        assert re.search(rf"^    {name}\s+\S", out, re.MULTILINE), f"{name} has no description"
    order = ["bench", "cot", "export", "stage2", "eval"]
    assert [c for c in commands if c in order] == order
    tools = ["setup-cpu", "tiny-model", "ray-package", "gpu-check"]
    assert commands[-len(tools):] == tools
    assert "run a model" in out  # eval also runs models, and says so


def test_module_entry_point_and_console_script_target() -> None:
    setup = (PACKAGE.parent / "setup.py").read_text(encoding="utf-8")
    assert '"emocaliber = emocaliber_rl.cli:main"' in setup
    from emocaliber_rl import cli

    assert callable(cli.main)
    assert (PACKAGE / "cli" / "__main__.py").is_file()


def _option_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    return parser._get_formatter()._expand_help(action) if action.help else ""


def test_each_default_is_printed_once_and_never_as_none() -> None:
    checked = 0
    for path, parser, _ in _parsers(build_parser()):
        text = parser.format_help()
        assert "(default: None)" not in text, " ".join(path)
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            help_text = _option_help(parser, action)
            n = len(re.findall(r"\bdefault\b", help_text, re.IGNORECASE))
            assert n <= 1, f"{' '.join(path)} {action.dest}: {help_text!r}"
            checked += 1
    assert checked > 150


def test_a_real_default_that_the_help_does_not_name_is_added_once() -> None:
    from emocaliber_rl.cli.common import HelpFormatter

    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    p.add_argument("--steps", type=int, default=20, help="training steps")
    p.add_argument("--lr", type=float, default=1e-6, help="learning rate (default 1e-6)")
    p.add_argument("--out", default=None, help="output file")
    text = " ".join(p.format_help().split())
    assert "training steps (default: 20)" in text
    assert "learning rate (default 1e-6) --out" in text.replace("--out OUT", "--out")
    assert "output file" in text and "None" not in text


def test_every_subcommand_ends_with_its_own_example() -> None:
    leaves = [(path, p) for path, p, leaf in _parsers(build_parser()) if leaf and path]
    assert len(leaves) >= 20
    for path, parser in leaves:
        text = parser.format_help().rstrip()
        example = text.split("example:")[-1]
        assert "example:" in text, " ".join(path)
        assert example.strip().splitlines()[-1].strip().startswith("emocaliber " + " ".join(path)), \
            " ".join(path)


def _names_a_command(root: argparse.ArgumentParser, words: list[str]) -> bool:
    parser, consumed = root, 0
    for word in words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs and word in subs[0].choices:
            parser, consumed = subs[0].choices[word], consumed + 1
            continue
        if subs:
            return False  # a command group followed by something that is not one of its commands
        positional = [a for a in parser._actions if not a.option_strings and a.choices]
        if positional and consumed and not word.startswith("-"):
            return word in positional[0].choices
        break
    return consumed > 0


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.sh")))
def test_recipe_help_names_commands_that_exist(recipe: str) -> None:
    proc = subprocess.run(["bash", str(RECIPES / recipe), "--help"], check=False, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    root = build_parser()
    for quoted in re.findall(r"`emocaliber ([^`]+)`", proc.stdout):
        assert _names_a_command(root, quoted.split()), f"{recipe} --help names `emocaliber {quoted}`"


def test_the_command_check_refuses_a_kind_that_does_not_exist() -> None:
    root = build_parser()
    assert _names_a_command(root, ["export", "sft1"])
    assert not _names_a_command(root, ["export", "sft"])
    assert not _names_a_command(root, ["stage2", "labels"])
    assert _names_a_command(root, ["ray-package"])


def test_backend_choices_are_the_engine_map() -> None:
    from emocaliber_rl.inference.backends import BACKENDS, engine_class
    from emocaliber_rl.inference.engine import Engine

    options = [(path, a) for path, p, _ in _parsers(build_parser()) for a in p._actions
               if a.dest.endswith("backend")]
    assert {" ".join(path) for path, _ in options} >= {"stage2 generate", "eval run", "demo",
                                                        "study table9"}
    for path, action in options:
        assert set(action.choices) == set(BACKENDS), " ".join(path)
    for name in BACKENDS:
        cls = engine_class(name)
        assert issubclass(cls, Engine) and cls.backend == name
    with pytest.raises(ValueError, match="'vllm', 'hf'"):
        engine_class("tgi")


def test_inference_package_has_no_import_circle() -> None:
    folder = PACKAGE / "inference"
    modules = {f"emocaliber_rl.inference.{p.stem}": p for p in folder.glob("*.py") if p.stem != "__init__"}
    graph = {m: {n for n in _imports(p) if n in modules and n != m} for m, p in modules.items()}
    assert "emocaliber_rl.inference.engine" in graph["emocaliber_rl.inference.hf_engine"]  # edges seen

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    circles = sorted(m for m in graph if reaches(m, m, {m}))
    assert circles == []
