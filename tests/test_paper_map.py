"""docs/paper-map.md names only what exists: every file, function/class, config key, flag and test
that its tables name is checked here against the tree (source read with ast, never imported; stage
configs composed with Hydra as the recipes compose them)."""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from .conftest import REPO_ROOT

MAP = REPO_ROOT / "docs" / "paper-map.md"
CONFIG_DIR = REPO_ROOT / "recipes" / "config"
COLUMNS = ("implementation", "setting", "test")
_TICKED = re.compile(r"`([^`]+)`")
_SEPARATOR = re.compile(r"^\|[\s|:-]+\|$")


def map_rows(text: str) -> list[dict[str, list[str]]]:
    """Each table row of the map as {column: [backticked items]}, for the three checked columns.

    A table's header names its columns; the first column says what the row is (kept as "what")."""
    rows: list[dict[str, list[str]]] = []
    header: list[str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            header = None
            continue
        if _SEPARATOR.match(line):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = [c.lower() for c in cells]
            continue
        row = {"what": [cells[0]]}
        for name in COLUMNS:
            assert name in header, f"paper-map.md: a table lacks the column {name!r}: {header}"
            row[name] = _TICKED.findall(cells[header.index(name)])
        rows.append(row)
    return rows


@functools.cache
def _defined_names(path: Path) -> frozenset[str]:
    """Top-level functions, classes and assigned names of a Python file, and Class.method."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                names.update(f"{node.name}.{item.name}" for item in node.body
                             if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)))
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return frozenset(names)


def _existing_file(rel: str) -> Path:
    path = REPO_ROOT / rel
    assert path.is_file(), f"paper-map.md names {rel}, which is not a file of the repository"
    return path


def check_implementation(item: str) -> None:
    rel, _, name = item.partition("::")
    path = _existing_file(rel)
    if name:
        assert path.suffix == ".py", f"paper-map.md: {item}: only a Python file has named functions"
        assert name in _defined_names(path), f"paper-map.md: {rel} defines no {name}"


@functools.cache
def _config(rel: str) -> dict:
    """The config a key is looked up in: a stage config (recipes/config/*.yaml) as Hydra composes it
    with its defaults (veRL's own config and the default preset); a group file (a preset or a
    profile) as written, since it is only merged when selected."""
    path = _existing_file(rel)
    if path.parent != CONFIG_DIR:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    # the stage YAMLs search `pkg://verl.trainer.config`, which imports veRL (and torch) to find
    # it; the same folder by its file path composes the same config in a second, importing neither
    verl = importlib.util.find_spec("verl")
    assert verl is not None and verl.submodule_search_locations, "veRL is not installed"
    verl_config = Path(verl.submodule_search_locations[0]) / "trainer" / "config"
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name=path.stem, overrides=[f"hydra.searchpath=[file://{verl_config}]"])
    # "???" (the paths the recipe fills in) stays a string here instead of raising
    return OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)


def check_setting(item: str) -> None:
    if ".yaml:" in item:
        rel, key = item.split(":", 1)
        node: object = _config(rel)
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"paper-map.md: {rel} has no key {key} (at {part!r})"
            node = node[part]
        return
    rel, sep, word = item.partition(" ")
    assert sep and word, f"paper-map.md: setting {item!r} is neither FILE.yaml:key nor 'FILE WORD'"
    text = _existing_file(rel).read_text(encoding="utf-8")
    assert word in text, f"paper-map.md: {rel} never mentions {word}"


def check_test(item: str) -> None:
    rel, sep, name = item.partition("::")
    assert sep and rel.startswith("tests/test_"), f"paper-map.md: test {item!r} is not tests/test_*.py::name"
    path = _existing_file(rel)
    assert name.startswith("test_") and name in _defined_names(path), f"paper-map.md: {rel} has no {name}"


def test_map_parser_reads_cells_by_header() -> None:
    text = ("| what | implementation | setting | test |\n|---|---|---|---|\n"
            "| Eq. 9 | `a.py::f`, `b.py` | - | `tests/test_a.py::test_x` |\n\nprose\n")
    assert map_rows(text) == [{"what": ["Eq. 9"], "implementation": ["a.py::f", "b.py"], "setting": [],
                               "test": ["tests/test_a.py::test_x"]}]


def test_map_names_every_equation_and_stage() -> None:
    rows = map_rows(MAP.read_text(encoding="utf-8"))
    whats = " ".join(r["what"][0] for r in rows)
    for eq in range(1, 7):
        assert f"Eq. {eq}," in whats, f"paper-map.md has no row for Eq. {eq}"
    for stage in ("stage 1", "stage 2", "stage 3"):
        assert stage in whats, f"paper-map.md has no row for {stage}"
    for row in rows:
        assert row["implementation"] and row["test"], f"paper-map.md: row {row['what'][0]!r} lacks a file or a test"


def plugin_table(init: Path = REPO_ROOT / "emocaliber_rl" / "verl_plugins" / "__init__.py") -> set[str]:
    """The plug-in table as paper-map items: each ``when_imported(NAME, module.function)`` hook and
    each imported function run as a statement of its own at import (the CPU platform's ``activate``)."""
    modules: dict[str, str] = {}  # a plug-in module's name in __init__ -> its file
    functions: dict[str, str] = {}  # an imported function's name -> "file::name"
    hooks: set[str] = set()
    for node in ast.walk(ast.parse(init.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("emocaliber_rl.verl_plugins"):
            for alias in node.names:
                if node.module == "emocaliber_rl.verl_plugins":
                    modules[alias.name] = f"emocaliber_rl/verl_plugins/{alias.name}.py"
                else:
                    functions[alias.name] = f"{node.module.replace('.', '/')}.py::{alias.name}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "when_imported":
            hook = node.args[1]
            assert isinstance(hook, ast.Attribute), ast.unparse(node)
            hooks.add(f"{modules[hook.value.id]}::{hook.attr}")
        elif (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
              and node.value.func.id in functions and node.value.func.id != "when_imported"):
            hooks.add(functions[node.value.func.id])
    return hooks


def test_every_plugin_hook_is_in_the_map() -> None:
    hooks = plugin_table()
    assert len(hooks) >= 10  # the table as read: one function per when_imported call, and activate
    named = {i for r in map_rows(MAP.read_text(encoding="utf-8")) for i in r["implementation"]}
    assert not hooks - named, f"paper-map.md lacks these veRL plug-in hooks: {sorted(hooks - named)}"


def test_every_named_thing_exists() -> None:
    rows = map_rows(MAP.read_text(encoding="utf-8"))
    assert len(rows) >= 30
    problems = []
    for row in rows:
        for column, check in (("implementation", check_implementation), ("setting", check_setting),
                              ("test", check_test)):
            for item in row[column]:
                try:
                    check(item)
                except AssertionError as e:
                    problems.append(f"{row['what'][0]}: {str(e).splitlines()[0]}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("check", "item"), [
    (check_implementation, "reward_fns/emocaliber.py::no_such_function"),
    (check_implementation, "reward_fns/no_such_file.py"),
    (check_implementation, "emocaliber_rl/verl_plugins/cpu_platform.py::PlatformCPU.no_such_method"),
    (check_setting, "recipes/config/stage3_grpo.yaml:actor_rollout_ref.actor.no_such_key"),
    (check_setting, "recipes/config/sft_preset/paper.yaml:optim.lr"),  # lr lives in the stage config
    (check_setting, "recipes/stage3_grpo.sh --no-such-flag"),
    (check_test, "tests/test_advantage.py::test_no_such_test"),
    (check_test, "tests/test_advantage.py::compute_grpo_no_std_advantage"),
])
def test_a_wrong_name_is_caught(check, item: str) -> None:
    with pytest.raises(AssertionError):
        check(item)


def test_keys_from_hydra_defaults_are_found() -> None:
    # set by veRL's sft_trainer_engine.yaml and by the default sft_preset, not by stage1_sft.yaml itself
    check_setting("recipes/config/stage1_sft.yaml:optim.lr_scheduler_type")
    check_setting("recipes/config/stage3_grpo.yaml:actor_rollout_ref.actor.loss_agg_mode")
    check_setting("recipes/config/stage3_grpo.yaml:data.train_files")  # "???" in the YAML
