"""Drawing a scene as an image, and reading it back.

Label ``i`` of a loop of ``K`` labels (in loop order) gets hue ``i / K`` at saturation 0.8 and value
0.85, so loop neighbours get neighbouring hues. A cell is ``CELL_PX`` pixels square: with the tiny
model's processor (28x28 pixels per image token after merging) every cell is one image token.
Each cell's hue is jittered by at most a quarter of the hue step, brightness varies in random
blocks and every pixel gets Gaussian noise, so no two images look alike to a perceptual hash and a
model must read the hue, not memorise bytes.
"""

from __future__ import annotations

import colorsys
import random

from emocaliber_rl.world.scenes import CELLS, GRID, Scene, loop_order

CELL_PX = 28
SIZE = GRID * CELL_PX  # 112 x 112 pixels
SATURATION, VALUE = 0.8, 0.85
NOISE_SIGMA = 6.0
SHADE_MIN = 0.6


def hue_of(loop: str, label: str) -> float:
    order = loop_order(loop)
    return order.index(label) / len(order)


def _rgb(hue: float) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, SATURATION, VALUE)
    return r * 255, g * 255, b * 255


def draw_scene(scene: Scene, rng: random.Random):
    """The scene as a ``SIZE`` x ``SIZE`` RGB image; which cells carry the primary is random."""
    import numpy as np
    from PIL import Image

    order = loop_order(scene.loop)
    jitter = 0.25 / len(order)
    cells = [scene.primary] * scene.k + [scene.neighbour] * (CELLS - scene.k)
    rng.shuffle(cells)
    gen = np.random.default_rng(rng.randrange(2**32))
    img = np.empty((SIZE, SIZE, 3), dtype=np.float64)
    for idx, label in enumerate(cells):
        r, c = divmod(idx, GRID)
        hue = hue_of(scene.loop, label) + gen.uniform(-jitter, jitter)
        img[r * CELL_PX:(r + 1) * CELL_PX, c * CELL_PX:(c + 1) * CELL_PX] = _rgb(hue)
    # A random brightness pattern of 8x8 blocks, the same factor on all three channels (so every
    # cell keeps its hue): perceptual hashes see grey levels, and without it two images of one
    # label and k = 16 would be near-duplicates that VECBench's builder rightly drops.
    shade = np.kron(gen.uniform(SHADE_MIN, 1.0, size=(8, 8)), np.ones((SIZE // 8, SIZE // 8)))
    img *= shade[:, :, None]
    img += gen.normal(0.0, NOISE_SIGMA, size=img.shape)
    return Image.fromarray(np.clip(np.rint(img), 0, 255).astype("uint8"), "RGB")


def read_grid(image, loop: str) -> list[str]:
    """The label whose hue each cell shows (nearest hue to the cell's mean colour), row by row:
    the inverse of :func:`draw_scene`'s cell layout. The shading multiplies all three channels
    alike and the noise averages out over a cell's 784 pixels, so the hue survives both."""
    import numpy as np

    order = loop_order(loop)
    arr = np.asarray(image.convert("RGB"), dtype=np.float64)
    cells: list[str] = []
    for r in range(GRID):
        for c in range(GRID):
            mean = arr[r * CELL_PX:(r + 1) * CELL_PX, c * CELL_PX:(c + 1) * CELL_PX].reshape(-1, 3).mean(axis=0) / 255
            hue = colorsys.rgb_to_hsv(*mean)[0]
            cells.append(min(order, key=lambda lab: min(abs(hue - hue_of(loop, lab)) % 1.0,
                                                        1 - abs(hue - hue_of(loop, lab)) % 1.0)))
    return cells


def read_cells(image, loop: str) -> dict[str, int]:
    """How many cells of ``image`` show each label's hue (:func:`read_grid`, counted): used to
    check that an image carries its recorded scene."""
    counts: dict[str, int] = {}
    for label in read_grid(image, loop):
        counts[label] = counts.get(label, 0) + 1
    return counts
