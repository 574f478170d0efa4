"""`emocaliber bench build`: the VECBench train/test split from the six raw datasets (paper 4.2).

- FI: shuffled, first half -> FI-2 (Mikels labels mapped to polarity), other half -> FI-8.
- WebEmo: shuffled, dealt 1:1:1 to WebEmo-25, WebEmo-7 (Parrott parent), WebEmo-2 (polarity).
- EmoSet: EmoSet-8.
- Each of these six subtasks: ``test_size`` random test samples, the rest is train.
- Abstract-8, Artphoto-8: every sample, test only. UnbiasedEmo-6: ``test_size`` samples, test only
  (the rest is unused, counted in the summary).

Every image is decoded and hashed (process pool): sha256 of the bytes and a 64-bit perceptual
hash (``imagehash.phash``). Undecodable/missing images, byte-identical duplicates and
near-duplicates (phash Hamming distance <= ``PHASH_THRESHOLD``, across all datasets) are reported
and left out before any sampling. Of each duplicate group the copy kept is the one from the first
dataset in ``DEDUP_PRIORITY`` (the test-only datasets first, so the test copy wins and an OOD image
never trains), then the smallest id; every dropped copy is reported with both paths. Train and
test are then disjoint by construction, and this is checked again, by bytes and by phash, on the
final splits. Shuffles use ``random.Random(f"{seed}/{name}")``, so the same seed and the same
files give byte-identical outputs whatever the file-system listing order.

A dataset given on the command line that yields no usable sample is listed in
``BuildResult.empty`` (the CLI exits non-zero); the summary shows, per dataset, how many items were
found, kept, and reported by reason.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from emocaliber_rl.data.images import check_image_safe
from emocaliber_rl.data.raw import ADAPTERS, RawSample, read_dataset
from emocaliber_rl.data.records import Record
from emocaliber_rl.data.report import ProblemReport
from emocaliber_rl.jsonl import write_jsonl_files
from emocaliber_rl.taxonomy import (
    MIKELS_POLARITY,
    SUBTASKS,
    WEBEMO_POLARITY,
    webemo_parent,
)

DEDUP_PRIORITY: tuple[str, ...] = ("Abstract", "ArtPhoto", "UnbiasedEmo", "EmoSet", "FI", "WebEmo")
TEST_ONLY_ALL = ("Abstract-8", "Artphoto-8")
# Largest phash Hamming distance (of 64 bits) treated as the same picture. Measured by
# benchmarks/bench_phash_threshold.py (docs/data.md):
# re-encoding three real photos as JPEG q95/q75/q50, PNG, half/quarter size and 220 px wide moves
# the hash by 0-2 bits; 2 of 44,850 pairs of distinct crops of the same photos come within 4.
PHASH_THRESHOLD = 4


@dataclass
class BuildResult:
    train: list[Record]
    test: list[Record]
    report: ProblemReport
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    short: dict[str, int] = field(default_factory=dict)  # subtask -> test size when < requested
    unused: dict[str, int] = field(default_factory=dict)
    overlap: int = 0  # images in both splits with the same sha256
    overlap_near: int | None = 0  # train/test pairs within PHASH_THRESHOLD; None when not checked
    near_threshold: int | None = PHASH_THRESHOLD
    near_duplicates: list[tuple[str, str, int]] = field(default_factory=list)  # (kept, dropped, dist)
    datasets: dict[str, dict] = field(default_factory=dict)  # name -> found, kept, reported{kind: n}
    empty: list[str] = field(default_factory=list)  # datasets given that yielded no usable sample

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

    def dataset_table(self) -> str:
        """Per dataset: items found, kept (usable after every check), reported by reason."""
        lines = ["| Dataset | Found | Kept | Reported (by reason) |", "|---|---:|---:|---|"]
        for name, d in self.datasets.items():
            why = ", ".join(f"{k} {v}" for k, v in sorted(d["reported"].items())) or "none"
            lines.append(f"| {name} | {d['found']} | {d['kept']} | {why} |")
        return "\n".join(lines)

    def overlap_line(self) -> str:
        byte = f"{self.overlap} byte-identical images"
        if self.overlap_near is None:
            return (f"Train/test overlap: {byte}; near-duplicates NOT checked "
                    "(--no-near-duplicates), so disjoint by bytes only.")
        verdict = "disjoint" if self.overlap == 0 and self.overlap_near == 0 else "NOT DISJOINT"
        return (f"Train/test overlap: {byte}, {self.overlap_near} near-duplicate pairs "
                f"(pHash Hamming distance <= {self.near_threshold}) ({verdict}).")


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def hash_images(paths: list[str], workers: int, progress: bool = True,
                perceptual: bool = False) -> dict[str, tuple]:
    """``path -> (info, problem_kind, detail)`` for every path, decoded in a process pool
    (``perceptual``: ``info.phash`` too)."""
    from tqdm import tqdm

    out: dict[str, tuple] = {}
    check = functools.partial(check_image_safe, perceptual=perceptual)
    bar = tqdm(total=len(paths), desc="decode+hash", unit="img", disable=not progress, file=sys.stderr)
    if workers <= 1 or len(paths) < 64:
        results: Iterable = map(check, paths)
        for path, info, kind, detail in results:
            out[path] = (info, kind, detail)
            bar.update()
    else:
        # Large chunks amortise inter-process overhead; 8 chunks per worker keep the bar moving.
        chunk = max(1, min(256, len(paths) // (workers * 8)))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for path, info, kind, detail in pool.map(check, paths, chunksize=chunk):
                out[path] = (info, kind, detail)
                bar.update()
    bar.close()
    return out


def near_pairs(hashes: Sequence[int], threshold: int) -> list[tuple[int, int, int]]:
    """Every index pair ``(i, j, distance)``, ``i < j``, of 64-bit hashes within ``threshold`` bits.

    Pigeonhole index: split the 64 bits into ``threshold + 1`` chunks; two hashes within
    ``threshold`` bits agree exactly on at least one chunk, so only hashes sharing a chunk value
    are compared (vectorised popcount), not all n^2 pairs.
    """
    import numpy as np

    n = len(hashes)
    if n < 2:
        return []
    h = np.array([int(x) for x in hashes], dtype=np.uint64)
    k = threshold + 1
    bounds = [round(64 * c / k) for c in range(k + 1)]
    found: dict[tuple[int, int], int] = {}
    for lo, hi in itertools.pairwise(bounds):
        key = (h >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
        order = np.argsort(key, kind="stable")
        ks = key[order]
        starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        ends = np.r_[starts[1:], n]
        for a, b in zip(starts[ends - starts > 1], ends[ends - starts > 1], strict=True):
            idx = order[a:b]
            sub = h[idx]
            for r in range(0, len(idx), 1024):  # bounded memory for big buckets
                dist = np.bitwise_count(sub[r:r + 1024, None] ^ sub[None, :])
                hit = (dist <= threshold) & (idx[r:r + 1024, None] < idx[None, :])
                for i, j in zip(*np.nonzero(hit), strict=True):
                    found[(int(idx[r + i]), int(idx[j]))] = int(dist[i, j])
    return sorted((i, j, d) for (i, j), d in found.items())


def _shuffled(items: list[RawSample], seed: int, name: str) -> list[RawSample]:
    items = sorted(items, key=lambda s: s.id)
    random.Random(f"{seed}/{name}").shuffle(items)
    return items


def _rec(s: RawSample, subtask: str, label: str, split: str, sha: str) -> Record:
    return Record.make(s.id, subtask, s.path, label, sha256=sha, split=split, source=s.dataset)


def _utf8_named(samples: list[RawSample], report: ProblemReport) -> list[RawSample]:
    """The samples whose file path is UTF-8 text. A manifest is UTF-8 JSON, so a name with other
    bytes (decoded by Python as surrogates, e.g. Latin-1 ``caf\\xe9.jpg``) cannot be written into it:
    such a file is reported, by its bytes escaped, and left out."""
    out = []
    for s in samples:
        try:
            s.path.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(s.path).decode("utf-8", "backslashreplace")
            report.add(shown, "non_utf8_name", "the file name is not UTF-8 text, which a manifest "
                       "cannot hold; rename the file (e.g. with convmv)")
            continue
        out.append(s)
    return out


def build_splits(
    roots: dict[str, str | os.PathLike[str]],
    *,
    seed: int = 0,
    test_size: int = 1000,
    workers: int | None = None,
    progress: bool = True,
    near_duplicates: bool = True,
    near_threshold: int = PHASH_THRESHOLD,
) -> BuildResult:
    """Read, check and split the datasets in ``roots`` (dataset name -> folder); writes nothing.

    Raises :class:`~emocaliber_rl.data.raw.LayoutError` when a root or a metadata file cannot be
    read as published.
    """
    unknown = set(roots) - set(ADAPTERS)
    if unknown:
        raise ValueError(f"unknown dataset(s) {sorted(unknown)}; known: {', '.join(ADAPTERS)}")
    if not 0 <= near_threshold <= 63:
        raise ValueError(f"near_threshold is a number of bits of a 64-bit hash, 0..63; got {near_threshold}")
    report = ProblemReport()
    samples: dict[str, list[RawSample]] = {}
    listed_bad: dict[str, int] = {}  # items the adapter reported instead of listing
    for name in ADAPTERS:
        if name in roots and roots[name] is not None:
            first = len(report.problems)
            samples[name] = _utf8_named(read_dataset(name, roots[name], report), report)
            report.problems[first:] = [dataclasses.replace(p, dataset=name)
                                       for p in report.problems[first:]]
            listed_bad[name] = len(report.problems) - first

    all_paths = sorted({s.path for ss in samples.values() for s in ss})
    checked = hash_images(all_paths, workers or default_workers(), progress, perceptual=near_duplicates)

    # Drop undecodable images and byte-identical duplicates (priority order, then id) ...
    sha_of: dict[str, str] = {}
    first_by_sha: dict[str, RawSample] = {}
    cands: list[RawSample] = []
    for name in DEDUP_PRIORITY:
        for s in sorted(samples.get(name, []), key=lambda s: s.id):
            info, kind, detail = checked[s.path]
            if info is None:
                where = f" (listed at {s.origin})" if s.origin else ""
                report.add(s.path, f"image_{kind}", f"{detail}{where}", item=s.id, dataset=name)
                continue
            if info.sha256 in first_by_sha:
                keep = first_by_sha[info.sha256]
                report.add(s.path, "duplicate", f"same bytes as {keep.path} (kept: {keep.id})",
                           item=s.id, dataset=name)
                continue
            first_by_sha[info.sha256] = s
            sha_of[s.id] = info.sha256
            cands.append(s)
    # ... then near-duplicates: a candidate goes when it is within the threshold of one already
    # kept (earlier in priority order), so of every group the highest-priority copy stays.
    kept: dict[str, list[RawSample]] = defaultdict(list)
    near_found: list[tuple[str, str, int]] = []
    adj: dict[int, list[tuple[int, int]]] = defaultdict(list)
    if near_duplicates:
        for i, j, d in near_pairs([checked[s.path][0].phash for s in cands], near_threshold):
            adj[j].append((i, d))
    kept_idx: set[int] = set()
    for j, s in enumerate(cands):
        hit = next(((i, d) for i, d in sorted(adj.get(j, ())) if i in kept_idx), None)
        if hit is not None:
            keep = cands[hit[0]]
            report.add(s.path, "near_duplicate", f"looks like {keep.path} (pHash Hamming distance "
                       f"{hit[1]} <= {near_threshold}; kept: {keep.id})", item=s.id, dataset=s.dataset)
            near_found.append((keep.id, s.id, hit[1]))
            continue
        kept_idx.add(j)
        kept[s.dataset].append(s)

    res = BuildResult([], [], report, near_threshold=near_threshold if near_duplicates else None,
                      near_duplicates=near_found)

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
    if near_duplicates:
        phash = {s.id: checked[s.path][0].phash for ss in kept.values() for s in ss}
        res.overlap_near = len(check_near_disjoint(res.train, res.test, phash, near_threshold))
    else:
        res.overlap_near = None
    for name, ss in samples.items():
        mine = [p for p in report.problems if p.dataset == name]
        res.datasets[name] = {"found": len(ss) + listed_bad[name],
                              "kept": len(kept.get(name, [])),
                              "reported": dict(Counter(p.kind for p in mine))}
        if not kept.get(name):
            res.empty.append(name)
    counts: dict[str, Counter] = defaultdict(Counter)
    for r in res.train + res.test:
        counts[r.subtask][r.split or ""] += 1
    res.counts = {k: dict(v) for k, v in counts.items()}
    return res


def check_disjoint(train: Iterable[Record], test: Iterable[Record]) -> set[str]:
    """Content hashes present in both splits (empty when they are disjoint)."""
    return {r.sha256 for r in train if r.sha256} & {r.sha256 for r in test if r.sha256}


def check_near_disjoint(train: Sequence[Record], test: Sequence[Record], phash: dict[str, int],
                        threshold: int = PHASH_THRESHOLD) -> list[tuple[str, str, int]]:
    """``(train id, test id, distance)`` of every train/test pair within ``threshold`` phash bits."""
    tr = [r for r in train if r.id in phash]
    te = [r for r in test if r.id in phash]
    recs = tr + te
    return [(recs[i].id, recs[j].id, d) for i, j, d in near_pairs([phash[r.id] for r in recs], threshold)
            if i < len(tr) <= j]


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
    # train and test together or neither: one without the other looks like a finished build
    write_jsonl_files({paths["train"]: (r.to_dict() for r in res.train),
                       paths["test"]: (r.to_dict() for r in res.test)})
    res.report.write(paths["report"])
    lines = [
        "# VECBench build summary",
        "",
        f"seed {seed}, requested test size {test_size}",
        "",
        res.table(),
        "",
        res.dataset_table(),
        "",
        res.overlap_line(),
        "",
        (f"Near-duplicates left out before splitting: {len(res.near_duplicates)} "
         "(each with both paths in report.jsonl, kind near_duplicate)."),
        "",
        f"Problems: {res.report.summary('images or entries')} (details in report.jsonl).",
    ]
    lines += [f"- note: {n}" for n in res.report.notes]
    lines += [f"- error: {name} yielded no usable sample" for name in res.empty]
    for name, n in res.short.items():
        lines.append(f"- {name}: only {n} test samples available (requested {test_size}).")
    for name, n in res.unused.items():
        lines.append(f"- {name}: {n} samples not selected (test-only subtask).")
    paths["summary"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths
