"""`emocaliber bench build`: the VECBench train/test split from the six raw datasets (paper 4.2).

- FI: shuffled, first half -> FI-2 (Mikels labels mapped to polarity), other half -> FI-8.
- WebEmo: shuffled, dealt 1:1:1 to WebEmo-25, WebEmo-7 (Parrott parent), WebEmo-2 (polarity).
- EmoSet: EmoSet-8.
- Each of these six subtasks: ``test_size`` random test samples, the rest is train.
- Abstract-8, Artphoto-8: every sample, test only. UnbiasedEmo-6: ``test_size`` samples, test only
  (the rest is unused, counted in the summary).

Every image is decoded and hashed (process pool). Undecodable/missing images and byte-identical
duplicates are reported and left out before any sampling; duplicates keep the copy from the first
dataset in ``DEDUP_PRIORITY`` (test-only datasets first, so an OOD image never trains), then the
smallest id. Train and test are then disjoint by content hash by construction, and this is checked
again on the written manifests. Shuffles use ``random.Random(f"{seed}/{name}")``, so the same seed
and the same files give byte-identical outputs whatever the file-system listing order.
"""

from __future__ import annotations

import os
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from emocaliber_rl.data.images import check_image_safe
from emocaliber_rl.data.raw import ADAPTERS, RawSample, read_dataset
from emocaliber_rl.data.records import Record, write_manifest
from emocaliber_rl.data.report import ProblemReport
from emocaliber_rl.taxonomy import (
    MIKELS_POLARITY,
    SUBTASKS,
    WEBEMO_POLARITY,
    webemo_parent,
)

DEDUP_PRIORITY: tuple[str, ...] = ("Abstract", "ArtPhoto", "UnbiasedEmo", "EmoSet", "FI", "WebEmo")
TEST_ONLY_ALL = ("Abstract-8", "Artphoto-8")


