"""Generate small image folders in each raw dataset's published layout.

Used by the tests and benchmarks (and handy for trying `emocaliber bench build` without the real
datasets). Images are random noise, so every one has distinct bytes unless copied on purpose.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from emocaliber_rl.taxonomy import MIKELS_8, UNBIASED_6, WEBEMO_25

# Dataset file-name spellings (not the canonical words) where the datasets use them.
ARTPHOTO_SPELLING = {"sadness": "sad", "contentment": "content"}
ABSTRACT_COLUMNS = ("Amusement", "Anger", "Awe", "Content", "Disgust", "Excitement", "Fear", "Sad")


def draw_image(path: str | Path, seed: int, size: tuple[int, int] = (48, 40), fmt: str = "JPEG") -> Path:
    """Write a random-noise image; the same seed gives the same bytes."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3)).save(path, format=fmt)
    return path


def make_layout(dataset: str, root: str | Path, per_label: int, seed: int = 0,
                size: tuple[int, int] = (48, 40)) -> list[Path]:
    """Write ``per_label`` images per label of ``dataset`` under ``root`` in its published layout."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    base = random.Random(f"{dataset}/{seed}").randrange(1 << 30)
    paths: list[Path] = []

    def draw(rel: str) -> Path:
        p = draw_image(root / rel, base + len(paths), size)
        paths.append(p)
        return p

    if dataset == "FI":
        for emo in MIKELS_8:
            for i in range(per_label):
                draw(f"{emo}/{emo}_{i:04d}.jpg")
    elif dataset == "EmoSet":
        lists: dict[str, list] = {"train": [], "val": [], "test": []}
        for emo in MIKELS_8:
            for i in range(per_label):
                rel = f"image/{emo}/{emo}_{i:05d}.jpg"
                draw(rel)
                split = ("train", "train", "val", "test")[i % 4]
                lists[split].append([emo, rel, f"annotation/{emo}/{emo}_{i:05d}.json"])
        for split, entries in lists.items():
            (root / f"{split}.json").write_text(json.dumps(entries))
        order = ("amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness")
        (root / "info.json").write_text(json.dumps({"label2idx": {e: i for i, e in enumerate(order)}}))
    elif dataset == "WebEmo":
        # WebEmo's own misspellings in category.txt, as the release has them.
        spelled = [{"cheerfulness": "cheerfullness", "irritability": "irritabilty"}.get(w, w)
                   for w in WEBEMO_25]
        (root / "category.txt").write_text("".join(f"('{w}', 'x', '+')\n" for w in spelled))
        lines = {"train": [], "test": []}
        for idx in range(len(WEBEMO_25)):
            for i in range(per_label):
                split = "test" if i % 5 == 4 else "train"
                name = f"220_F_{idx:02d}{i:06d}_x.jpg"
                draw(f"{split}/{idx}/{name}")
                lines[split].append(f"https://as2.ftcdn.net/jpg/{name} {idx}\n")
        for split, ls in lines.items():
            (root / f"{split}25.txt").write_text("".join(ls))
    elif dataset == "Abstract":
        rows = []
        for k, col in enumerate(ABSTRACT_COLUMNS):
            for i in range(per_label):
                name = f"abstract_{k * per_label + i:04d}.jpg"
                draw(name)
                votes = [0] * len(ABSTRACT_COLUMNS)
                votes[k] = 5
                votes[(k + 1) % len(votes)] = 2
                rows.append([f"'{name}'", *votes])
        with open(root / "ABSTRACT_groundTruth.csv", "w", newline="") as f:
            f.write(",".join(f"'{c}'" for c in ("Filename", *ABSTRACT_COLUMNS)) + "\n")
            csv.writer(f).writerows(rows)
    elif dataset == "ArtPhoto":
        for emo in MIKELS_8:
            for i in range(per_label):
                draw(f"{ARTPHOTO_SPELLING.get(emo, emo)}_{i + 1}.jpg")
    elif dataset == "UnbiasedEmo":
        objects = ("dog", "child", "crowd")
        for emo in UNBIASED_6:
            for i in range(per_label):
                draw(f"{emo}/{objects[i % 3]}/{i:04d}.jpg")
    else:
        raise ValueError(f"unknown dataset {dataset!r}")
    return paths


def corrupt(path: str | Path, how: str = "truncate") -> Path:
    """Damage an image in place: ``truncate`` (first half kept) or ``garbage`` (not an image)."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncate" else b"\x00garbage" * 8)
    return path
