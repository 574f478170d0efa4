"""``recipes/submit_stage*.sh --check``: the job that checks every node of a Ray cluster alike.

A multi-node run assumes that the model, the data, ``--out``, the repository and its venv are the
same files at the same paths on every node (shared storage), and Ray copies nothing of them. This
job runs one Ray task pinned to each alive node (``NodeAffinitySchedulingStrategy``, not soft);
each task reports the veRL plug-in state of its node and, given the recipe's arguments, runs the
stage's ``--dry-run`` there and fingerprints the paths. The driver prints one table, a column per
node, and exits 1 when a row differs between nodes, a path is missing or a dry run fails.

A fingerprint is what can be compared cheaply across machines: the resolved path; for a file its
size and the sha256 of its content when it is at most 1 MiB, else of its first and last MiB; for a
directory the same of each top-level file (subdirectories by name). ``--out`` is checked for being one directory (shared storage, not identical
local folders): the driver writes a token file into it, every node reads it back, and the driver
removes it (``--out`` is created when missing, as the run would).

Run as ``python -m emocaliber_rl.cluster_check --stage-script recipes/stage3_grpo.sh
--repo DIR --python PATH -- RECIPE_ARGS`` inside the job (the submit scripts build this line).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

SMALL_FILE = 1 << 20
PATH_OPTIONS = ("--model", "--train", "--val", "--out")
HUB_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
TOKEN_PREFIX = ".emocaliber-check-"
DRY_RUN_TIMEOUT_S = 900
WARNING_LINE = re.compile(r"^\S+\.py:\d+: \w*Warning: ")


def recipe_paths(recipe_args: list[str]) -> list[tuple[str, str]]:
    """``[(option, path)]`` of the recipe's path options, comma lists split, in order."""
    found: list[tuple[str, str]] = []
    for i, arg in enumerate(recipe_args):
        opt, eq, inline = arg.partition("=")
        if opt not in PATH_OPTIONS:
            continue
        value = inline if eq else (recipe_args[i + 1] if i + 1 < len(recipe_args) else "")
        found += [(opt, p) for p in value.split(",") if p]
    return found


def _hub_id(path: str) -> bool:
    org, slash, name = path.partition("/")
    return bool(slash and org and name and "/" not in name
                and set(org) <= HUB_ID_CHARS and set(name) <= HUB_ID_CHARS)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _file_print(path: Path) -> dict[str, Any]:
    st = path.stat()
    if st.st_size <= SMALL_FILE:
        return {"size": st.st_size, "sha256": _sha256(path)}
    # a big file (weights, parquet): its size and ends, not its mtime, so that two identical
    # copies (rsync, a download per node) agree and reading 16 GB of weights per node is avoided
    with path.open("rb") as f:
        head = f.read(SMALL_FILE)
        f.seek(-SMALL_FILE, os.SEEK_END)
        tail = f.read(SMALL_FILE)
    return {"size": st.st_size, "ends_sha256": hashlib.sha256(head + tail).hexdigest()}


def fingerprint(path: str) -> dict[str, Any]:
    """What this node sees at ``path`` (an absolute path; a hub id is reported as such)."""
    p = Path(path)
    if not p.is_absolute() and not p.exists() and _hub_id(path):
        return {"kind": "hub id"}
    if not p.exists():
        return {"kind": "missing"}
    real = p.resolve()
    if real.is_file():
        return {"kind": "file", "resolved": str(real), **_file_print(real)}
    entries: dict[str, Any] = {}
    for child in sorted(real.iterdir()):
        try:
            entries[child.name] = _file_print(child) if child.is_file() else "dir"
        except OSError as e:  # unreadable entry: part of what differs
            entries[child.name] = f"unreadable: {e.strerror}"
    return {"kind": "dir", "resolved": str(real), "entries": entries}


def venv_print(python: str) -> dict[str, Any]:
    """The interpreter a job runs and the installed distributions of its environment."""
    found = shutil.which(python)  # a bare name (python3) is looked up on this node's PATH
    if found is None:
        return {"kind": "missing"}
    p = Path(found)
    env = p.parent.parent
    dists = sorted(d.name for d in env.glob("lib/python*/site-packages/*.dist-info"))
    return {"kind": "python", "resolved": str(p.resolve()), "prefix": str(env.resolve()),
            "distributions": len(dists), "distributions_sha256": hashlib.sha256("\n".join(dists).encode()).hexdigest()}


