"""`bench build` throughput (images/s) over a few thousand generated images, and the cost of
near-duplicate detection (perceptual hash per image + the pair search).

    .venv/bin/python benchmarks/bench_bench_build.py [--images 3000] [--size 320x240] [--workers 1,2]

Generates FI, EmoSet, WebEmo, Abstract, ArtPhoto and UnbiasedEmo folders in their published
layouts (random-noise JPEGs: every image distinct, and noise is the worst case for JPEG decoding).
First the per-image CPU cost of the decode check alone, without and with the phash (one process,
every image), then the whole build (listing, decode + hashes in a process pool, near-duplicate
search, split, manifests) for each worker count, without and with near-duplicate detection.
Speed-up is relative to 1 worker, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from emocaliber_rl.data.splits import build_splits, hash_images, near_pairs, write_build
from emocaliber_rl.data.synthetic import make_layout

# Share of the images per dataset, and the label-set size make_layout multiplies by.
MIX = {"FI": (0.3, 8), "EmoSet": (0.25, 8), "WebEmo": (0.25, 25), "Abstract": (0.05, 8),
       "ArtPhoto": (0.05, 8), "UnbiasedEmo": (0.1, 6)}


def _cpu() -> float:
    """CPU seconds of this process plus its finished children (the pool's workers)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=3000, help="approximate number of images")
    p.add_argument("--size", default="320x240", help="image size WxH")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--test-size", type=int, default=100, help="test samples per subtask")
    args = p.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        roots = {}
        t0 = time.perf_counter()
        for name, (share, n_labels) in MIX.items():
            per = max(1, round(args.images * share / n_labels))
            roots[name] = tmp / name
            make_layout(name, roots[name], per, seed=0, size=(w, h))
        n = sum(1 for r in roots.values() for f in r.rglob("*.jpg"))
        mb = sum(f.stat().st_size for r in roots.values() for f in r.rglob("*.jpg")) / 1e6
        print(f"generated {n} images ({w}x{h}, {mb:.0f} MB) in {time.perf_counter() - t0:.1f}s; "
              f"cores available: {len(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.1f}")
        paths = sorted(str(f) for r in roots.values() for f in r.rglob("*.jpg"))
        per = {}
        for perceptual in (False, True):
            t0, cpu0 = time.perf_counter(), _cpu()
            checked = hash_images(paths, 1, progress=False, perceptual=perceptual)
            per[perceptual] = (_cpu() - cpu0) / n * 1000
        t0 = time.perf_counter()
        pairs = near_pairs([checked[p][0].phash for p in paths], 4)
        search_ms = (time.perf_counter() - t0) / n * 1000
        print(f"decode check, CPU ms/image: {per[False]:.3f} without phash, {per[True]:.3f} with "
              f"({per[True] / per[False]:.2f}x); pair search {search_ms:.4f} ms/image "
              f"({len(pairs)} pairs within 4 bits among distinct images)")
        print(f"{'near-dups':>9} {'workers':>7} {'seconds':>8} {'images/s':>9} {'speed-up':>8} "
              f"{'CPU ms/image':>12}")
        for near in (False, True):
            base = None
            for k in (int(x) for x in args.workers.split(",")):
                t0, cpu0 = time.perf_counter(), _cpu()
                res = build_splits(roots, seed=0, test_size=args.test_size, workers=k, progress=False,
                                   near_duplicates=near)
                write_build(res, tmp / f"out{k}", seed=0, test_size=args.test_size)
                dt = time.perf_counter() - t0
                base = base or dt
                cpu_ms = (_cpu() - cpu0) / n * 1000
                print(f"{'on' if near else 'off':>9} {k:>7} {dt:>8.2f} {n / dt:>9.0f} {base / dt:>8.2f} "
                      f"{cpu_ms:>12.3f}")
                assert res.overlap == 0 and len(res.report) == 0 and not res.empty
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
