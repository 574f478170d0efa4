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

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from emocaliber_rl.taxonomy import (
    LOOP_OF_SUBTASK,
    MIKELS_8,
    POLARITY_2,
    UNBIASED_6,
    WEBEMO_7,
    WEBEMO_25,
    WEBEMO_PARENT,
    UnknownLabelError,
    get_subtask,
    normalize_label,
)

# Loop name -> labels in taxonomy order. The order fixes the loop's printed orientation only.
LOOP_LABELS: dict[str, tuple[str, ...]] = {
    "mikels8": MIKELS_8,
    "polarity2": POLARITY_2,
    "webemo7": WEBEMO_7,
    "webemo25": WEBEMO_25,
    "unbiased6": UNBIASED_6,
}
# Loops whose labels must stay contiguous by group on the cycle: label -> group.
LOOP_GROUPS: dict[str, dict[str, str]] = {"webemo25": dict(WEBEMO_PARENT)}
LOOP_NAMES: tuple[str, ...] = tuple(LOOP_LABELS)
FORMAT_VERSION = 1

# Beyond this Held-Karp's 2^n * n^2 work stops being instant; the loops here have n <= 8 (flat)
# and groups of <= 7, so this only guards against misuse.
_MAX_EXACT = 16


class UnknownLoopError(ValueError):
    """A loop name (or subtask name) that has no emotion loop."""


# --------------------------------------------------------------------------------------------
# Exact solvers. Nodes are integer indices into a symmetric distance matrix.
# --------------------------------------------------------------------------------------------

Matrix = Sequence[Sequence[float]]


def euclidean_matrix(points: Sequence[Sequence[float]]) -> list[list[float]]:
    """Pairwise Euclidean distances of ``points``."""
    return [[math.dist(p, q) for q in points] for p in points]


def cycle_length(dist: Matrix, order: Sequence[int]) -> float:
    """Length of the closed cycle visiting ``order`` and returning to its first node."""
    n = len(order)
    if n < 2:
        return 0.0
    return sum(dist[order[i]][order[(i + 1) % n]] for i in range(n))


def hamiltonian_paths(
    dist: Matrix, nodes: Sequence[int], starts: Sequence[int] | None = None
) -> dict[tuple[int, int], tuple[float, tuple[int, ...]]]:
    """Shortest Hamiltonian path through ``nodes`` for every (start, end) pair (Held-Karp).

    Returns ``{(start, end): (length, path)}`` with ``start != end`` (or the single pair
    ``(v, v)`` of length 0 when ``nodes`` has one element). ``starts`` restricts the start nodes.
    """
    nodes = list(nodes)
    m = len(nodes)
    if m == 0:
        raise ValueError("no nodes")
    if m > _MAX_EXACT:
        raise ValueError(f"{m} nodes is too many for exact Held-Karp (limit {_MAX_EXACT})")
    if m == 1:
        return {(nodes[0], nodes[0]): (0.0, (nodes[0],))}
    full = (1 << m) - 1
    start_idx = range(m) if starts is None else [nodes.index(s) for s in starts]
    out: dict[tuple[int, int], tuple[float, tuple[int, ...]]] = {}
    for si in start_idx:
        cost = [[math.inf] * m for _ in range(1 << m)]
        parent = [[-1] * m for _ in range(1 << m)]
        cost[1 << si][si] = 0.0
        # Masks in increasing order: every subset of a mask is numerically smaller, so each
        # state is final before it is extended.
        for mask in range(1 << m):
            if not mask >> si & 1:
                continue
            row = cost[mask]
            for last in range(m):
                base = row[last]
                if base == math.inf:
                    continue
                d_last = dist[nodes[last]]
                for nxt in range(m):
                    if mask >> nxt & 1:
                        continue
                    new_mask = mask | 1 << nxt
                    value = base + d_last[nodes[nxt]]
                    if value < cost[new_mask][nxt]:
                        cost[new_mask][nxt] = value
                        parent[new_mask][nxt] = last
        for ei in range(m):
            if ei == si:
                continue
            path = [ei]
            mask, cur = full, ei
            while cur != si:
                prev = parent[mask][cur]
                mask &= ~(1 << cur)
                cur = prev
                path.append(cur)
            path.reverse()
            out[(nodes[si], nodes[ei])] = (cost[full][ei], tuple(nodes[i] for i in path))
    return out


