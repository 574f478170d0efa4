"""`emocaliber cot split`: VEC-CoT-1/2/3 at 6:3:1, stratified by subtask (paper Table 1).

Within each subtask the records are sorted by id, shuffled with ``random.Random(f"{seed}/{subtask}")``
and cut by largest remainder, so each subset gets its exact share per subtask and the same seed
gives the same files whatever the input order. Each record's ``split`` becomes its subset
(``vec-cot-N``); the split it came with is kept in ``extra["origin_split"]`` so the train/test guard
(:mod:`emocaliber_rl.data.leak_guard`) still knows a test record downstream.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from pathlib import Path

from emocaliber_rl.data.leak_guard import ORIGIN_SPLIT
from emocaliber_rl.data.records import Record, write_manifest

# Table 1's column order (VER then VSA); other subtasks follow in name order.
TABLE1_ORDER: tuple[str, ...] = ("EmoSet-8", "WebEmo-25", "WebEmo-7", "FI-8", "WebEmo-2", "FI-2")


def shares(n: int, ratios: tuple[int, ...]) -> list[int]:
    """Split ``n`` into integer parts proportional to ``ratios`` (largest remainder; sums to n)."""
    total = sum(ratios)
    exact = [n * r / total for r in ratios]
    parts = [int(x) for x in exact]
    order = sorted(range(len(ratios)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[: n - sum(parts)]:
        parts[i] += 1
    return parts


def split_cot(records: list[Record], *, seed: int = 0, ratios: tuple[int, ...] = (6, 3, 1)) -> list[list[Record]]:
    by_task: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_task[r.subtask].append(r)
    out: list[list[Record]] = [[] for _ in ratios]
    for task in sorted(by_task):
        items = sorted(by_task[task], key=lambda r: r.id)
        random.Random(f"{seed}/{task}").shuffle(items)
        start = 0
        for i, k in enumerate(shares(len(items), ratios)):
            for r in items[start:start + k]:
                if r.split and ORIGIN_SPLIT not in r.extra:
                    r.extra[ORIGIN_SPLIT] = r.split  # never lose where a record came from
                r.split = f"vec-cot-{i + 1}"
                out[i].append(r)
            start += k
    for part in out:
        part.sort(key=lambda r: (r.subtask, r.id))
    return out


def table(parts: list[list[Record]]) -> str:
    """Markdown table like the paper's Table 1: one row per subset, one column per subtask."""
    tasks = {r.subtask for p in parts for r in p}
    cols = [t for t in TABLE1_ORDER if t in tasks] + sorted(tasks - set(TABLE1_ORDER))
    lines = ["| VEC-CoT | " + " | ".join(cols) + " | Total |", "|---|" + "---:|" * (len(cols) + 1)]
    totals = [0] * len(cols)
    for i, p in enumerate(parts):
        counts = [sum(1 for r in p if r.subtask == c) for c in cols]
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
        lines.append(f"| Stage {i + 1} | " + " | ".join(map(str, counts)) + f" | {len(p)} |")
    lines.append("| Total | " + " | ".join(map(str, totals)) + f" | {sum(totals)} |")
    return "\n".join(lines)


def write_split(parts: list[list[Record]], out_dir: str | os.PathLike[str]) -> list[Path]:
    out = Path(out_dir)
    paths = []
    for i, p in enumerate(parts):
        path = out / f"vec_cot_{i + 1}.jsonl"
        write_manifest(path, p)
        paths.append(path)
    (out / "table.md").write_text(table(parts) + "\n", encoding="utf-8")
    return paths
