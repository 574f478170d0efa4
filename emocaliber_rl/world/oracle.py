"""The oracle of the known-answer world: the Bayes posterior as the confidence, its argmax as the
answer, written as ``emocaliber eval run`` rows so ``eval score`` and ``eval report`` treat it as
one more model (the row that shows how far each stage is from perfect).

The world's writer records each image's scene in a scene file (jsonl: ``sha256``, ``path``,
``dataset``, ``label`` and the scene); images are matched to manifest rows by the SHA-256 of their
bytes, which VECBench manifests carry and which survives copying.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from emocaliber_rl.world.scenes import Scene, bayes_answer, posterior_for_subtask
from reward_fns.emocaliber import format_block, format_confidence


def sha256_of(path: str | os.PathLike[str]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_scene_file(path: str | os.PathLike[str]) -> dict[str, Scene]:
    """sha256 -> scene of every image the world wrote."""
    from emocaliber_rl.jsonl import input_error, read_jsonl

    out: dict[str, Scene] = {}
    for n, row in read_jsonl(path):
        try:
            out[row["sha256"]] = Scene.from_json(row["scene"])
        except (ValueError, KeyError, TypeError) as e:
            raise input_error(path, n, None, f"not a scene row ({e})") from None
    return out


class NoSceneError(ValueError):
    """A manifest row whose image the world did not draw (or that cannot be read)."""

    def __init__(self, row_id: str, message: str) -> None:
        super().__init__(message)
        self.row_id = row_id


def oracle_rows(manifest_rows: Iterable[Mapping[str, Any]], scenes: Mapping[str, Scene]) -> list[dict[str, Any]]:
    """One prediction row per manifest row (eval run's fields), from the row image's scene.

    Raises :class:`NoSceneError` naming the row when its image is not one the world drew."""
    out = []
    for row in manifest_rows:
        try:
            sha = row.get("sha256") or sha256_of(row["image"])
        except OSError as e:
            raise NoSceneError(str(row["id"]), f"image {row['image']}: cannot be read ({e.strerror or e})") from None
        if sha not in scenes:
            raise NoSceneError(str(row["id"]), f"image {row.get('image')} (sha256 {sha[:12]}) is not in the "
                               "world's scene file: the world did not draw it")
        posterior = posterior_for_subtask(scenes[sha], row["subtask"])
        answer, conf = bayes_answer(posterior)
        out.append({"id": str(row["id"]), "subtask": row["subtask"], "group": row.get("group"), "label": row["label"],
                    "candidates": list(row.get("candidates") or posterior), "response": format_block("answer", answer) + format_confidence(conf),
                    "pred": answer, "conf_verb": conf, "conf_ans": conf, "conf_avg": conf,
                    "posterior": posterior, "num_tokens": 0, "finish_reason": "oracle"})
    return out
