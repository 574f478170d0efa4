"""The Python the recipes run inline (heredocs, ``python -c``) imports names that exist.

A bash recipe's embedded ``from emocaliber_rl.x import y`` is not seen by ruff or by any import of
the package, so a moved name only fails when the recipe runs (gpu_smoke.sh's 7B data step once
imported a constant from the module it had just left).
"""

from __future__ import annotations

import importlib
import re

import pytest

from tests.conftest import REPO_ROOT

_FROM = re.compile(r"^\s*from\s+((?:emocaliber_rl|reward_fns)(?:\.\w+)*)\s+import\s+([\w, ()]+?)\s*$", re.MULTILINE)


def _imports() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted((REPO_ROOT / "recipes").rglob("*.sh")):
        for module, names in _FROM.findall(path.read_text(encoding="utf-8")):
            for name in names.replace("(", " ").replace(")", " ").split(","):
                if name.strip():
                    found.append((str(path.relative_to(REPO_ROOT)), module, name.strip().split(" as ")[0]))
    return found


def test_the_recipes_import_something() -> None:
    assert any(src == "recipes/gpu_smoke.sh" for src, _, _ in _imports())  # the scan sees the heredocs


@pytest.mark.parametrize(("src", "module", "name"), _imports())
def test_each_inline_import_resolves(src: str, module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name), f"{src}: {module} has no {name}"
