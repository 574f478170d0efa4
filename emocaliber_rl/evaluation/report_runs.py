"""The runs a report compares: a score JSON (or a run directory) and, when found, its per-sample rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emocaliber_rl.evaluation.parsing import PARSE_MODES
from emocaliber_rl.evaluation.scoring import Samples, read_predictions, read_samples


@dataclass
class Run:
    """One evaluated run: its display name, score JSON and (when found) per-sample rows."""

    name: str
    scores: dict[str, Any]
    path: Path
    samples: Samples | None = None
    samples_from: str | None = None


def _find_samples(
    scores: dict[str, Any], base: Path, candidates: list[Path], scan_dir: bool
) -> tuple[Samples | None, str | None]:
    """Per-sample rows of a run: ``meta.samples``, then ``candidates``, then the predictions file
    (``meta.input``, or with ``scan_dir`` the one ``*.jsonl`` of a run directory) re-parsed."""
    meta = scores.get("meta", {})
    paths: list[Path] = []
    if meta.get("samples"):
        p = Path(meta["samples"])
        paths.append(p if p.is_absolute() else base / p)
    paths.extend(candidates)
    for p in paths:
        if p.is_file():
            return read_samples(p), str(p)
    # re-parse the predictions file with the run's own settings
    parse = meta.get("parse") if meta.get("parse") in PARSE_MODES else "strict"
    if meta.get("input"):
        p = Path(meta["input"])
        for q in (p, base / p):
            if q.is_file():
                return read_predictions(q, parse=parse), str(q)
    if scan_dir:
        # only an unambiguous predictions file: a wrong one would plot another run's answers
        found = [p for p in sorted(base.glob("*.jsonl")) if p.name != "samples.jsonl"]
        if len(found) == 1:
            return read_predictions(found[0], parse=parse), str(found[0])
    return None, None


def load_run(path: str | Path, name: str | None = None) -> Run:
    """A run from a score JSON, or a directory holding ``scores.json`` (+ samples/predictions)."""
    p = Path(path)
    if p.is_dir():
        score_path = p / "scores.json"
        if not score_path.is_file():
            raise FileNotFoundError(f"{p}: directory has no scores.json")
        default_name = p.resolve().name
        extra = [p / "samples.jsonl"]
    elif p.is_file():
        score_path = p
        default_name = p.resolve().parent.name if p.stem == "scores" else p.stem
        extra = [p.with_name(p.stem + ".samples.jsonl")]
    else:
        raise FileNotFoundError(f"{p}: no such file or directory")
    try:
        scores = json.loads(score_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{score_path}: invalid JSON: {e.msg} (line {e.lineno})") from None
    if not isinstance(scores, dict) or "tasks" not in scores or "groups" not in scores:
        raise ValueError(f"{score_path}: not a score JSON (needs 'tasks' and 'groups')")
    samples, samples_from = _find_samples(scores, score_path.parent, extra, scan_dir=p.is_dir())
    return Run(name or default_name, scores, score_path, samples, samples_from)


def unique_names(runs: list[Run]) -> None:
    seen: dict[str, int] = {}
    for r in runs:
        if r.name in seen:
            seen[r.name] += 1
            r.name = f"{r.name}-{seen[r.name]}"
        else:
            seen[r.name] = 1