def plugin_state() -> dict[str, Any]:
    """Whether the emocaliber veRL plug-ins are active in this process (what a trainer worker gets)."""
    import verl
    from verl.plugin.platform import get_platform
    from verl.trainer.ppo import core_algos
    from verl.trainer.ppo.v1 import trainer_base

    import emocaliber_rl

    return {
        "host": socket.gethostname(),
        "emocaliber_rl": os.path.dirname(emocaliber_rl.__file__),
        "verl": verl.__version__,
        "VERL_USE_EXTERNAL_MODULES": os.environ.get("VERL_USE_EXTERNAL_MODULES"),
        "VERL_PLATFORM": os.environ.get("VERL_PLATFORM"),
        "EMOCALIBER_LOSS_ROWS": os.environ.get("EMOCALIBER_LOSS_ROWS"),
        "platform": type(get_platform()).__name__,
        "grpo_no_std": "grpo_no_std" in core_algos.ADV_ESTIMATOR_REGISTRY,
        "val_calibration_hook": bool(getattr(trainer_base.PPOTrainer._val_metrics_update,
                                             "_emocaliber_val_calibration", False)),
    }


def dry_run_problems(stderr: str, rc: int) -> list[str]:
    """A failed dry run's own lines (one per problem), without the Python warnings printed around
    them (``FILE.py:N: SomeWarning: ...`` and the indented source line under it)."""
    if rc == 0:
        return []
    lines = [ln for ln in stderr.splitlines()
             if ln.strip() and not ln[0].isspace() and not WARNING_LINE.match(ln)]
    return lines[-10:]


def node_report(stage_script: str | None, recipe_args: list[str], repo: str, python: str,
                token: tuple[str, str] | None) -> dict[str, Any]:
    """Everything one node reports: plug-in state, dry run, fingerprints (runs on that node)."""
    import emocaliber_rl

    report: dict[str, Any] = {"plugin": plugin_state(), "paths": {}}
    paths = report["paths"]
    paths["--python"] = venv_print(python)
    paths["repo"] = fingerprint(repo)
    for opt, path in recipe_paths(recipe_args):
        paths[f"{opt} {path}"] = fingerprint(path)
    if token is not None:
        token_path, value = token
        try:
            seen = Path(token_path).read_text() == value
        except OSError:
            seen = False
        paths["--out shared"] = {"kind": "token", "seen": seen}
    if stage_script is not None:
        # the job's copy of the repository on this node (runtime_env working_dir)
        here = Path(emocaliber_rl.__file__).resolve().parents[1]
        try:
            proc = subprocess.run(["bash", str(here / stage_script), "--dry-run", *recipe_args], cwd=here,
                                  capture_output=True, text=True, timeout=DRY_RUN_TIMEOUT_S, check=False)
            report["dry_run"] = {"rc": proc.returncode, "problems": dry_run_problems(proc.stderr, proc.returncode)}
        except subprocess.TimeoutExpired:
            report["dry_run"] = {"rc": None, "problems": [f"timed out after {DRY_RUN_TIMEOUT_S} s"]}
    return report


def _cell(value: dict[str, Any]) -> str:
    """A short cell: the kind, and a digest that is equal exactly when the fingerprints are."""
    kind = value.get("kind")
    if kind in ("missing", "hub id"):
        return kind
    if kind == "token":
        return "seen" if value["seen"] else "NOT SEEN"
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]
    size = f" {value['size']} B" if kind == "file" else ""
    return f"{kind}{size} {digest}"


