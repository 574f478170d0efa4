"""Token log-probabilities over Qwen's vocabulary: veRL 0.9.1's fp32 fallback (one logsumexp per
token) against the CPU plug-in's blocks of rows, forward and backward, in one process.

    .venv/bin/python benchmarks/bench_logprobs.py [--tokens 1579] [--vocab 151936]

Prints seconds for each and the speed-up; the defaults are one stage-1 micro-batch of the demo on
the tiny model (1,579 tokens) and Qwen2.5-VL's vocabulary size.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    import torch
    import verl.utils.torch_functional as tf

    from emocaliber_rl.verl_plugins.cpu_logprobs import blockwise_logprobs

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=1579)
    p.add_argument("--vocab", type=int, default=151936)
    args = p.parse_args()
    original = getattr(tf.logprobs_from_logits_v2, "__wrapped__", tf.logprobs_from_logits_v2)
    torch.manual_seed(0)
    x = torch.randn(args.tokens, args.vocab, requires_grad=True)
    labels = torch.randint(0, args.vocab, (args.tokens,))
    times = {}
    for name, fn in (("veRL row loop", lambda: original(x, labels)),
                     ("blockwise", lambda: blockwise_logprobs(x, labels, original))):
        t0 = time.perf_counter()
        fn().sum().backward()
        times[name] = time.perf_counter() - t0
        x.grad = None
        print(f"{name:>14}: {times[name]:.2f} s (forward + backward, {args.tokens} x {args.vocab})", flush=True)
    print(f"speed-up: {times['veRL row loop'] / times['blockwise']:.1f}x")


if __name__ == "__main__":
    main()
