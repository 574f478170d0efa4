"""Two training processes side by side on the same cores, each with torch's default thread team
(one thread per core) against each with one thread: what the test suite's two xdist workers, the
stage-3 job's FSDP ranks and vLLM servers do to each other (tests/conftest.py sets
OMP_NUM_THREADS=1 for all of them).

    .venv/bin/python benchmarks/bench_contended_threads.py [--steps 40] [--procs 2]

Each process builds the tiny Qwen2.5-VL (Qwen's 151,936-word vocabulary, seed 0) and runs
``--steps`` AdamW steps of ``emocaliber_rl.response_loss`` on 8 rows of 250 tokens, 50 of each
under the loss: one colour-model teaching step of the suite's stage-3 fixture, without images.
Prints, for each setting, the wall time until every process is done, each process's CPU seconds,
and the ratio of the wall times. Run it on an otherwise idle machine: with N cores, ``--procs N``
is the suite's case.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER = r"""
import json, sys, time
from pathlib import Path
import torch
from transformers import Qwen2_5_VLForConditionalGeneration
from emocaliber_rl.response_loss import response_loss
model_dir, steps = Path(sys.argv[1]), int(sys.argv[2])
model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
torch.manual_seed(0)
ids = torch.randint(0, 150_000, (8, 250))
enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
c0, t0 = time.process_time(), time.perf_counter()
for _ in range(steps):
    response_loss(model, enc, [200] * 8).backward()
    opt.step()
    opt.zero_grad()
print(json.dumps({"threads": torch.get_num_threads(), "wall": time.perf_counter() - t0,
                  "cpu": time.process_time() - c0}))
"""


def run_side_by_side(model_dir: Path, steps: int, procs: int, threads: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads is not None:
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    t0 = time.perf_counter()
    running = [subprocess.Popen([sys.executable, "-c", WORKER, str(model_dir), str(steps)], env=env,
                                stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    results = []
    for p in running:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"bench_contended_threads: a worker exited {p.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return {"wall": time.perf_counter() - t0, "procs": results}


def main() -> None:
    from emocaliber_rl.tiny_model import build_tiny_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40, help="training steps in each process")
    p.add_argument("--procs", type=int, default=2, help="processes side by side (the suite: one per core)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_model(Path(tmp), seed=0)
        default = run_side_by_side(Path(tmp), args.steps, args.procs, None)
        one = run_side_by_side(Path(tmp), args.steps, args.procs, "1")
    for name, r in (("default threads", default), ("one thread", one)):
        each = ", ".join(f"{q['threads']} thr: step loop {q['wall']:.1f} s, {q['cpu']:.1f} CPU-s" for q in r["procs"])
        print(f"{name:16s} all done in {r['wall']:.1f} s ({each})")
    print(f"wall ratio one thread / default: {one['wall'] / default['wall']:.3f}")


if __name__ == "__main__":
    main()
