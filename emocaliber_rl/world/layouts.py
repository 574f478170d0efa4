"""The known-answer world written in the six raw datasets' published layouts.

``emocaliber bench build`` reads these folders as it reads the real releases; the scene file
written beside them (not inside: the builder reports files it does not expect) keeps each image's
scene for the oracle.
"""

from __future__ import annotations

import random
from pathlib import Path

from emocaliber_rl.jsonl import append_rows
from emocaliber_rl.world.oracle import sha256_of
from emocaliber_rl.world.render import draw_scene
from emocaliber_rl.world.scenes import fine_loop_of_dataset, scene_given_label

JPEG_QUALITY = 95


def write_layout(dataset: str, root: str | Path, per_label: int, scene_file: str | Path, seed: int = 0) -> list[Path]:
    """``per_label`` world images per fine label of ``dataset`` under ``root`` in its published
    layout (:func:`emocaliber_rl.data.synthetic.make_layout`); appends one row per image to
    ``scene_file``: ``sha256``, ``path``, ``dataset``, ``label`` (the label the layout files it
    under, drawn from the scene's posterior) and ``scene``."""
    from emocaliber_rl.data.synthetic import make_layout

    loop = fine_loop_of_dataset(dataset)
    rng = random.Random(f"world/{dataset}/{seed}")
    rows: list[dict] = []

    def image_fn(label: str, path: Path) -> None:
        scene = scene_given_label(loop, label, rng)
        draw_scene(scene, rng).save(path, format="JPEG", quality=JPEG_QUALITY)
        rows.append({"sha256": sha256_of(path), "path": str(path), "dataset": dataset, "label": label,
                     "scene": scene.to_json()})

    paths = make_layout(dataset, root, per_label, seed=seed, image_fn=image_fn)
    append_rows(scene_file, rows)  # one file for every dataset of the world, appended in turn
    return paths