def optimal_cycle(dist: Matrix) -> tuple[tuple[int, ...], float]:
    """The exact shortest Hamiltonian cycle over all nodes of ``dist`` (Held-Karp).

    Returns (order starting at node 0, total length). Two nodes give the cycle 0-1-0.
    """
    n = len(dist)
    if n == 0:
        raise ValueError("no nodes")
    if n == 1:
        return (0,), 0.0
    # A cycle is a Hamiltonian path from node 0 to some end, closed by the edge end -> 0.
    best_len, best_path = math.inf, ()
    for (_, end), (length, path) in hamiltonian_paths(dist, range(n), starts=[0]).items():
        total = length + dist[end][0]
        if total < best_len:
            best_len, best_path = total, path
    return best_path, best_len


def optimal_grouped_cycle(
    dist: Matrix, groups: Sequence[Sequence[int]]
) -> tuple[tuple[int, ...], float]:
    """The exact shortest Hamiltonian cycle in which each group's nodes are contiguous.

    ``groups`` partitions the nodes. Level 1: Held-Karp paths inside each group for every
    (entry, exit) pair. Level 2: a subset DP over groups; the state is (set of groups placed
    after the first, exit node of the last one). The first group is fixed (a cycle has no start)
    and its entry node is enumerated so the cycle can be closed back to it.

    Returns (order, total length).
    """
    groups = [list(g) for g in groups if len(g)]
    every = sorted(v for g in groups for v in g)
    if every != list(range(len(dist))):
        raise ValueError("groups must partition the nodes 0..n-1")
    if len(groups) == 1:
        return optimal_cycle(dist)
    # Fixing the smallest group first means enumerating the fewest entry nodes.
    groups.sort(key=len)
    paths = [hamiltonian_paths(dist, g) for g in groups]
    others = len(groups) - 1
    full = (1 << others) - 1
    best_len, best_order = math.inf, ()
    for entry0 in groups[0]:
        # layer[mask][exit] = (cost, back) where back = (prev_exit, group, entry) or None
        layer: list[dict[int, tuple[float, tuple[int, int, int] | None]]] = [
            {} for _ in range(1 << others)
        ]
        for (a, b), (length, _) in paths[0].items():
            if a == entry0:
                layer[0][b] = (length, None)
        for mask in range(1 << others):
            for exit_node, (base, _) in list(layer[mask].items()):
                d_exit = dist[exit_node]
                for h in range(others):
                    if mask >> h & 1:
                        continue
                    target = layer[mask | 1 << h]
                    for (a, b), (length, _) in paths[h + 1].items():
                        value = base + d_exit[a] + length
                        if b not in target or value < target[b][0]:
                            target[b] = (value, (exit_node, h, a))
        for exit_node, (base, _) in layer[full].items():
            total = base + dist[exit_node][entry0]
            if total < best_len:
                best_len = total
                best_order = _unwind(layer, paths, full, exit_node, entry0)
    return best_order, best_len


def _unwind(
    layer: list[dict[int, tuple[float, tuple[int, int, int] | None]]],
    paths: list[dict[tuple[int, int], tuple[float, tuple[int, ...]]]],
    mask: int,
    exit_node: int,
    entry0: int,
) -> tuple[int, ...]:
    """Rebuild the cycle from the group DP's back pointers."""
    pieces: list[tuple[int, ...]] = []
    while True:
        back = layer[mask][exit_node][1]
        if back is None:
            pieces.append(paths[0][(entry0, exit_node)][1])
            break
        prev_exit, h, entry = back
        pieces.append(paths[h + 1][(entry, exit_node)][1])
        mask &= ~(1 << h)
        exit_node = prev_exit
    return tuple(v for piece in reversed(pieces) for v in piece)


def groups_contiguous(order: Sequence[str], group_of: Mapping[str, str]) -> bool:
    """Whether every group occupies one contiguous arc of the cyclic ``order``.

    On a cycle, k groups are each contiguous exactly when the group changes k times going
    around (once per group boundary); a single group never changes.
    """
    n = len(order)
    k = len({group_of[x] for x in order})
    changes = sum(group_of[order[i]] != group_of[order[(i + 1) % n]] for i in range(n))
    return changes == (0 if k == 1 else k)


def arc_positions(dist: Matrix, order: Sequence[int]) -> list[float]:
    """Position in [0, 1) of each node of ``order`` along the loop, by arc length."""
    total = cycle_length(dist, order)
    if len(order) == 1:
        return [0.0]
    if total <= 0.0:
        raise ValueError("all points coincide: the loop has zero length")
    out, run = [], 0.0
    for i, node in enumerate(order):
        out.append(run / total)
        run += dist[node][order[(i + 1) % len(order)]]
    return out


def _orient(order: Sequence[int]) -> tuple[int, ...]:
    """Canonical rotation/direction of a cycle (distances do not depend on it).

    Start at node 0 (the taxonomy's first label) and go towards the neighbour with the smaller
    index, so that rebuilding gives the same JSON byte for byte.
    """
    i = list(order).index(0)
    rotated = list(order[i:]) + list(order[:i])
    if len(rotated) > 2 and rotated[-1] < rotated[1]:
        rotated = [rotated[0], *reversed(rotated[1:])]
    return tuple(rotated)


# --------------------------------------------------------------------------------------------
# Loops as shipped data and the public API.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmotionLoop:
    """One emotion loop: labels in loop order, their positions in [0, 1) and provenance."""

    name: str
    order: tuple[str, ...]
    positions: Mapping[str, float]
    total_length: float
    groups: Mapping[str, str] | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.order

    def canonical(self, label: str) -> str:
        """The loop's spelling of ``label`` (case, punctuation and taxonomy aliases tolerated).

        Raises:
            UnknownLabelError: naming the loop and its valid labels.
        """
        key = normalize_label(label)
        if key not in self.positions:
            raise UnknownLabelError(
                f"label {label!r} is not on emotion loop {self.name}; "
                f"valid labels: {', '.join(self.order)}"
            )
        return key

    def distance(self, a: str, b: str) -> float:
        """Normalised perimeter distance d(a, b) in [0, 0.5]; 0 when a and b are the same."""
        gap = abs(self.positions[self.canonical(a)] - self.positions[self.canonical(b)])
        return min(gap, 1.0 - gap)

    def distance_table(self) -> dict[str, dict[str, float]]:
        """d for every ordered pair of labels, in loop order."""
        return {a: {b: self.distance(a, b) for b in self.order} for a in self.order}

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "order": list(self.order),
            "positions": {k: self.positions[k] for k in self.order},
            "total_length": self.total_length,
            "groups": dict(self.groups) if self.groups else None,
            **dict(self.provenance),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EmotionLoop:
        known = {"format_version", "name", "order", "positions", "total_length", "groups"}
        order = tuple(data["order"])
        positions = {k: float(v) for k, v in data["positions"].items()}
        if set(order) != set(positions) or len(order) != len(set(order)):
            raise ValueError(f"loop {data.get('name')!r}: order and positions disagree")
        groups = data.get("groups")
        # Read-only views: load_loop caches one instance that every caller shares.
        return cls(
            name=data["name"],
            order=order,
            positions=MappingProxyType(positions),
            total_length=float(data["total_length"]),
            groups=MappingProxyType(dict(groups)) if groups else None,
            provenance=MappingProxyType({k: v for k, v in data.items() if k not in known}),
        )


def default_loops_dir() -> Path:
    """Where the shipped loops live (``emocaliber_rl/data/loops``)."""
    return Path(str(resources.files("emocaliber_rl"))) / "data" / "loops"


@cache
def _load_cached(name: str, directory: str | None) -> EmotionLoop:
    if directory is None:
        # importlib.resources also works when the package is installed as a zip.
        text = resources.files("emocaliber_rl").joinpath("data", "loops", f"{name}.json").read_text(
            encoding="utf-8"
        )
    else:
        text = (Path(directory) / f"{name}.json").read_text(encoding="utf-8")
    return EmotionLoop.from_json(json.loads(text))


def load_loop(name: str, directory: str | Path | None = None) -> EmotionLoop:
    """The emotion loop ``name`` (one of ``LOOP_NAMES``), from the shipped JSON or ``directory``.

    Raises:
        UnknownLoopError: naming the valid loops.
    """
    key = name.strip().lower()
    if key not in LOOP_LABELS:
        raise UnknownLoopError(f"unknown emotion loop {name!r}; valid loops: {', '.join(LOOP_NAMES)}")
    return _load_cached(key, None if directory is None else str(directory))


