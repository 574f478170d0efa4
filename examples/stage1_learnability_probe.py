"""Can the tiny model learn the demo world's answer? A two-minute probe of stage 1's data.

Trains the demo's tiny Qwen2.5-VL with plain transformers (fp32, every parameter, the vision tower
included) on the demo's stage-1 parquet, and every ``--eval-every`` steps scores the test prompts
teacher-forced: the CoT prefix is given (the world teacher's evidence CoT for that test image,
``emocaliber_rl.world.teacher``), and the answer is the candidate whose first token has the
highest logit. No generation, no veRL, no vLLM: it isolates "does the data teach the answer" from
the trainers, so a setting (learning rate, CoT template, answer-only) can be tried in minutes
instead of a 30-minute demo run. docs/demo-world.md records what it measured.

Needs the demo's first three stages (model, data, cot), e.g.::

    python -c "from pathlib import Path; from emocaliber_rl.demo import Demo; \
from emocaliber_rl.pipeline_runner import run_pipeline; \
run_pipeline(Demo(Path('/tmp/w1')).stages()[:3], Path('/tmp/w1'), echo=print)"
    python examples/stage1_learnability_probe.py --root /tmp/w1 --lr 2e-3 --steps 200 --answer-only
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time
from pathlib import Path
from typing import Any

from emocaliber_rl.world.teacher import teacher_response


def cot_prefix(image: Any, subtask: str) -> str:
    """The world teacher's CoT for ``image``, up to and including the answer's opening tag."""
    response = teacher_response(image, subtask, "")
    return response[: response.index("<answer>") + len("<answer>")]


def chat(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The export's ``<image>``-marked messages in the processor's content-list form."""
    out = []
    for m in messages:
        before, sep, after = m["content"].partition("<image>")
        content = m["content"] if not sep else (
            ([{"type": "text", "text": before}] if before else []) + [{"type": "image"}, {"type": "text", "text": after}])
        out.append({"role": m["role"], "content": content})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="an `emocaliber demo --out` folder past its cot stage")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--answer-only", action="store_true",
                   help="train on '<answer>label</answer>' alone, without the CoT before it")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    import pandas as pd
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from emocaliber_rl.response_loss import response_loss
    from emocaliber_rl.taxonomy import get_subtask

    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    model_dir = a.root / "models" / "base"
    proc = AutoProcessor.from_pretrained(model_dir)
    proc.tokenizer.padding_side = "right"
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)

    def image(row: dict) -> Any:
        return Image.open(io.BytesIO(row["images"][0]["bytes"])).convert("RGB")

    rows = []
    for r in pd.read_parquet(a.root / "data" / "stage1.parquet").to_dict("records"):
        messages = list(r["messages"])
        answer = messages[-1]["content"]
        if a.answer_only:
            answer = answer[answer.index("<answer>"):]
        text = proc.apply_chat_template(chat(messages[:-1]), add_generation_prompt=True, tokenize=False)
        im = image(r)
        n = len(proc(text=[text], images=[[im]], return_tensors="pt")["input_ids"][0])
        rows.append((text + answer + "<|im_end|>", im, n))
    val = [(r["data_source"], proc.apply_chat_template(chat(list(r["prompt"])), add_generation_prompt=True,
                                                        tokenize=False)
            + ("<answer>" if a.answer_only else cot_prefix(image(r), r["data_source"])), image(r),
            r["reward_model"]["ground_truth"])
           for r in pd.read_parquet(a.root / "data" / "stage3_val.parquet").to_dict("records")]

    def first_token(label: str) -> int:
        return proc.tokenizer(label, add_special_tokens=False)["input_ids"][0]

    @torch.no_grad()
    def accuracy() -> dict[str, float]:
        model.eval()
        hits: dict[str, list[bool]] = {}
        for i in range(0, len(val), 16):
            chunk = val[i:i + 16]
            enc = proc(text=[t for _, t, _, _ in chunk], images=[[im] for _, _, im, _ in chunk],
                       return_tensors="pt", padding=True)
            hidden = model.model(**enc).last_hidden_state
            logits = model.lm_head(hidden[torch.arange(len(chunk)), enc["attention_mask"].sum(1) - 1])
            for (task, _, _, truth), row in zip(chunk, logits):
                labels = get_subtask(task).labels
                pred = labels[int(torch.argmax(row[[first_token(lab) for lab in labels]]))]
                hits.setdefault(task, []).append(pred == truth)
        model.train()
        return {k: round(sum(v) / len(v), 3) for k, v in sorted(hits.items())}

    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)
    width = max(len(proc(text=[t], images=[[im]])["input_ids"][0]) for t, im, _ in rows)
    model.train()
    start, losses = time.time(), []
    for step in range(1, a.steps + 1):
        picked = [rows[rng.randrange(len(rows))] for _ in range(a.batch)]
        enc = proc(text=[t for t, _, _ in picked], images=[[im] for _, im, _ in picked], return_tensors="pt",
                   padding="max_length", max_length=width)
        loss = response_loss(model, enc, [n for *_, n in picked])
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
        if step % a.eval_every == 0 or step == a.steps:
            recent = losses[-20:]
            print(f"step {step} ({time.time() - start:.0f} s) loss {sum(recent) / len(recent):.3f} "
                  f"accuracy {json.dumps(accuracy())}", flush=True)


if __name__ == "__main__":
    main()
