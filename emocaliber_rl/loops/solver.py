"""Exact solvers for the emotion loops: shortest Hamiltonian cycles (Held-Karp) over a symmetric
distance matrix, with or without groups kept contiguous, and the arc-length positions of a cycle.
Nodes are integer indices into the matrix."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

# Beyond this Held-Karp's 2^n * n^2 work stops being instant; the loops here have n <= 8 (flat)
# and groups of <= 7, so this only guards against misuse.
_MAX_EXACT = 16


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
