"""One forward and backward of the tiny Qwen2.5-VL on Qwen's vocabulary: the output layer over
every packed token (veRL 0.9.1's FSDP engine) against over the rows the loss reads only, first
through their logits matrix and then tile by tile without it (``verl_plugins/linear_logprobs.py``,
what the CPU plug-in ``verl_plugins/loss_rows.py`` runs in fp32), in one process, same weights and
tokens.

    .venv/bin/python benchmarks/bench_loss_rows.py [--tokens 1500] [--rows 400] [--repeats 3]
    .venv/bin/python benchmarks/bench_loss_rows.py --tokens 1690 --rows 428   # a stage-3 micro-batch

The defaults are one demo stage-1 micro-batch (8 samples of ~190 tokens, ~50 of each the
response); ``--tokens 1690 --rows 428`` is one demo stage-3 micro-batch (8 responses, as the
plug-in's log line in the stage-3 worker log counts them). Prints the median seconds of each and the speed-ups against the
first; the losses agree to float rounding (printed too).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from emocaliber_rl.tiny_model import build_tiny_model
    from emocaliber_rl.verl_plugins.cpu_logprobs import blockwise_logprobs
    from emocaliber_rl.verl_plugins.linear_logprobs import linear_logprobs

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=1500)
    p.add_argument("--rows", type=int, default=400, help="tokens under the loss mask")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_model(Path(tmp), text_layers=4)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp, dtype=torch.float32)
    torch.manual_seed(0)
    ids = torch.randint(0, 150_000, (1, args.tokens))
    labels = torch.roll(ids, -1, 1)[0]
    rows = torch.arange(args.tokens - args.rows, args.tokens)

    def lp(logits, lab):
        return blockwise_logprobs(logits, lab, None)

    def all_rows() -> float:
        return -lp(model(input_ids=ids).logits[0], labels)[rows].sum()

    def loss_rows() -> float:
        head = model.get_output_embeddings()
        handle = head.register_forward_pre_hook(lambda _m, a: (a[0][:, rows], *a[1:]))
        try:
            logits = model(input_ids=ids).logits[0]
        finally:
            handle.remove()
        return -lp(logits, labels[rows]).sum()

    def loss_rows_tiled() -> float:
        head = model.get_output_embeddings()
        handle = head.register_forward_pre_hook(lambda _m, a: (a[0][:, rows], *a[1:]))
        head.forward = lambda hidden: linear_logprobs(hidden[0], head.weight, labels[rows])
        try:
            logp, _ = model(input_ids=ids).logits
        finally:
            handle.remove()
            del head.forward
        return -logp.sum()

    variants = (("all rows", all_rows), ("loss rows", loss_rows), ("loss rows, tiled", loss_rows_tiled))
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    losses = {}
    for _ in range(args.repeats):
        for name, fn in variants:
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            loss = fn()
            loss.backward()
            times[name].append(time.perf_counter() - t0)
            losses[name] = float(loss.detach())
    base = statistics.median(times["all rows"])
    for name, ts in times.items():
        print(f"{name:>21}: {statistics.median(ts):.2f} s median of {args.repeats} (forward + backward, "
              f"{args.tokens} tokens, loss {losses[name]:.6f}); {base / statistics.median(ts):.1f}x all rows",
              flush=True)
    print(f"tiled against the logits matrix: "
          f"{statistics.median(times['loss rows']) / statistics.median(times['loss rows, tiled']):.2f}x "
          f"({args.rows} of {args.tokens} rows)")

if __name__ == "__main__":
    main()
