"""Throughput of ``reward_fns/emocaliber.py::compute_score`` against a per-sample regex reward.

The baseline implements the official release's semantics the way its ``cus_reward.py`` does:
one ``re.search(r"<x>(.*?)</x>", text, re.DOTALL)`` per block and per reasoning step. Both run on
the same responses in one process; the script prints samples/s and the ratio.

* ``normal``: 100,000 varied responses (well-formed, broken tags, missing blocks, bad
  confidences, long and short reasoning), scored with the default ``paper`` preset and with
  ``preset="official"``; the official preset must agree with the baseline on every response.
* ``degenerate``: hundreds of KB to 1 MB of repeated tags, where the lazy ``(.*?)`` restarts at
  every opening tag and the baseline goes quadratic; ``compute_score`` stays linear.

    .venv/bin/python benchmarks/bench_reward.py            # full run
    .venv/bin/python benchmarks/bench_reward.py --quick    # 10,000 responses, smaller degenerate sizes
"""

from __future__ import annotations

import argparse
import math
import random
import re
import string
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from reward_fns.emocaliber import STEP_TAGS, compute_score

_BLOCK_RES = {
    name: re.compile(rf"<{name}>(.*?)</{name}>", re.DOTALL) for name in ("think", "answer", "confidence", *STEP_TAGS)
}
_FAIL = {"score": -5, "format_score": 0, "confidence_score": -5, "correctness": 0, "brier_score": -1, "confidence": 1}


def regex_official_score(solution_str: str, ground_truth: str) -> dict[str, float]:
    """The release's reward semantics, written the straightforward regex way (the baseline)."""
    think = _BLOCK_RES["think"].search(solution_str)
    answer = _BLOCK_RES["answer"].search(solution_str)
    conf = _BLOCK_RES["confidence"].search(solution_str)
    if not (think and answer and conf):
        return dict(_FAIL)
    if not all(_BLOCK_RES[step].search(think.group(1)) for step in STEP_TAGS):
        return dict(_FAIL)
    words = answer.group(1).strip().translate(str.maketrans("", "", string.punctuation)).lower().split()
    i = int(len(words) == 1 and words[0] == ground_truth.lower())
    try:
        c = float(conf.group(1).strip())
    except ValueError:
        return dict(_FAIL)
    if not 0 < c < 1:
        return dict(_FAIL)
    conf_score = 2 * (i * math.log(c) + (1 - i) * math.log(1 - c))
    return {
        "score": 1 + conf_score + i,
        "format_score": 1,
        "confidence_score": conf_score,
        "correctness": i,
        "brier_score": -((c - i) ** 2),
        "confidence": c,
    }


LABELS = ("amusement", "anger", "awe", "contentment", "disgust", "excitement", "fear", "sadness")
WORDS = ["the", "a", "light", "dark", "crowd", "smiling", "child", "street", "sky", "warm", "cold", "scene", "evokes", "calm", "tense", "people"]


def varied_responses(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (response, ground truth) pairs: mostly well-formed, a quarter broken in some way."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        steps = "".join(
            f"<{t}>{' '.join(rng.choices(WORDS, k=rng.randint(5, 60)))}</{t}>" for t in STEP_TAGS
        )
        label = rng.choice(LABELS)
        answer = rng.choice([label, label.capitalize() + ".", rng.choice(LABELS), f"{label} or awe"])
        conf = rng.choice([f"{rng.randint(0, 100) / 100:.2f}", f"{rng.randint(0, 100)}%", "1.0", "high", ".5"])
        text = f"<think>{steps}</think>\n<answer>{answer}</answer>\n<confidence>{conf}</confidence>"
        kind = rng.random()
        if kind < 0.08:
            text = text.replace("<human>", "")
        elif kind < 0.16:
            text = text.replace("<confidence>", "")
        elif kind < 0.22:
            text = text + text[: rng.randint(0, len(text))]
        elif kind < 0.25:
            text = " ".join(rng.choices(WORDS, k=40))
        out.append((text, rng.choice(LABELS)))
    return out