@dataclass
class BuildResult:
    train: list[Record]
    test: list[Record]
    report: ProblemReport
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    short: dict[str, int] = field(default_factory=dict)  # subtask -> test size when < requested
    unused: dict[str, int] = field(default_factory=dict)
    overlap: int = 0

    def table(self) -> str:
        """Markdown table of counts per subtask (like the paper's Figure 3)."""
        lines = ["| Subtask | Group | Train | Test |", "|---|---|---:|---:|"]
        tot_tr = tot_te = 0
        for name, task in SUBTASKS.items():
            c = self.counts.get(name, {})
            tr, te = c.get("train", 0), c.get("test", 0)
            if not tr and not te:
                continue
            tot_tr += tr
            tot_te += te
            note = " (fewer than requested)" if name in self.short else ""
            lines.append(f"| {name} | {task.group} | {tr} | {te}{note} |")
        lines.append(f"| **Total** | | {tot_tr} | {tot_te} |")
        return "\n".join(lines)


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def hash_images(paths: list[str], workers: int, progress: bool = True) -> dict[str, tuple]:
    """``path -> (info, problem_kind, detail)`` for every path, decoded in a process pool."""
    from tqdm import tqdm

    out: dict[str, tuple] = {}
    bar = tqdm(total=len(paths), desc="decode+hash", unit="img", disable=not progress, file=sys.stderr)
    if workers <= 1 or len(paths) < 64:
        results: Iterable = map(check_image_safe, paths)
        for path, info, kind, detail in results:
            out[path] = (info, kind, detail)
            bar.update()
    else:
        # Large chunks amortise inter-process overhead; 8 chunks per worker keep the bar moving.
        chunk = max(1, min(256, len(paths) // (workers * 8)))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for path, info, kind, detail in pool.map(check_image_safe, paths, chunksize=chunk):
                out[path] = (info, kind, detail)
                bar.update()
    bar.close()
    return out


def _shuffled(items: list[RawSample], seed: int, name: str) -> list[RawSample]:
    items = sorted(items, key=lambda s: s.id)
    random.Random(f"{seed}/{name}").shuffle(items)
    return items


def _rec(s: RawSample, subtask: str, label: str, split: str, sha: str) -> Record:
    return Record.make(s.id, subtask, s.path, label, sha256=sha, split=split, source=s.dataset)


def build_splits(
    roots: dict[str, str | os.PathLike[str]],
    *,
    seed: int = 0,
    test_size: int = 1000,
    workers: int | None = None,
    progress: bool = True,
) -> BuildResult:
    """Read, check and split the datasets in ``roots`` (dataset name -> folder); writes nothing."""
    report = ProblemReport()
    samples: dict[str, list[RawSample]] = {}
    for name in ADAPTERS:
        if name in roots and roots[name] is not None:
            samples[name] = read_dataset(name, roots[name], report)
    unknown = set(roots) - set(ADAPTERS)
    if unknown:
        raise ValueError(f"unknown dataset(s) {sorted(unknown)}; known: {', '.join(ADAPTERS)}")

    all_paths = sorted({s.path for ss in samples.values() for s in ss})
    checked = hash_images(all_paths, workers or default_workers(), progress)

    # Drop undecodable images, then byte-identical duplicates (priority order, then id).
    sha_of: dict[str, str] = {}
    kept: dict[str, list[RawSample]] = defaultdict(list)
    first_by_sha: dict[str, str] = {}
    for name in DEDUP_PRIORITY:
        for s in sorted(samples.get(name, []), key=lambda s: s.id):
            info, kind, detail = checked[s.path]
            if info is None:
                report.add(s.path, f"image_{kind}", detail, item=s.id)
                continue
            if info.sha256 in first_by_sha:
                report.add(s.path, "duplicate", f"same bytes as {first_by_sha[info.sha256]}", item=s.id)
                continue
            first_by_sha[info.sha256] = s.id
            sha_of[s.id] = info.sha256
            kept[name].append(s)

    res = BuildResult([], [], report)

    def take(subtask: str, items: list[tuple[RawSample, str]], *, train: bool, all_test: bool = False) -> None:
        n_test = len(items) if all_test else min(test_size, len(items))
        if n_test < test_size and not all_test:
            res.short[subtask] = n_test
        for i, (s, label) in enumerate(items):
            if i < n_test:
                res.test.append(_rec(s, subtask, label, "test", sha_of[s.id]))
            elif train:
                res.train.append(_rec(s, subtask, label, "train", sha_of[s.id]))
            else:
                res.unused[subtask] = res.unused.get(subtask, 0) + 1

    if "FI" in kept:
        fi = _shuffled(kept["FI"], seed, "FI")
        half = len(fi) // 2
        take("FI-2", [(s, MIKELS_POLARITY[s.label]) for s in fi[:half]], train=True)
        take("FI-8", [(s, s.label) for s in fi[half:]], train=True)
    if "WebEmo" in kept:
        web = _shuffled(kept["WebEmo"], seed, "WebEmo")
        take("WebEmo-25", [(s, s.label) for s in web[0::3]], train=True)
        take("WebEmo-7", [(s, webemo_parent(s.label)) for s in web[1::3]], train=True)
        take("WebEmo-2", [(s, WEBEMO_POLARITY[s.label]) for s in web[2::3]], train=True)
    if "EmoSet" in kept:
        take("EmoSet-8", [(s, s.label) for s in _shuffled(kept["EmoSet"], seed, "EmoSet")], train=True)
    if "Abstract" in kept:
        take("Abstract-8", [(s, s.label) for s in kept["Abstract"]], train=False, all_test=True)
    if "ArtPhoto" in kept:
        take("Artphoto-8", [(s, s.label) for s in kept["ArtPhoto"]], train=False, all_test=True)
    if "UnbiasedEmo" in kept:
        ub = _shuffled(kept["UnbiasedEmo"], seed, "UnbiasedEmo")
        take("UnbiasedEmo-6", [(s, s.label) for s in ub], train=False)

    order = {name: i for i, name in enumerate(SUBTASKS)}
    res.train.sort(key=lambda r: (order[r.subtask], r.id))
    res.test.sort(key=lambda r: (order[r.subtask], r.id))
    res.overlap = len(check_disjoint(res.train, res.test))
    counts: dict[str, Counter] = defaultdict(Counter)
    for r in res.train + res.test:
        counts[r.subtask][r.split or ""] += 1
    res.counts = {k: dict(v) for k, v in counts.items()}
    return res


def check_disjoint(train: Iterable[Record], test: Iterable[Record]) -> set[str]:
    """Content hashes present in both splits (empty when they are disjoint)."""
    return {r.sha256 for r in train if r.sha256} & {r.sha256 for r in test if r.sha256}


def write_build(res: BuildResult, out_dir: str | os.PathLike[str], *, seed: int, test_size: int) -> dict[str, Path]:
    """Write ``train.jsonl``, ``test.jsonl``, ``summary.md`` and ``report.jsonl`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "train": out / "train.jsonl",
        "test": out / "test.jsonl",
        "summary": out / "summary.md",
        "report": out / "report.jsonl",
    }
    write_manifest(paths["train"], res.train)
    write_manifest(paths["test"], res.test)
    res.report.write(paths["report"])
    lines = [
        "# VECBench build summary",
        "",
        f"seed {seed}, requested test size {test_size}",
        "",
        res.table(),
        "",
        (f"Train/test overlap by image sha256: {res.overlap} "
        f"({'disjoint' if res.overlap == 0 else 'NOT DISJOINT'})."),
        "",
        f"Problems: {res.report.summary('images or entries')} (details in report.jsonl).",
    ]
    for name, n in res.short.items():
        lines.append(f"- {name}: only {n} test samples available (requested {test_size}).")
    for name, n in res.unused.items():
        lines.append(f"- {name}: {n} samples not selected (test-only subtask).")
    paths["summary"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths
