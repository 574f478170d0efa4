"""A tiny model that reads an image signature, for tests that must tell a model that sees the image
from one that does not (not a test module itself).

Four Mikels classes of FI-8 each get one dominant colour (with jitter and pixel noise, so no two
images are byte-identical); a few hundred plain-transformers steps teach the tiny Qwen2.5-VL to
answer in the agreed format with the class of the colour it sees. Chance over the prompt's eight
candidates is 0.125, over the four classes shown 0.25; the taught model is near 1.0, so any path
that loses or scrambles the image (rollout server, weight sync, preprocessing) shows as a gap in
accuracy, not as noise.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

TASK = "FI-8"
COLOURS = {  # RGB centres far apart in every channel combination
    "amusement": (235, 210, 40),
    "anger": (200, 30, 30),
    "contentment": (40, 170, 60),
    "sadness": (40, 60, 200),
}
CLASSES = tuple(COLOURS)
SIZE = (56, 56)  # 4 image tokens after Qwen2.5-VL's 28x28 merge
CONFIDENCE = "0.90"
WORDS = ("light", "colour", "scene", "mood", "tone")


def draw(label: str, rng: random.Random):
    """A 56x56 picture dominated by ``label``'s colour: +-20 jitter per channel, pixel noise 12."""
    import numpy as np
    from PIL import Image

    gen = np.random.default_rng(rng.randrange(2**32))
    base = np.array(COLOURS[label], dtype=np.float64) + gen.uniform(-20, 20, size=3)
    noise = gen.normal(0, 12, size=(SIZE[1], SIZE[0], 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype("uint8"), "RGB")


def label_for(task: str, colour_class: str) -> str:
    """The label of a ``colour_class`` picture in ``task``: the class itself where the task has
    it (FI-8, Abstract-8), else its Mikels polarity (FI-2, WebEmo-2)."""
    from emocaliber_rl.taxonomy import MIKELS_POLARITY, get_subtask

    labels = get_subtask(task).labels
    label = colour_class if colour_class in labels else MIKELS_POLARITY[colour_class]
    assert label in labels, (task, colour_class)
    return label


def records(tmp: Path, per_class: int, seed: int, split: str, task: str = TASK):
    """``per_class`` records of each class, images written under ``tmp`` as PNG."""
    from emocaliber_rl.data.records import Record

    rng = random.Random(seed)
    out = []
    tmp.mkdir(parents=True, exist_ok=True)
    prefix = split if task == TASK else f"{split}-{task}-"
    for i in range(per_class * len(CLASSES)):
        colour = CLASSES[i % len(CLASSES)]
        path = tmp / f"{prefix}{i:04d}.png"
        draw(colour, rng).save(path)
        out.append(Record.make(f"{prefix}{i:04d}", task, path, label_for(task, colour), split=split))
    return out


def response(label: str, rng: random.Random) -> str:
    steps = "".join(f"<{t}>{rng.choice(WORDS)}</{t}>" for t in ("element", "human", "context", "interaction", "analysis"))
    return f"<think>{steps}</think><answer>{label}</answer><confidence>{CONFIDENCE}</confidence>"


def teach(model_dir: Path, parquet: Path, out_dir: Path, *, steps: int = 200, lr: float = 2e-3,
          batch: int = 8, seed: int = 0) -> Path:
    """Fine-tune the tiny model (plain transformers, fp32, every parameter) to answer each RL
    prompt of ``parquet`` with its label in the agreed format; saves an HF checkpoint."""
    import pandas as pd
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from emocaliber_rl.response_loss import keep_vocabulary, response_loss

    from .glibc_heap import big_blocks_kept

    torch.manual_seed(seed)
    rng = random.Random(seed)
    proc = AutoProcessor.from_pretrained(model_dir)
    proc.tokenizer.padding_side = "right"
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    rows = []
    for row in pd.read_parquet(parquet).to_dict("records"):
        messages = []
        for m in row["prompt"]:
            before, sep, after = m["content"].partition("<image>")
            content = m["content"] if not sep else (
                ([{"type": "text", "text": before}] if before else []) + [{"type": "image"}, {"type": "text", "text": after}])
            messages.append({"role": m["role"], "content": content})
        text = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        image = Image.open(io.BytesIO(row["images"][0]["bytes"])).convert("RGB")
        n_prompt = len(proc(text=[text], images=[[image]], return_tensors="pt")["input_ids"][0])
        rows.append((text, image, row["reward_model"]["ground_truth"], n_prompt))
    # every step's batch drawn first: the token ids they hold are the vocabulary the output layer
    # keeps (emocaliber_rl/response_loss.py: the same loss over ~120 rows instead of 151,936)
    batches = []
    for _ in range(steps):
        picked = [rows[rng.randrange(len(rows))] for _ in range(batch)]
        batches.append((picked, [t + response(label, rng) + "<|im_end|>" for t, _, label, _ in picked]))
    used = {proc.tokenizer.pad_token_id}.union(*(ids for _, texts in batches for ids in proc.tokenizer(texts)["input_ids"]))
    vocab = keep_vocabulary(model, used)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    # the thread count the process was given: one in the suite (tests/conftest.py sets
    # OMP_NUM_THREADS=1, as the other xdist worker keeps the second core busy; beside another busy
    # process two threads spin)
    width = max(n for *_, n in rows) + 96
    with big_blocks_kept():  # both passes 118 -> 89 s on one thread (tests/glibc_heap.py)
        for picked, texts in batches:
            enc = proc(text=texts, images=[[im] for _, im, _, _ in picked], return_tensors="pt",
                       padding="max_length", max_length=width)
            response_loss(model, enc, [n for *_, n in picked], vocab).backward()
            opt.step()
            opt.zero_grad()
    model.save_pretrained(out_dir)
    proc.save_pretrained(out_dir)
    return out_dir