def rows(reports: dict[str, dict[str, Any]]) -> list[tuple[str, list[str], str]]:
    """``(item, cells by node, verdict)``; the verdict is ``ok``, ``DIFFERS`` or ``FAILS``."""
    nodes = list(reports)
    table: list[tuple[str, list[str], str]] = []

    def add(item: str, values: list[Any], cells: list[str], fails: bool) -> None:
        same = all(json.dumps(v, sort_keys=True) == json.dumps(values[0], sort_keys=True) for v in values)
        table.append((item, cells, "FAILS" if fails else ("ok" if same else "DIFFERS")))

    if all("dry_run" in reports[n] for n in nodes):
        runs = [reports[n]["dry_run"] for n in nodes]
        add("dry run", [r["rc"] for r in runs], [f"exit {r['rc']}" for r in runs],
            any(r["rc"] != 0 for r in runs))
    plugin = [{k: v for k, v in reports[n]["plugin"].items() if k not in ("host", "emocaliber_rl")} for n in nodes]
    add("veRL plug-ins", plugin,
        [hashlib.sha256(json.dumps(p, sort_keys=True).encode()).hexdigest()[:10] for p in plugin],
        any(not (p["grpo_no_std"] and p["val_calibration_hook"]) for p in plugin))
    items = list(dict.fromkeys(k for n in nodes for k in reports[n]["paths"]))
    for item in items:
        values = [reports[n]["paths"].get(item, {"kind": "missing"}) for n in nodes]
        fails = any(v["kind"] == "missing" or (v["kind"] == "token" and not v["seen"]) for v in values)
        add(item, values, [_cell(v) for v in values], fails)
    return table


def render(reports: dict[str, dict[str, Any]], table: list[tuple[str, list[str], str]]) -> str:
    header = ["item", *reports, "verdict"]
    body = [[item, *cells, verdict] for item, cells, verdict in table]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _details(reports: dict[str, dict[str, Any]], table: list[tuple[str, list[str], str]]) -> list[str]:
    """What each node saw, for the rows that are not ok."""
    out = []
    for item, _cells, verdict in table:
        if verdict == "ok":
            continue
        for node, rep in reports.items():
            if item == "dry run":
                seen = rep["dry_run"]
            elif item == "veRL plug-ins":
                seen = rep["plugin"]
            else:
                seen = rep["paths"].get(item, {"kind": "missing"})
            out.append(f"cluster_check: {item} ({verdict}) on {node}: {json.dumps(seen, sort_keys=True)}")
    return out


def _out_token(recipe_args: list[str]) -> tuple[Path, str] | None:
    outs = [p for opt, p in recipe_paths(recipe_args) if opt == "--out"]
    if not outs:
        return None
    out = Path(outs[-1])
    out.mkdir(parents=True, exist_ok=True)
    value = uuid.uuid4().hex
    path = out / f"{TOKEN_PREFIX}{value[:12]}"
    path.write_text(value)
    return path, value


def check_cluster(stage_script: str | None, repo: str, python: str, recipe_args: list[str]) -> int:
    """Run :func:`node_report` on every alive node of the Ray cluster this job runs in, print the
    table and return 0 when every node agrees, 1 when one differs or fails, 2 when ``--out`` cannot
    take the shared-folder token (``python -m emocaliber_rl.cli.cluster_check`` parses the options)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    print("EMOCALIBER_PLUGIN_STATE driver " + json.dumps(plugin_state(), sort_keys=True), flush=True)
    try:
        token = _out_token(recipe_args) if stage_script else None
    except OSError as e:  # --out not creatable or not writable from the job's driver node
        print(f"cluster_check: --out: cannot write the shared-folder token: {e}", file=sys.stderr)
        return 2
    try:
        ray.init()
        nodes = sorted((n for n in ray.nodes() if n["Alive"]), key=lambda n: n["NodeManagerAddress"])
        task = ray.remote(num_cpus=0)(node_report)
        refs = {}
        for i, node in enumerate(nodes):
            name = f"node{i} {node['NodeManagerAddress']}"
            pin = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
            refs[name] = task.options(scheduling_strategy=pin).remote(
                stage_script, recipe_args, repo, python,
                (str(token[0]), token[1]) if token else None)
        reports = {name: ray.get(ref) for name, ref in refs.items()}
    finally:
        if token is not None:
            token[0].unlink(missing_ok=True)
    for name, rep in reports.items():
        print(f"EMOCALIBER_PLUGIN_STATE worker {json.dumps(rep['plugin'], sort_keys=True)}", flush=True)
        for problem in rep.get("dry_run", {}).get("problems", []):
            print(f"cluster_check: dry run on {name}: {problem}", flush=True)
    table = rows(reports)
    print(f"cluster_check: {len(reports)} alive nodes")
    print(render(reports, table))
    for line in _details(reports, table):
        print(line)
    bad = [item for item, _c, verdict in table if verdict != "ok"]
    if bad:
        print(f"cluster_check: the nodes do not agree: {', '.join(bad)}", file=sys.stderr)
        return 1
    print("cluster_check: every node sees the same paths")
    return 0

