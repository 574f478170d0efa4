"""vLLM on CPU: the engine as it ran before (bf16 as stored, engine core and worker in two spawned
processes) against the CPU defaults of ``VLLMEngine`` and the CLI (fp32 compute, engine in the
calling process), one fresh process each, the same tiny Qwen2.5-VL, prompts and images.

    .venv/bin/python benchmarks/bench_vllm_cpu_engine.py [--prompts 64] [--max-new-tokens 64]

Each side is timed from the start of its process to the end of ``close()``: imports, the engine's
start (vLLM loads the Qwen tokenizer several times) and the greedy generation, as one ``eval run``
pays them (vLLM is imported inside the engine's start). Prints each side's start and generation
seconds, the speed-up of the whole, and on how many prompts the two greedy answers have the same
tokens. On this random model most are not: its next-token distribution is nearly flat, every step a
near-tie that bf16 rounding breaks otherwise (27 of 64 on 2026-12-02). The demo's trained scaffold
answered its 256 first test images identically in bf16 and fp32 (``eval run``, docs/stage2.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from emocaliber_rl.inference.engine import GenerationRequest, SamplingConfig
from emocaliber_rl.inference.vllm_engine import VLLMEngine
args = json.loads(sys.argv[1])
def main():
    t1 = time.perf_counter()
    eng = VLLMEngine(args["model"], dtype=args["dtype"], in_process=args["in_process"], pixel_bounds=None)
    t2 = time.perf_counter()
    reqs = [GenerationRequest([{"role": "user", "content": "<image>" + args["prompt"]}], [img],
                              SamplingConfig(temperature=0.0, max_new_tokens=args["max_new_tokens"]))
            for img in args["images"]]
    gens = eng.generate(reqs)
    t3 = time.perf_counter()
    eng.close()
    t4 = time.perf_counter()
    print("RESULT " + json.dumps({"import": t1 - t0, "start": t2 - t1, "generate": t3 - t2, "close": t4 - t3,
                                  "tokens": [g.token_ids for g in gens]}), flush=True)
if __name__ == "__main__":
    main()
"""


def side(name: str, opts: dict) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(opts)], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        sys.exit(f"{name}: failed (exit {proc.returncode})\n{proc.stderr[-4000:]}")
    res = json.loads(line[len("RESULT "):])
    res["wall"] = wall
    print(f"{name:34s} wall {wall:6.1f} s  (import {res['import']:.1f}, engine start {res['start']:.1f}, "
          f"generate {res['generate']:.1f}, close {res['close']:.1f})", flush=True)
    return res


def main() -> None:
    from PIL import Image

    from emocaliber_rl.tiny_model import build_tiny_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=64)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        build_tiny_model(model, text_layers=4)
        images = []
        for i in range(args.prompts):
            path = Path(tmp) / f"{i}.png"
            Image.new("RGB", (112, 112), ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256)).save(path)
            images.append(str(path))
        common = {"model": str(model), "images": images, "max_new_tokens": args.max_new_tokens,
                  "prompt": "Which emotion does this image evoke? Answer in <answer></answer>."}
        base = side("before: bf16, 2 spawned processes", {**common, "dtype": "bfloat16", "in_process": False})
        new = side("now: fp32, in process", {**common, "dtype": "auto", "in_process": True})
    same = sum(a == b for a, b in zip(base["tokens"], new["tokens"]))
    print(f"speed-up of the whole run: {base['wall'] / new['wall']:.2f}x; generation alone "
          f"{base['generate'] / new['generate']:.2f}x; same greedy tokens on {same} of {args.prompts} prompts")


if __name__ == "__main__":
    main()
