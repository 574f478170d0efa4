"""Helpers for the inference / stage-2 / eval-run tests (not a test module itself).

``teach_scaffold`` (the session fixture ``taught_scaffold_dir`` of tests/conftest.py) fine-tunes
the tiny random Qwen2.5-VL for about a minute until it answers the Mikels-8 prompt (FI-8,
EmoSet-8, Abstract-8, Artphoto-8 share it) with one fixed, well-formed response naming ``amusement``: a real model with real probabilities that emits parseable
``<answer>`` blocks, which a random model never does. What it learns ignores the image, so its
answer is right for amusement images and wrong for the others: both branches of Eq. 2 get
exercised by real generations. Asked for a confidence (the prompt ``--ask-confidence`` builds)
it also writes ``<confidence>0.80</confidence>``.
"""

from __future__ import annotations

from pathlib import Path

from emocaliber_rl.prompts import SYSTEM_PROMPT, format_response, task_question

STEPS = {"element": "red sky", "human": "a child", "context": "a park",
         "interaction": "the child plays", "analysis": "a light scene"}
TAUGHT_ANSWER = "amusement"
TAUGHT_CONFIDENCE = 0.8
MIKELS_SUBTASKS = ("FI-8", "EmoSet-8", "Abstract-8", "Artphoto-8")


def taught_response(*, confidence: float | None = None) -> str:
    return format_response(STEPS, TAUGHT_ANSWER, confidence)


def one_thread():
    """Context manager: torch on one thread. With 2 cores shared by several jobs, two spinning
    OpenMP threads make a tiny model's step 10x slower than one thread."""
    import contextlib

    import torch

    @contextlib.contextmanager
    def _ctx():
        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(prev)

    return _ctx()


def teach_scaffold(base_dir: Path, out_dir: Path, *, steps: int = 100, lr: float = 4e-3, images: int = 8) -> Path:
    """Copy of ``base_dir`` trained on the two (prompt, response) pairs described above.

    The loss is the response tokens' cross-entropy over the output layer's rows of the two texts'
    tokens, the others held at zero (emocaliber_rl/response_loss.py; 28 s on one thread, 49 s with
    all 151,936 rows). Measured on the seed-0 tiny model with all rows: trained on one image per
    prompt, greedy decoding gives the response for that image but not for others (0 of 12 unseen
    images); with 8 images per prompt in turn, 12 of 12 unseen images give it exactly after 90
    steps (100 here, for margin).
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from emocaliber_rl.response_loss import keep_vocabulary, response_loss
    from tests.conftest import draw_image
    from tests.glibc_heap import big_blocks_kept

    torch.manual_seed(0)
    proc = AutoProcessor.from_pretrained(base_dir)
    model = AutoModelForImageTextToText.from_pretrained(base_dir, dtype=torch.float32)
    # Each prompt with a pool of images of different sizes, one per step in turn: the response must
    # not depend on the image (the tests generate for images never seen here).
    pools = []
    for i, ask in enumerate((False, True)):
        user = task_question("FI-8", ask_confidence=ask, image_token="")
        msgs = [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": user}]}]
        prompt = proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        full = prompt + taught_response(confidence=TAUGHT_CONFIDENCE if ask else None) + "<|im_end|>"
        pool = []
        for j in range(images):
            image = draw_image(100 + 10 * j + i)
            enc = proc(text=[full], images=[image], return_tensors="pt")
            n_prompt = proc(text=[prompt], images=[image], return_tensors="pt")["input_ids"].shape[1]
            pool.append((enc, n_prompt))
        pools.append(pool)
    # the output layer keeps the rows of the two texts' tokens (emocaliber_rl/response_loss.py)
    vocab = keep_vocabulary(model, {i for pool in pools for enc, _ in pool for i in enc["input_ids"][0].tolist()})
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    with one_thread(), big_blocks_kept():  # tests/glibc_heap.py: the embedding gradient's pages kept
        for step in range(steps):
            opt.zero_grad()
            for pool in pools:
                enc, n_prompt = pool[step % len(pool)]
                response_loss(model, enc, [n_prompt], vocab).backward()
            opt.step()
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    proc.save_pretrained(out_dir)
    proc.tokenizer.save_pretrained(out_dir)
    return out_dir