def loop_for_subtask(subtask: str, directory: str | Path | None = None) -> EmotionLoop:
    """The emotion loop that measures distances for a VECBench subtask (e.g. ``FI-8``)."""
    return load_loop(LOOP_OF_SUBTASK[get_subtask(subtask).name], directory)


def resolve_loop(name: str, directory: str | Path | None = None) -> EmotionLoop:
    """A loop by loop name (``mikels8``) or by subtask name (``FI-8``)."""
    if name.strip().lower() in LOOP_LABELS:
        return load_loop(name, directory)
    try:
        return loop_for_subtask(name, directory)
    except ValueError:
        raise UnknownLoopError(
            f"{name!r} is neither an emotion loop ({', '.join(LOOP_NAMES)}) nor a subtask "
            f"({', '.join(LOOP_OF_SUBTASK)})"
        ) from None


def distance(subtask: str, a: str, b: str) -> float:
    """d(a, b) in [0, 0.5] on the loop of ``subtask`` (paper Eq. 2)."""
    return loop_for_subtask(subtask).distance(a, b)


# --------------------------------------------------------------------------------------------
# Building loops from a lexicon.
# --------------------------------------------------------------------------------------------


def build_loop(name: str, vectors: Mapping[str, Sequence[float]]) -> EmotionLoop:
    """Solve loop ``name`` exactly from ``vectors`` (label -> VAD point); no provenance."""
    labels = LOOP_LABELS[name]
    dist = euclidean_matrix([vectors[label] for label in labels])
    group_of = LOOP_GROUPS.get(name)
    if group_of is None:
        order, total = optimal_cycle(dist)
        method = "Held-Karp exact shortest Hamiltonian cycle, Euclidean VAD distance"
    else:
        by_group: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            by_group.setdefault(group_of[label], []).append(i)
        order, total = optimal_grouped_cycle(dist, list(by_group.values()))
        method = (
            "exact shortest Hamiltonian cycle with same-parent leaves contiguous: Held-Karp "
            "paths per parent group for every entry/exit pair + subset DP over group order, "
            "Euclidean VAD distance"
        )
    order = _orient(order)
    positions = arc_positions(dist, order)
    return EmotionLoop(
        name=name,
        order=tuple(labels[i] for i in order),
        # 6 decimals: d feeds a confidence rounded to 2 decimals (Eq. 2), and short numbers
        # keep the JSON diffable.
        positions={labels[i]: round(p, 6) for i, p in zip(order, positions, strict=True)},
        total_length=round(total, 6),
        groups={label: group_of[label] for label in labels} if group_of else None,
        provenance={"method": method, "perimeter": "arc-length"},
    )


def build_all(lexicon_path: str | Path | None, out_dir: str | Path | None = None) -> list[Path]:
    """Rebuild every loop from an NRC VAD lexicon and write ``<out_dir>/<loop>.json``.

    Raises:
        LexiconError / MissingWordsError: from the loader, naming file, line or missing words.
    """
    from emocaliber_rl.vad_lexicon import load_lexicon, resolve_lexicon_path

    lexicon = load_lexicon(resolve_lexicon_path(lexicon_path))
    # Look every loop's words up first so one error lists every missing word at once.
    all_labels = tuple(dict.fromkeys(label for labels in LOOP_LABELS.values() for label in labels))
    found = lexicon.vectors(all_labels)
    out = Path(out_dir) if out_dir is not None else default_loops_dir()
    out.mkdir(parents=True, exist_ok=True)
    built = datetime.now(UTC).date().isoformat()
    written = []
    for name, labels in LOOP_LABELS.items():
        loop = build_loop(name, {label: found[label][1] for label in labels})
        provenance = {
            **loop.provenance,
            "distance": "d(a, b) = min(|pa - pb|, 1 - |pa - pb|), in [0, 0.5]",
            "subtasks": [s for s, loop_name in LOOP_OF_SUBTASK.items() if loop_name == name],
            "lexicon": {
                "name": "NRC VAD lexicon",
                "version": lexicon.version,
                "file": lexicon.path.name,
                "scale": "0..1" if lexicon.version == "v1" else "-1..1 rescaled to 0..1 by (x+1)/2",
                # Only which spelling was looked up, never its values (no redistribution).
                "words": {label: found[label][0] for label in labels},
            },
            "built": built,
            "built_with": "emocaliber loops build",
        }
        path = out / f"{name}.json"
        payload = {**loop.to_json(), **provenance}
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    _load_cached.cache_clear()
    return written


