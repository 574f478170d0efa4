"""How far re-encoding moves a perceptual hash, and how close distinct pictures come: the evidence
behind ``splits.PHASH_THRESHOLD``.

    .venv/bin/python benchmarks/bench_phash_threshold.py [--crops 100]

Real photographs shipped with installed packages (matplotlib's grace_hopper.jpg, scikit-learn's
china.jpg and flower.jpg) are re-encoded the ways a copy drifts from its original (JPEG quality
95/75/50, PNG, half size, quarter size as PNG, 220 px wide like WebEmo's thumbnails) and hashed
exactly as `bench build` hashes them (:func:`emocaliber_rl.data.images.check_image`). Distinct
pictures: random crops (a quarter to a half of each side) of the same three photos, a harder case
than unrelated photos because crops share colours and texture.
"""

from __future__ import annotations

import argparse
import io
import itertools
import random
import tempfile
from collections import Counter
from pathlib import Path

from emocaliber_rl.data.images import check_image


def _photos() -> list[Path]:
    import matplotlib
    import sklearn

    return [Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
            Path(sklearn.__file__).parent / "datasets" / "images" / "china.jpg",
            Path(sklearn.__file__).parent / "datasets" / "images" / "flower.jpg"]


def main() -> None:
    from PIL import Image

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--crops", type=int, default=100, help="random crops per photo")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        def phash(img: Image.Image, fmt: str, **kw) -> int:
            buf = io.BytesIO()
            img.save(buf, format=fmt, **kw)
            path = Path(tmp) / f"x.{fmt.lower()}"
            path.write_bytes(buf.getvalue())
            return check_image(path, perceptual=True).phash

        print("re-encoded copies: Hamming distance to the original's phash")
        for src in _photos():
            orig = check_image(src, perceptual=True).phash
            im = Image.open(src).convert("RGB")
            w, h = im.size
            copies = {"jpeg q95": phash(im, "JPEG", quality=95), "jpeg q75": phash(im, "JPEG", quality=75),
                      "jpeg q50": phash(im, "JPEG", quality=50), "png": phash(im, "PNG"),
                      "half size": phash(im.resize((w // 2, h // 2)), "JPEG", quality=90),
                      "quarter png": phash(im.resize((w // 4, h // 4)), "PNG"),
                      "220 px wide": phash(im.resize((220, round(220 * h / w))), "JPEG", quality=85)}
            print(f"  {src.name} {w}x{h}: " + ", ".join(f"{k} {(orig ^ v).bit_count()}" for k, v in copies.items()))
        rng = random.Random(0)
        hashes = []
        for src in _photos():
            im = Image.open(src).convert("RGB")
            for _ in range(args.crops):
                cw, ch = rng.randint(im.width // 4, im.width // 2), rng.randint(im.height // 4, im.height // 2)
                x, y = rng.randint(0, im.width - cw), rng.randint(0, im.height - ch)
                hashes.append(phash(im.crop((x, y, x + cw, y + ch)), "JPEG", quality=90))
        dist = Counter((a ^ b).bit_count() for a, b in itertools.combinations(hashes, 2))
        total = sum(dist.values())
        print(f"distinct crops: {total} pairs; pairs within t bits: "
              + ", ".join(f"t={t}: {sum(v for d, v in dist.items() if d <= t)}" for t in (2, 4, 6, 8, 10)))


if __name__ == "__main__":
    main()
