"""A small visual emotion world whose answer is known (the demo's data; issue "the demo learns").

Every image shows a 4x4 grid of colour cells. Each label of a fine taxonomy (Mikels-8 for FI,
EmoSet, Abstract and ArtPhoto; WebEmo-25; UnbiasedEmo-6) has one hue, assigned in the order of
that taxonomy's emotion loop (``emocaliber_rl/data/loops``), so neighbours on the loop also look
alike. An image (a *scene*) mixes the hue of a primary label on ``k`` of its 16 cells with the hue
of one of its two loop neighbours on the rest; its label is drawn from the known posterior
``P(primary) = k/16, P(neighbour) = 1 - k/16``. With ``k`` in {8, 10, 12, 14, 16} some images are
certain and some a coin flip, wrong answers fall on loop neighbours (so Eq. 2's distance matters),
and for every image the Bayes-optimal answer (the posterior's argmax), its accuracy and the
perfectly calibrated confidence (the posterior's max) are known, per image, subtask and group.
Coarse subtasks (FI-2, WebEmo-7, WebEmo-2) take the marginal of the fine posterior.

``scenes`` holds the generative model, ``render`` draws and reads images, ``oracle`` writes the
oracle's predictions (posterior argmax and max) in ``emocaliber eval run``'s format, so the oracle
is a row of every report table.
"""

from emocaliber_rl.world.scenes import (
    CELLS,
    GRID,
    LEVELS,
    Scene,
    fine_loop_of_dataset,
    posterior_for_subtask,
    sample_label_and_scene,
    scene_given_label,
    scene_prior,
)

__all__ = [
    "CELLS",
    "GRID",
    "LEVELS",
    "Scene",
    "fine_loop_of_dataset",
    "posterior_for_subtask",
    "sample_label_and_scene",
    "scene_given_label",
    "scene_prior",
]
