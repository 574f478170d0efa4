"""Run manifests: what defines a resumable output, recorded beside it at its first write.

``stage2 generate``, ``eval run`` and ``cot synthesize`` append to an output that a rerun
continues. A rerun with other settings (another model, another temperature) must not continue
it: the file would hold two runs that nothing downstream can tell apart. So the first write of
``OUT`` also writes ``OUT.run.json``::

    {"run_id": "3f9c...", "kind": "stage2 generate", "created": "2026-12-01T20:10:00Z",
     "settings": {"model": {"path", "config_sha256"}, "engine": {...}, "sampling": {...},
                  "prompts": {"path", "sha256"}, ...}}

and every row gets ``run_id``. The resume rule (:func:`open_run`): a rerun whose ``settings``
equal the recorded ones continues the run; any difference is refused with a message naming
each differing setting, unless ``force_new``, which (whatever the settings) moves the old
output aside (``OUT`` -> ``OUT-STEM.<old run id>.SUFFIX``, with its ``.run.json`` and
``.errors.jsonl``; nothing is deleted) and starts a fresh run. An output that has rows but no
manifest (written before manifests existed, or by hand) is refused the same way; an output
without rows (missing, empty) starts a new run. ``eval score`` refuses a predictions file whose
rows carry different run ids.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from emocaliber_rl.jsonl import InputFileError

MANIFEST_SUFFIX = ".run.json"


class RunMismatchError(InputFileError):
    """An existing output belongs to a run with other settings (exit 2 at the CLI)."""


def manifest_path(out: str | os.PathLike[str]) -> Path:
    out = Path(out)
    return out.with_name(out.name + MANIFEST_SUFFIX)


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def json_sha256(value: Any) -> str:
    """Hash of a JSON value in canonical form (sorted keys), for prompt sets given as rows."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_fingerprint(model: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"path", "config_sha256"}``: a folder by absolute path, a hub id as given.

    The weights are not hashed (minutes for a 7B checkpoint); two checkpoints with the same path
    and the same ``config.json`` count as the same model. ``config_sha256`` is null for a hub id
    that is not in the local cache.
    """
    p = Path(model)
    if p.is_dir():
        cfg = p / "config.json"
        return {"path": str(p.resolve()), "config_sha256": file_sha256(cfg) if cfg.is_file() else None}
    cached = None
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(str(model), "config.json")
        cached = hit if isinstance(hit, str) else None
    except Exception:  # noqa: BLE001  (not a hub id at all: no cached config to hash)
        cached = None
    return {"path": str(model), "config_sha256": file_sha256(cached) if cached else None}


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``"sampling.temperature: 0.7 recorded, 0.1 now"`` for every setting that differs."""
    a, b = _flatten(recorded), _flatten(current)
    # JSON round trip so a tuple now and a list on disk compare equal
    b = json.loads(json.dumps(b, default=str))
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<unset>") != b.get(key, "<unset>"):
            out.append(f"{key}: {json.dumps(a.get(key, '<unset>'))} recorded, "
                       f"{json.dumps(b.get(key, '<unset>'))} now")
    return out


def _has_rows(out: Path) -> bool:
    if not out.is_file():
        return False
    with open(out, "rb") as f:
        return any(line.strip() for line in f)


def _locked(out: Path) -> bool:
    """Whether another process holds the writer's ``flock`` on ``out`` (see ``inference.resumable``)."""
    import fcntl

    with open(out, "rb") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return False


