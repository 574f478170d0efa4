"""One teaching step of the tests' colour model (``tests/colour_world.py``: 8 prompts with their
images and responses, the response tokens' cross-entropy, backward, AdamW) with the output layer's
151,936 rows against with the rows of the tokens taught only, the others held at zero
(``emocaliber_rl/response_loss.py``), in one process, same weights and batch.

    .venv/bin/python benchmarks/bench_teaching_vocabulary.py [--steps 10] [--threads 1]

One thread by default, as in the suite (``tests/conftest.py`` sets ``OMP_NUM_THREADS=1``). Both
variants step a model whose other rows are already zero, so their losses are the same number
(printed, before the first step) and the times differ only in the rows projected. Prints the median seconds
a step of each and the speed-up.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args()

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    # this checkout's tests/ (the colour world), ahead of the top-level `tests` package a
    # dependency installs into site-packages
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    from emocaliber_rl.response_loss import keep_vocabulary, response_loss
    from emocaliber_rl.tiny_model import build_tiny_model
    from tests import colour_world as world
    from tests.glibc_heap import big_blocks_kept

    torch.set_num_threads(args.threads)
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_model(Path(tmp), seed=0)
        proc = AutoProcessor.from_pretrained(tmp)
        model = AutoModelForImageTextToText.from_pretrained(tmp, dtype=torch.float32)
    proc.tokenizer.padding_side = "right"
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which emotion does it evoke?"}]}]
    prompt = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    labels = [world.CLASSES[i % len(world.CLASSES)] for i in range(8)]
    texts = [prompt + world.response(label, rng) + "<|im_end|>" for label in labels]
    images = [[world.draw(label, rng)] for label in labels]
    n_prompt = len(proc(text=[prompt], images=images[0], return_tensors="pt")["input_ids"][0])
    enc = proc(text=texts, images=images, return_tensors="pt", padding="max_length", max_length=n_prompt + 96)
    vocab = keep_vocabulary(model, enc["input_ids"].flatten().tolist())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0)
    times: dict[str, list[float]] = {"all 151,936 rows": [], f"{len(vocab)} kept rows": []}
    with torch.no_grad():  # before any step: the same weights for both
        first = {name: response_loss(model, enc, [n_prompt] * len(texts), rows).item()
                 for name, rows in zip(times, (None, vocab))}
    with big_blocks_kept():
        for _ in range(args.steps + 1):  # the first of each is a warm-up, not timed
            for (name, samples), rows in zip(times.items(), (None, vocab)):
                t0 = time.perf_counter()
                loss = response_loss(model, enc, [n_prompt] * len(texts), rows)
                loss.backward()
                opt.step()
                opt.zero_grad()
                samples.append(time.perf_counter() - t0)
    base = None
    for name, samples in times.items():
        med = statistics.median(samples[1:])
        base = base or med
        print(f"{name:>18}: {med:.3f} s a step (median of {args.steps}), loss before training {first[name]:.6f}, "
              f"speed-up {base / med:.2f}x")


if __name__ == "__main__":
    main()
