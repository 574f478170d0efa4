"""What each demo stage did, measured: the effects table and the goals of the demo's index.

Pure functions over ``emocaliber eval score``'s ``scores.json`` (one per evaluated run), so the
index states numbers the report computed rather than re-deriving them. Chance of a group is the
mean over its subtasks of 1/K (K candidates), the same mean over subtasks that the group's
accuracy is (``evaluation/scoring.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emocaliber_rl.taxonomy import GROUPS, get_subtask

# Issue 15's goals for the demo on 2 cores (docs/demo-world.md)
SCAFFOLD_CHANCE_MULTIPLE = 2.0
COLD_START_PARSE_RATE = 0.90
WALL_TIME_S = 15 * 60


def chance(tasks: list[str]) -> float:
    """Accuracy of a uniform guess among each subtask's candidates, averaged over ``tasks``."""
    return sum(1.0 / len(get_subtask(t).labels) for t in tasks) / len(tasks)


def parse_rate(scores: Mapping[str, Any]) -> float:
    """Share of all scored test answers that carry a parseable ``<confidence>`` (n-weighted)."""
    groups = scores["groups"].values()
    n = sum(g["n"] for g in groups)
    return sum(g["verb"]["conf_parsed"] * g["n"] for g in groups) / n if n else math.nan


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:.1f}" if pct else f"{x:.3f}"


def effects_table(runs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Markdown rows: per run and group, accuracy (with chance), confidence parse rate and the
    verbalised confidence's ECE, Brier and ROC-AUC. ``runs`` maps a run's name to its scores."""
    lines = ["| run | group | Acc % | chance % | conf. parsed % | ECE | Brier | AUC | n |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, scores in runs.items():
        for group in GROUPS:
            g = scores["groups"].get(group)
            if g is None:
                continue
            v = g["verb"]
            lines.append(f"| {name} | {group} | {_fmt(g['acc'], True)} | {_fmt(chance(g['tasks']), True)} | "
                         f"{_fmt(v['conf_parsed'], True)} | {_fmt(v['ece'])} | {_fmt(v['brier'])} | "
                         f"{_fmt(v['auc'])} | {g['n']} |")
    return lines


@dataclass(frozen=True)
class Goal:
    """One of the demo's targets, with the measured value and whether it was met."""

    what: str
    measured: str
    met: bool


def goals(runs: Mapping[str, Mapping[str, Any]], wall_s: float, weight_change: float | None = None) -> list[Goal]:
    """The demo's targets (issue 15 item 2) checked against the measured scores; runs named
    ``oracle``, ``scaffold``, ``cold-start`` and ``EmoCaliber`` (those present are checked).
    ``weight_change``: the largest weight difference between the stage-3 and cold-start models."""
    out: list[Goal] = []
    if "scaffold" in runs:
        g = runs["scaffold"]["groups"]["ID VER"]
        c = chance(g["tasks"])
        opt = runs.get("oracle", {}).get("groups", {}).get("ID VER", {}).get("acc")
        out.append(Goal(f"scaffold ID VER accuracy >= {SCAFFOLD_CHANCE_MULTIPLE:g} x chance ({_fmt(c, True)}%)",
                        f"{_fmt(g['acc'], True)}% = {g['acc'] / c:.2f} x chance"
                        + (f" (oracle {_fmt(opt, True)}%)" if opt is not None else ""),
                        g["acc"] >= SCAFFOLD_CHANCE_MULTIPLE * c))
    if "cold-start" in runs:
        r = parse_rate(runs["cold-start"])
        out.append(Goal(f"cold-start model writes a parseable <confidence> on >= {COLD_START_PARSE_RATE:.0%} "
                        "of test images", f"{_fmt(r, True)}%", r >= COLD_START_PARSE_RATE))
    if "cold-start" in runs and "EmoCaliber" in runs:
        for metric in ("ece", "brier"):
            pairs = [(grp, runs["cold-start"]["groups"][grp]["verb"][metric],
                      runs["EmoCaliber"]["groups"][grp]["verb"][metric]) for grp in GROUPS
                     if grp in runs["cold-start"]["groups"] and grp in runs["EmoCaliber"]["groups"]]
            met = all(b is not None and a is not None and b <= a for _, a, b in pairs)
            out.append(Goal(f"final model's verbalised {metric.upper() if metric == 'ece' else 'Brier'} "
                            "no worse than the cold-start model's (every group)",
                            "; ".join(f"{grp}: {_fmt(a)} -> {_fmt(b)}" for grp, a, b in pairs), met))
    if weight_change is not None:
        out.append(Goal("stage 3 changed the policy's weights", f"largest change {weight_change:.3g}",
                        weight_change > 0.0))
    out.append(Goal(f"whole demo under {WALL_TIME_S // 60} minutes of stage time", f"{wall_s / 60:.1f} min",
                    wall_s < WALL_TIME_S))
    return out


def goals_table(items: list[Goal]) -> list[str]:
    lines = ["| goal | measured | met |", "|---|---|---|"]
    lines += [f"| {g.what} | {g.measured} | {'yes' if g.met else '**no**'} |" for g in items]
    return lines
