"""The emotion loops drawn as in the paper's Figure 5 (``emocaliber loops plot``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from emocaliber_rl.loops.model import load_loop
from emocaliber_rl.taxonomy import LOOP_OF_SUBTASK


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
