"""The world's generative model: scenes, their prior, and the label posterior of each scene.

A scene is (fine loop, primary label, neighbour label, k): ``k`` of the ``CELLS`` cells carry the
primary's hue, the rest the neighbour's. Prior: primary uniform over the loop's labels, ``k``
uniform over ``LEVELS``, neighbour uniform over the primary's two loop neighbours (for
``k == CELLS`` the neighbour is invisible and the two scenes are one image: they are merged).
Posterior of the label given the scene: ``k/CELLS`` for the primary, the rest for the neighbour.
Because the prior is symmetric, every label is equally likely a priori, so a dataset with the
same number of images per label (the raw layouts') can be drawn label first
(:func:`scene_given_label`) and its images still have exactly the posterior above.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

GRID = 4
CELLS = GRID * GRID
LEVELS: tuple[int, ...] = (8, 10, 12, 14, 16)  # primary cells out of 16: w = .5 .625 .75 .875 1

# The fine taxonomy (emotion loop) each raw dataset's images are drawn in.
_FINE_LOOP = {"FI": "mikels8", "EmoSet": "mikels8", "Abstract": "mikels8", "ArtPhoto": "mikels8",
              "WebEmo": "webemo25", "UnbiasedEmo": "unbiased6"}


def fine_loop_of_dataset(dataset: str) -> str:
    """The emotion loop whose labels a raw dataset's images are drawn with (``FI`` -> mikels8)."""
    try:
        return _FINE_LOOP[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(_FINE_LOOP)}") from None


def fine_loop_of_subtask(subtask: str) -> str:
    """The emotion loop a subtask's images are drawn in: its source dataset's (``FI-2`` -> mikels8)."""
    from emocaliber_rl.taxonomy import get_subtask

    return fine_loop_of_dataset(get_subtask(subtask).source)


@cache
def loop_order(loop: str) -> tuple[str, ...]:
    """Labels of ``loop`` in loop order (the shipped loop files)."""
    from emocaliber_rl.loops import load_loop

    return load_loop(loop).order


@dataclass(frozen=True)
class Scene:
    """One image's content: ``k`` cells of ``primary``'s hue, ``CELLS - k`` of ``neighbour``'s."""

    loop: str
    primary: str
    neighbour: str
    k: int

    @property
    def posterior(self) -> dict[str, float]:
        """P(label | image) over the fine loop's labels that have mass."""
        w = self.k / CELLS
        out = {self.primary: w}
        if self.k < CELLS:
            out[self.neighbour] = 1.0 - w
        return out

    def to_json(self) -> dict:
        return {"loop": self.loop, "primary": self.primary, "neighbour": self.neighbour, "k": self.k}

    @classmethod
    def from_json(cls, data: Mapping) -> Scene:
        return cls(str(data["loop"]), str(data["primary"]), str(data["neighbour"]), int(data["k"]))


def neighbours(loop: str, label: str) -> tuple[str, str]:
    """The two loop neighbours of ``label`` (previous, next)."""
    order = loop_order(loop)
    i = order.index(label)
    return order[i - 1], order[(i + 1) % len(order)]


@cache
def scene_prior(loop: str) -> tuple[tuple[Scene, float], ...]:
    """Every distinct scene of ``loop`` with its prior probability (module docstring)."""
    order = loop_order(loop)
    out: list[tuple[Scene, float]] = []
    for primary in order:
        for k in LEVELS:
            p = 1.0 / (len(order) * len(LEVELS))
            if k == CELLS:  # the neighbour does not show: one image
                out.append((Scene(loop, primary, neighbours(loop, primary)[1], k), p))
                continue
            for nb in neighbours(loop, primary):
                out.append((Scene(loop, primary, nb, k), p / 2))
    return tuple(out)


def scene_given_label(loop: str, label: str, rng: random.Random) -> Scene:
    """A scene drawn from P(scene | label) ∝ P(scene) P(label | scene)."""
    scenes, weights = zip(*((s, p * s.posterior.get(label, 0.0)) for s, p in scene_prior(loop)))
    if not any(weights):
        raise ValueError(f"label {label!r} is not on loop {loop}")
    return rng.choices(scenes, weights=weights, k=1)[0]


def sample_label_and_scene(loop: str, rng: random.Random) -> tuple[str, Scene]:
    """(label, scene) from the joint: scene from the prior, then label from its posterior."""
    scenes, weights = zip(*scene_prior(loop))
    scene = rng.choices(scenes, weights=weights, k=1)[0]
    labels, probs = zip(*scene.posterior.items())
    return rng.choices(labels, weights=probs, k=1)[0], scene


def _coarse(subtask: str):
    from emocaliber_rl.taxonomy import get_subtask, polarity_of, webemo_parent

    name = get_subtask(subtask).name
    if name in ("FI-2", "WebEmo-2"):
        return polarity_of
    if name == "WebEmo-7":
        return webemo_parent
    return lambda label: label


def posterior_for_subtask(scene: Scene, subtask: str) -> dict[str, float]:
    """P(label | image) over ``subtask``'s candidates: the fine posterior, or its marginal for a
    coarse subtask (polarity for FI-2 / WebEmo-2, the parent for WebEmo-7). Candidates without
    mass are listed with 0 so every candidate has a probability."""
    from emocaliber_rl.taxonomy import get_subtask

    to_coarse = _coarse(subtask)
    out = dict.fromkeys(get_subtask(subtask).labels, 0.0)
    for label, p in scene.posterior.items():
        coarse = to_coarse(label)
        if coarse not in out:
            raise ValueError(f"scene of loop {scene.loop} cannot be read as {subtask}: {label!r} -> {coarse!r}")
        out[coarse] += p
    return out


def bayes_answer(posterior: Mapping[str, float]) -> tuple[str, float]:
    """The Bayes-optimal answer (argmax; ties to the first candidate) and its probability, which is
    both its expected accuracy and its perfectly calibrated confidence."""
    label = max(posterior, key=lambda k: (posterior[k], -list(posterior).index(k)))
    return label, posterior[label]
