"""Generate small image folders in each raw dataset's published layout.

Used by the tests and benchmarks (and handy for trying `emocaliber bench build` without the real
datasets). Images are random noise, so every one has distinct bytes unless copied on purpose.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable
from pathlib import Path

from emocaliber_rl.taxonomy import MIKELS_8, UNBIASED_6, WEBEMO_25, WEBEMO_25_HIERARCHY

# Dataset file-name spellings (not the canonical words) where the datasets use them (docs/data.md).
ARTPHOTO_SPELLING = {"sadness": "sad"}
ABSTRACT_COLUMNS = ("Amusement", "Anger", "Awe", "Content", "Disgust", "Excitement", "Fear", "Sad")
WEBEMO_SPELLING = {"cheerfulness": "cheerfullness", "irritability": "irritabilty"}
EMOSET_LABEL2IDX = ("amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness")


def webemo_category_txt() -> str:
    """``category.txt`` as ccivit/download_webEmo publishes it: a comment line, then a Python list
    of (name, parent, polarity) tuples, tab-indented, CRLF line ends, no final newline, with the
    release's spellings ``cheerfullness`` and ``irritabilty``."""
    out = "# Three level emotion hierarchy.\r\nlabels=["
    for k, (leaf, parent, pol) in enumerate(WEBEMO_25_HIERARCHY):
        out += f"('{WEBEMO_SPELLING.get(leaf, leaf)}', '{parent}', '{'+' if pol == 'positive' else '-'}')"
        if k < len(WEBEMO_25_HIERARCHY) - 1:
            # The published file has no space after the comma on these three lines.
            out += (",\r\n\t" if leaf in ("envy", "pride", "sympathy") else ", \r\n\t")
    return out + "]"


def emoset_info_json() -> dict:
    """The emotion part of EmoSet's ``info.json`` (JingyuanYY/EmoSet), nested as published."""
    return {"emotion": {"label2idx": {e: i for i, e in enumerate(EMOSET_LABEL2IDX)},
                        "idx2label": {str(i): e for i, e in enumerate(EMOSET_LABEL2IDX)}}}


def draw_image(path: str | Path, seed: int, size: tuple[int, int] = (48, 40), fmt: str = "JPEG") -> Path:
    """Write a random-noise image; the same seed gives the same bytes."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3)).save(path, format=fmt)
    return path


def make_layout(dataset: str, root: str | Path, per_label: int, seed: int = 0,
                size: tuple[int, int] = (48, 40),
                image_fn: Callable[[str, Path], None] | None = None) -> list[Path]:
    """Write ``per_label`` images per label of ``dataset`` under ``root`` in its published layout.

    Images are random noise unless ``image_fn(label, path)`` writes each one: ``label`` is the
    canonical fine label the layout files the image under (Mikels-8, WebEmo-25, UnbiasedEmo-6),
    e.g. the known-answer world's images (``emocaliber_rl.world.layouts``)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    base = random.Random(f"{dataset}/{seed}").randrange(1 << 30)
    paths: list[Path] = []

    def draw(rel: str, label: str) -> Path:
        if image_fn is None:
            p = draw_image(root / rel, base + len(paths), size)
        else:
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            image_fn(label, p)
        paths.append(p)
        return p

    if dataset == "FI":
        for emo in MIKELS_8:
            for i in range(per_label):
                draw(f"{emo}/{emo}_{i:04d}.jpg", emo)
    elif dataset == "EmoSet":
        lists: dict[str, list] = {"train": [], "val": [], "test": []}
        for emo in MIKELS_8:
            for i in range(per_label):
                rel = f"image/{emo}/{emo}_{i:05d}.jpg"
                draw(rel, emo)
                split = ("train", "train", "val", "test")[i % 4]
                # The README's entry: [emotion, id, image path, annotation path].
                lists[split].append([emo, f"{emo}_{i:05d}", rel, f"annotation/{emo}/{emo}_{i:05d}.json"])
        for split, entries in lists.items():
            (root / f"{split}.json").write_text(json.dumps(entries, indent=4))
        (root / "info.json").write_text(json.dumps(emoset_info_json(), indent=2))
    elif dataset == "WebEmo":
        (root / "category.txt").write_bytes(webemo_category_txt().encode())
        lines = {"train": [], "test": []}
        for idx in range(len(WEBEMO_25)):
            for i in range(per_label):
                split = "test" if i % 5 == 4 else "train"
                name = f"220_F_{idx:02d}{i:06d}_x.jpg"
                draw(f"{split}/{idx}/{name}", WEBEMO_25[idx])
                lines[split].append(f"https://as2.ftcdn.net/jpg/{name} {idx}\n")
        for split, ls in lines.items():
            (root / f"{split}25.txt").write_text("".join(ls))
    elif dataset == "Abstract":
        rows = []
        for k, col in enumerate(ABSTRACT_COLUMNS):
            for i in range(per_label):
                name = f"abstract_{k * per_label + i:04d}.jpg"
                draw(name, MIKELS_8[k])
                votes = [0] * len(ABSTRACT_COLUMNS)
                votes[k] = 5
                votes[(k + 1) % len(votes)] = 2
                rows.append([f"'{name}'", *votes])
        # Single-quoted header and names, an empty name-column header (docs/data.md).
        with open(root / "ABSTRACT_groundTruth.csv", "w", newline="") as f:
            f.write(",".join(f"'{c}'" for c in ("", *ABSTRACT_COLUMNS)) + "\r\n")
            csv.writer(f, quoting=csv.QUOTE_NONE, quotechar=None).writerows(rows)
    elif dataset == "ArtPhoto":
        for emo in MIKELS_8:
            for i in range(per_label):
                draw(f"{ARTPHOTO_SPELLING.get(emo, emo)}_{i + 1}.jpg", emo)
    elif dataset == "UnbiasedEmo":
        objects = ("dog", "child", "crowd")
        for emo in UNBIASED_6:
            for i in range(per_label):
                draw(f"{emo}/{objects[i % 3]}/{i:04d}.jpg", emo)
    else:
        raise ValueError(f"unknown dataset {dataset!r}")
    return paths


def corrupt(path: str | Path, how: str = "truncate") -> Path:
    """Damage an image in place: ``truncate`` (first half kept) or ``garbage`` (not an image)."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncate" else b"\x00garbage" * 8)
    return path