def degenerate_responses(size: int) -> dict[str, str]:
    """Adversarial outputs of about ``size`` characters (a model stuck repeating tags)."""
    unit_open = "<think>"
    steps = "".join(f"<{t}>x</{t}>" for t in STEP_TAGS)
    return {
        "repeated <think>": unit_open * (size // len(unit_open)),
        "repeated <think><element>": "<think><element>" * (size // 16),
        "repeated <answer>": "<think>" + steps + "</think>" + "<answer>" * (size // 8),
        "repeated <confidence>": "<think>" + steps + "</think><answer>awe</answer>" + "<confidence>" * (size // 12),
        # '<' and '>' everywhere but no tag: the reward's slowest path (16 bounded finds)
        "huge step content '<b>'": "<think><element>" + "a<b>" * (size // 4) + "</element>",
    }


def fi8_extra_info() -> dict:
    """extra_info as the stage-3 export writes it for FI-8 (aliases: a struct of every alias)."""
    from emocaliber_rl.data.exports import alias_keys
    from emocaliber_rl.taxonomy import aliases_for

    aliases = aliases_for("FI-8")
    return {"candidates": list(LABELS), "aliases": {k: aliases.get(k) for k in alias_keys()}}


def _rate(fn, items) -> tuple[float, list]:
    start = time.perf_counter()
    out = [fn(text, gt) for text, gt in items]
    return len(items) / (time.perf_counter() - start), out


def _best_time(fn, text: str, repeat: int = 3) -> float:
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn(text, "awe")
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="normal responses (default 100000)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32_000, 128_000, 1_000_000],
                        help="degenerate response sizes in characters (default 32000 128000 1000000)")
    # The baseline needs ~10 s per 128 KB pattern and grows 16x per 4x size: 1 MB would take minutes.
    parser.add_argument("--baseline-max", type=int, default=128_000,
                        help="largest degenerate size the quadratic baseline is run on (default 128000)")
    parser.add_argument("--quick", action="store_true", help="10,000 responses; sizes 16000 64000 1000000")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.sizes, args.baseline_max = 10_000, [16_000, 64_000, 1_000_000], 64_000

    items = varied_responses(args.n)
    print(f"normal: {args.n} responses, mean {sum(len(t) for t, _ in items) / len(items):.0f} chars")
    base_rate, base_out = _rate(regex_official_score, items)
    off_rate, off_out = _rate(lambda t, g: compute_score("FI-8", t, g, None, preset="official"), items)
    paper_rate, _ = _rate(lambda t, g: compute_score("FI-8", t, g), items)
    info = fi8_extra_info()
    info_rate, _ = _rate(lambda t, g: compute_score("FI-8", t, g, info), items)
    mismatches = sum(a != b for a, b in zip(base_out, off_out))
    print(f"  regex baseline (official semantics) {base_rate:>10,.0f} samples/s")
    print(f"  compute_score preset=official       {off_rate:>10,.0f} samples/s   ratio {off_rate / base_rate:.2f}x"
          f"   (disagreements with baseline: {mismatches})")
    print(f"  compute_score preset=paper          {paper_rate:>10,.0f} samples/s   ratio {paper_rate / base_rate:.2f}x")
    print(f"    + extra_info aliases, candidates  {info_rate:>10,.0f} samples/s   ratio {info_rate / base_rate:.2f}x")

    print("degenerate (best of 3, milliseconds per response):")
    print(f"  {'pattern':<28}{'size':>10}{'regex':>12}{'official':>10}{'paper':>10}{'regex/paper':>13}")
    for size in args.sizes:
        for name, text in degenerate_responses(size).items():
            t_off = _best_time(lambda s, g: compute_score("FI-8", s, g, None, preset="official"), text)
            t_paper = _best_time(lambda s, g: compute_score("FI-8", s, g), text)
            if size <= args.baseline_max:
                t_base = _best_time(regex_official_score, text, repeat=1)
                base, ratio = f"{t_base * 1e3:12.1f}", f"{t_base / t_paper:12.0f}x"
            else:
                base, ratio = f"{'(skipped)':>12}", f"{'':>13}"
            print(f"  {name:<28}{len(text):>10,}{base}{t_off * 1e3:10.2f}{t_paper * 1e3:10.2f}{ratio}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
