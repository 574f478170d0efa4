"""Emotion loops (EmoCaliber section 3.2, Figure 5): VAD-based circular distance d in [0, 0.5].

Each flat label set is placed on a loop: the Hamiltonian cycle through the labels' NRC VAD
points of least total Euclidean length. The distance between two labels is their separation
along the loop's perimeter, normalised by its length, so that d(a, b) is in [0, 0.5] and is
used by the Stage-2 confidence target (paper Eq. 2).

How loops are built (``emocaliber loops build``):

* Flat loops (``mikels8``, ``webemo7``, ``unbiased6``, ``polarity2``): exact Held-Karp dynamic
  programming over subsets (n <= 8 here, so at most 2^7 * 8 states).
* ``webemo25`` is hierarchical (Parrott's model): the paper constrains the loop so that leaves
  sharing a WebEmo-7 parent are adjacent. The constrained optimum is solved exactly in two
  levels: for every parent group, Held-Karp gives the shortest Hamiltonian path through the group
  between every ordered (entry, exit) pair; a second subset DP over the order of the groups, whose
  state is (groups visited, exit node of the last group), joins those paths. Every cycle with
  contiguous groups is a sequence of such within-group paths joined by one edge between groups,
  so the DP searches all of them.
* WebEmo-7 and UnbiasedEmo-6 parents are placed by their own words' VAD (``joy``, ``love``, ...),
  not by the centroid of their leaves.

Which perimeter: **arc length**. A label's position is the cumulative VAD length of the loop
edges from the first label, divided by the total length; so neighbours that are close in VAD
space are close on the loop. The paper maps VAD "onto a 2D circle while preserving their relative
spatial relationships"; equal spacing would throw those relationships away (every neighbour at
1/n, e.g. contentment-amusement as far apart as awe-fear) and keep only the order. Then
``d(a, b) = min(|pa - pb|, 1 - |pa - pb|)``. With two labels (``polarity2``) both choices give
positions 0 and 0.5, so d(positive, negative) = 0.5.

The derived loops (orders, positions, total length, provenance) ship as JSON under
``emocaliber_rl/data/loops/``; the lexicon itself is never shipped (see ``vad_lexicon``).
"""

from emocaliber_rl.loops.build import build_all, build_loop
from emocaliber_rl.loops.model import (
    FORMAT_VERSION,
    LOOP_GROUPS,
    LOOP_LABELS,
    LOOP_NAMES,
    EmotionLoop,
    UnknownLoopError,
    default_loops_dir,
    distance,
    load_loop,
    loop_for_subtask,
    resolve_loop,
)
from emocaliber_rl.loops.plot import plot_loops
from emocaliber_rl.loops.solver import (
    arc_positions,
    cycle_length,
    euclidean_matrix,
    groups_contiguous,
    hamiltonian_paths,
    optimal_cycle,
    optimal_grouped_cycle,
)

__all__ = [
    "FORMAT_VERSION",
    "LOOP_GROUPS",
    "LOOP_LABELS",
    "LOOP_NAMES",
    "EmotionLoop",
    "UnknownLoopError",
    "arc_positions",
    "build_all",
    "build_loop",
    "cycle_length",
    "default_loops_dir",
    "distance",
    "euclidean_matrix",
    "groups_contiguous",
    "hamiltonian_paths",
    "load_loop",
    "loop_for_subtask",
    "optimal_cycle",
    "optimal_grouped_cycle",
    "plot_loops",
    "resolve_loop",
]