def archive_name(out: Path, tag: str) -> Path:
    """``gen.jsonl`` -> ``gen.<tag>.jsonl`` (a free name; ``-2``, ``-3``... appended if taken)."""
    suffix = "".join(out.suffixes[-1:])
    stem = out.name[: len(out.name) - len(suffix)] if suffix else out.name
    cand = out.with_name(f"{stem}.{tag}{suffix}")
    k = 2
    while cand.exists() or manifest_path(cand).exists():
        cand = out.with_name(f"{stem}.{tag}-{k}{suffix}")
        k += 1
    return cand


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_run(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of ``out``, or None when it has none."""
    mp = manifest_path(out)
    if not mp.is_file():
        return None
    try:
        man = json.loads(mp.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InputFileError(f"{mp}: not a run manifest ({e})") from None
    if not isinstance(man, dict) or not isinstance(man.get("settings"), dict) or not man.get("run_id"):
        raise InputFileError(f"{mp}: not a run manifest (needs run_id and settings)")
    return man


def open_run(
    out: str | os.PathLike[str],
    kind: str,
    settings: Mapping[str, Any],
    *,
    force_new: bool = False,
    dry_run: bool = False,
) -> tuple[str | None, list[str]]:
    """Apply the resume rule to ``out``; returns ``(run_id, notes)``.

    ``dry_run`` checks without writing or moving anything (``run_id`` is then None for a fresh
    run): commands call it before loading a model, so a refused resume costs nothing.

    Raises:
        RunMismatchError: ``out`` holds rows of a run with other settings (or of no recorded
            run) and ``force_new`` is not set; the message names every differing setting.
    """
    out = Path(out)
    settings = json.loads(json.dumps(dict(settings), default=str))
    notes: list[str] = []
    recorded = read_run(out)
    rows = _has_rows(out)
    # only rows can be mixed: a manifest whose output is gone or still empty is simply replaced
    occupied = rows
    if recorded is not None:
        diffs = differences(recorded["settings"], settings)
        if recorded.get("kind") != kind:
            diffs.insert(0, f"kind: {json.dumps(recorded.get('kind'))} recorded, {json.dumps(kind)} now")
        if not diffs and not force_new:
            return recorded["run_id"], notes
        problem = (f"{out} belongs to run {recorded['run_id']} with other settings:\n  "
                   + "\n  ".join(diffs))
    else:
        problem = (f"{out} has rows but no run manifest ({manifest_path(out).name}): it was written "
                   "by an older version or by hand, so what produced it is unknown")
    if occupied:
        if not force_new:
            raise RunMismatchError(problem + "\nrerun with the recorded settings to resume it, or "
                                   "pass --force-new to move it aside and start a new run")
        if _locked(out):
            raise RunMismatchError(f"{out} is being written by another process; stop it before "
                                   "starting a new run with --force-new")
        tag = recorded["run_id"] if recorded else "unrecorded"
        dest = archive_name(out, tag)
        notes.append(f"--force-new: moved the previous run to {dest}")
        if dry_run:
            return None, notes
        if out.exists():
            os.replace(out, dest)
        if manifest_path(out).exists():
            os.replace(manifest_path(out), manifest_path(dest))
        errors = out.with_name(out.name + ".errors.jsonl")  # its skipped/failed ids go with it
        if errors.exists():
            os.replace(errors, dest.with_name(dest.name + ".errors.jsonl"))
    if dry_run:
        return None, notes
    run_id = uuid.uuid4().hex[:12]
    out.parent.mkdir(parents=True, exist_ok=True)
    created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _write_manifest(manifest_path(out), {"run_id": run_id, "kind": kind, "created": created,
                                         "settings": settings})
    return run_id, notes


def check_single_run(rows: Iterable[tuple[int, Any]], path: str,
                     state: dict[str, Any] | None = None) -> Iterator[tuple[int, Any]]:
    """Pass ``(line, row)`` pairs through, raising at the first row of a second run.

    Rows without ``run_id`` (files from other tools, the official release) are accepted when no
    row has one; a mix of rows with and without is a mix of runs. ``state`` carries the first
    row's run across calls (for readers that check one row at a time).
    """
    state = {} if state is None else state
    for n, row in rows:
        if isinstance(row, dict):
            rid = row.get("run_id")
            first = state.get("first")
            if first is None:
                state["first"] = (n, rid)
            elif rid != first[1]:
                raise InputFileError(
                    f"{path}:{n}: field 'run_id': {json.dumps(rid)} differs from "
                    f"{json.dumps(first[1])} at line {first[0]}: the file mixes rows of different "
                    "runs (other model or settings); use each run's own file")
        yield n, row