# --------------------------------------------------------------------------------------------
# Plot (Figure 5 style).
# --------------------------------------------------------------------------------------------


def plot_loops(out_file: str | Path, directory: str | Path | None = None, dpi: int = 80) -> Path:
    """Draw every loop as labelled points on a circle at their positions; return the PNG path.

    Position 0 is at the top and positions grow clockwise; WebEmo-25 is coloured by parent.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(14, 7))
    grid = fig.add_gridspec(2, 4)
    axes = {
        "webemo25": fig.add_subplot(grid[:, :2]),
        "mikels8": fig.add_subplot(grid[0, 2]),
        "webemo7": fig.add_subplot(grid[0, 3]),
        "unbiased6": fig.add_subplot(grid[1, 2]),
        "polarity2": fig.add_subplot(grid[1, 3]),
    }
    cmap = plt.get_cmap("tab10")
    for name, ax in axes.items():
        loop = load_loop(name, directory)
        parents = sorted(set(loop.groups.values())) if loop.groups else []
        colour_of = {p: cmap(i) for i, p in enumerate(parents)}
        theta = [math.pi / 2 - 2 * math.pi * loop.positions[x] for x in loop.order]
        ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="0.75", lw=1.5))
        big = len(loop.order) > 10
        spread = _spread([loop.positions[x] for x in loop.order], 0.032 if big else 0.075)
        for label, t, q in zip(loop.order, theta, spread, strict=True):
            x, y = math.cos(t), math.sin(t)
            colour = colour_of[loop.groups[label]] if loop.groups else "tab:blue"
            ax.plot(x, y, "o", color=colour, ms=7 if big else 8)
            # Labels sit at spread-out angles so that close neighbours stay readable; a thin
            # leader line joins a moved label to its point.
            u = math.pi / 2 - 2 * math.pi * q
            lx, ly = 1.16 * math.cos(u), 1.16 * math.sin(u)
            if abs(u - t) > 1e-3:
                ax.plot([1.03 * x, 1.13 * math.cos(u)], [1.03 * y, 1.13 * math.sin(u)],
                        color="0.6", lw=0.6)
            ha = "left" if lx > 0.05 else "right" if lx < -0.05 else "center"
            va = "bottom" if ly > 0.2 else "top" if ly < -0.2 else "center"
            ax.text(lx, ly, label, ha=ha, va=va, fontsize=10 if big else 9)
        for parent in parents:
            ax.plot([], [], "o", color=colour_of[parent], label=parent)
        if parents:
            ax.legend(loc="center", fontsize=9, title="WebEmo-7 parent", frameon=False)
        subtasks = ", ".join(s for s, n in LOOP_OF_SUBTASK.items() if n == name)
        ax.set_title(f"{name} ({subtasks})", fontsize=10 if not big else 12)
        lim = 1.75 if big else 1.9
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim * 0.85, lim * 0.85)
        ax.set_aspect("equal")
        ax.axis("off")
    version = load_loop("mikels8", directory).provenance.get("lexicon", {}).get("version", "?")
    fig.suptitle(
        f"Emotion loops: shortest VAD cycles (NRC VAD {version}), positions by arc length; "
        "d = shorter arc / perimeter",
        fontsize=12,
    )
    fig.tight_layout()
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    # A 128-colour palette PNG is a quarter of the size and looks the same (flat colours, the
    # README commits it); FASTOCTREE keeps the ten tab10 colours distinct.
    from PIL import Image

    with Image.open(out) as im:
        small = im.convert("RGB").quantize(128, method=Image.Quantize.FASTOCTREE)
    small.save(out, optimize=True)
    return out


def _spread(positions: Sequence[float], gap: float, rounds: int = 200) -> list[float]:
    """Label positions near ``positions`` (increasing, in [0, 1)) at least ``gap`` apart."""
    q = list(positions)
    n = len(q)
    if n < 2 or n * gap >= 1:
        return q
    for _ in range(rounds):
        moved = False
        for i in range(n):
            j = (i + 1) % n
            between = (q[j] - q[i]) % 1.0
            if between < gap - 1e-9:
                push = (gap - between) / 2
                q[i] -= push
                q[j] += push
                moved = True
        if not moved:
            break
    return q
