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

# The demo's goals on 2 cores (docs/demo-world.md, "Goals"). The scaffold must close half the
# gap from chance to the oracle on ID VER; the cold-start model's verbalised confidence must tell
# right from wrong answers (ROC-AUC) with several values in use, not one per subtask.
SCAFFOLD_ORACLE_GAIN = 0.5
SCAFFOLD_MIN_TASK_ACC = {"FI-8": 0.60, "EmoSet-8": 0.60}
COLD_START_PARSE_RATE = 0.95
COLD_START_AUC = {"ID VER": 0.65, "ID VSA": 0.60}
COLD_START_ACC_DROP = 0.03
DISTINCT_VALUES, DISTINCT_MIN_SHARE = 3, 0.05
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
    lines = ["| run | group | Acc % | chance % | conf. parsed % | ECE | Brier | AUC | AUC within | n |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, scores in runs.items():
        for group in GROUPS:
            g = scores["groups"].get(group)
            if g is None:
                continue
            v = g["verb"]
            lines.append(f"| {name} | {group} | {_fmt(g['acc'], True)} | {_fmt(chance(g['tasks']), True)} | "
                         f"{_fmt(v['conf_parsed'], True)} | {_fmt(v['ece'])} | {_fmt(v['brier'])} | "
                         f"{_fmt(v['auc'])} | {_fmt(v.get('auc_within'))} | {g['n']} |")
    return lines


@dataclass(frozen=True)
class Goal:
    """One of the demo's targets, with the measured value and whether it was met."""

    what: str
    measured: str
    met: bool


def confidence_values(samples: list[Mapping[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Per group, each verbalised confidence value (2 decimals) and its share of the group's
    answers, most frequent first: ``eval score --samples`` rows in, a constant confidence shows as
    one value with share 1."""
    from collections import Counter

    by_group: dict[str, Counter] = {}
    totals: Counter = Counter()
    for row in samples:
        totals[row["group"]] += 1
        if row.get("conf_verb") is not None:
            by_group.setdefault(row["group"], Counter())[round(float(row["conf_verb"]), 2)] += 1
    return {grp: [(v, n / totals[grp]) for v, n in c.most_common()] for grp, c in by_group.items()}


def goals(runs: Mapping[str, Mapping[str, Any]], wall_s: float, weight_change: float | None = None,
          cold_start_values: Mapping[str, list[tuple[float, float]]] | None = None) -> list[Goal]:
    """The demo's targets (docs/demo-world.md, "Goals") checked against the measured scores; runs
    named ``oracle``, ``scaffold``, ``cold-start`` and ``EmoCaliber`` (those present are checked).
    ``weight_change``: the largest weight difference between the stage-3 and cold-start models;
    ``cold_start_values``: :func:`confidence_values` of the cold-start model's answers."""
    out: list[Goal] = []
    if "scaffold" in runs:
        g = runs["scaffold"]["groups"]["ID VER"]
        c = chance(g["tasks"])
        opt = runs.get("oracle", {}).get("groups", {}).get("ID VER", {}).get("acc")
        if opt is not None:
            need = c + SCAFFOLD_ORACLE_GAIN * (opt - c)
            out.append(Goal(f"scaffold ID VER accuracy >= chance + {SCAFFOLD_ORACLE_GAIN:g} x the oracle's gain "
                            f"({_fmt(c, True)}% + {SCAFFOLD_ORACLE_GAIN:g} x ({_fmt(opt, True)} - {_fmt(c, True)}) "
                            f"= {_fmt(need, True)}%)", f"{_fmt(g['acc'], True)}% ({g['acc'] / c:.2f} x chance)",
                            g["acc"] >= need))
        tasks = runs["scaffold"].get("tasks", {})
        for task, floor in SCAFFOLD_MIN_TASK_ACC.items():
            if task in tasks:
                acc = tasks[task]["acc"]
                out.append(Goal(f"scaffold {task} accuracy >= {floor:.0%}", f"{_fmt(acc, True)}%", acc >= floor))
    if "cold-start" in runs:
        cold = runs["cold-start"]["groups"]
        r = parse_rate(runs["cold-start"])
        out.append(Goal(f"cold-start model writes a parseable <confidence> on >= {COLD_START_PARSE_RATE:.0%} "
                        "of test images", f"{_fmt(r, True)}%", r >= COLD_START_PARSE_RATE))
        for grp, floor in COLD_START_AUC.items():
            if grp in cold:
                auc = cold[grp]["verb"]["auc"]
                out.append(Goal(f"cold-start verbalised {grp} ROC-AUC >= {floor:.2f}",
                                f"{_fmt(auc)} (within subtasks {_fmt(cold[grp]['verb'].get('auc_within'))})",
                                auc is not None and not math.isnan(auc) and auc >= floor))
        if cold_start_values is not None:
            for grp in GROUPS:
                vals = [(v, sh) for v, sh in cold_start_values.get(grp, []) if sh >= DISTINCT_MIN_SHARE]
                if grp in cold:
                    out.append(Goal(f"cold-start {grp}: >= {DISTINCT_VALUES} confidence values, each on "
                                    f">= {DISTINCT_MIN_SHARE:.0%} of answers",
                                    ", ".join(f"{v:.2f} ({100 * sh:.0f}%)" for v, sh in vals) or "none",
                                    len(vals) >= DISTINCT_VALUES))
        if "scaffold" in runs and "ID VER" in cold:
            a, b = runs["scaffold"]["groups"]["ID VER"]["acc"], cold["ID VER"]["acc"]
            out.append(Goal(f"cold-start ID VER accuracy at most {100 * COLD_START_ACC_DROP:.0f} points below the "
                            "scaffold's", f"{_fmt(a, True)}% -> {_fmt(b, True)}%", b >= a - COLD_START_ACC_DROP - 1e-12))
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
    out.append(Goal(f"whole demo under {WALL_TIME_S // 60} minutes, start to end", f"{wall_s / 60:.1f} min",
                    wall_s <= WALL_TIME_S))
    return out


def goals_table(items: list[Goal]) -> list[str]:
    lines = ["| goal | measured | met |", "|---|---|---|"]
    lines += [f"| {g.what} | {g.measured} | {'yes' if g.met else '**no**'} |" for g in items]
    return lines
