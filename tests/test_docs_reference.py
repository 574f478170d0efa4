"""The docs are a reference of what the tree holds now: docs/layout.md names every module (and
nothing that is gone), docs/measurements.md keeps one short row per quantity, and no doc names a
folder of the machine it was written on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

DOCS = REPO_ROOT / "docs"
LAYOUT = DOCS / "layout.md"
MEASUREMENTS = DOCS / "measurements.md"
MAX_CELL = 400
# the roots layout.md covers, and which files under them count as modules
COVERED = {"emocaliber_rl": (".py",), "reward_fns": (".py",), "benchmarks": (".py",), "examples": (".py",),
           "recipes": (".sh", ".yaml")}
SKIPPED = {"__init__.py", "__main__.py"}
# a folder of one machine: /tmp/..., /work/..., /home/... (and the like), not a repository path
# such as runs/demo/tmp/ or an example like /data/ckpt
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:tmp|work|home|root|Users)/")
_TICKED_PATH = re.compile(r"`([\w./-]+)`")


def tree_modules(root: Path = REPO_ROOT) -> set[str]:
    """Every module layout.md must name: files of COVERED (not __init__/__main__, not caches) and
    every package folder under emocaliber_rl/ (as ``emocaliber_rl/x/``)."""
    found: set[str] = set()
    for top, suffixes in COVERED.items():
        for path in sorted((root / top).rglob("*")):
            rel = path.relative_to(root).as_posix()
            if "__pycache__" in rel:
                continue
            if path.is_file() and path.suffix in suffixes and path.name not in SKIPPED:
                found.add(rel)
            elif path.is_dir() and top == "emocaliber_rl" and (path / "__init__.py").is_file():
                found.add(rel + "/")
    return found


def layout_names(text: str) -> set[str]:
    """The repository paths layout.md names in backticks."""
    return {m for m in _TICKED_PATH.findall(text) if m.split("/", 1)[0] in COVERED}


def missing_and_stale(text: str, root: Path = REPO_ROOT) -> tuple[set[str], set[str]]:
    named = layout_names(text)
    missing = {m for m in tree_modules(root) if m not in named}
    stale = {m for m in named if not (root / m).exists()}
    return missing, stale


def table_cells(text: str) -> list[tuple[int, str]]:
    """(line number, cell) of every table cell in a Markdown text."""
    cells = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("|"):
            cells.extend((n, c.strip()) for c in line.strip().strip("|").split("|"))
    return cells


def machine_paths(text: str) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if MACHINE_PATH.search(line)]


def test_layout_names_every_module_and_nothing_gone() -> None:
    missing, stale = missing_and_stale(LAYOUT.read_text(encoding="utf-8"))
    assert not missing, f"docs/layout.md does not name: {sorted(missing)}"
    assert not stale, f"docs/layout.md names paths that do not exist: {sorted(stale)}"


def test_layout_check_sees_a_new_module_and_a_removed_one(tmp_path: Path) -> None:
    for top in COVERED:
        (tmp_path / top).mkdir()
    pkg = tmp_path / "emocaliber_rl" / "world"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "scenes.py").write_text("")
    (tmp_path / "recipes" / "stage1_sft.sh").write_text("")
    text = "`emocaliber_rl/world/` holds `emocaliber_rl/world/scenes.py`; `recipes/stage1_sft.sh`"
    assert missing_and_stale(text, tmp_path) == (set(), set())
    (pkg / "oracle.py").write_text("")
    assert missing_and_stale(text, tmp_path) == ({"emocaliber_rl/world/oracle.py"}, set())
    (tmp_path / "recipes" / "stage1_sft.sh").unlink()
    assert missing_and_stale(text, tmp_path)[1] == {"recipes/stage1_sft.sh"}


def test_measurements_cells_are_short() -> None:
    long = [(n, len(c)) for n, c in table_cells(MEASUREMENTS.read_text(encoding="utf-8")) if len(c) > MAX_CELL]
    assert not long, f"docs/measurements.md: cells over {MAX_CELL} characters (line, length): {long}"


def test_measurements_has_the_reference_columns() -> None:
    header = next(c for c in MEASUREMENTS.read_text(encoding="utf-8").splitlines() if c.startswith("| quantity"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "quantity", "value", "command", "commit", "date", "machine state"]


def test_cell_check_measures_each_cell() -> None:
    text = "| a | b |\n|---|---|\n| " + "x" * (MAX_CELL + 1) + " | y |\n"
    assert [len(c) for _, c in table_cells(text)] == [1, 1, 3, 3, MAX_CELL + 1, 1]


@pytest.mark.parametrize("doc", sorted(DOCS.glob("*.md")) + [REPO_ROOT / "README.md"], ids=lambda p: p.name)
def test_no_machine_paths(doc: Path) -> None:
    found = machine_paths(doc.read_text(encoding="utf-8"))
    assert not found, f"{doc.relative_to(REPO_ROOT)}: paths of one machine (use runs/... paths): {found[:5]}"


@pytest.mark.parametrize(("line", "hit"), [
    ("`emocaliber demo --out /tmp/d8`", True), ("see /work/main/docs", True), ("/home/me/x", True),
    ("`--out runs/demo`", False), ("runs/demo/tmp/x", False), ("--train /data/stage1.parquet", False),
    ("~/.ray/auth_token", False),
])
def test_machine_path_pattern(line: str, hit: bool) -> None:
    assert bool(machine_paths(line)) is hit
