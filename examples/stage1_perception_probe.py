"""Does stage 1 teach the tiny model to see? Teacher-forced colour reading on the test images.

Trains the demo's tiny Qwen2.5-VL (or a wider one: --hidden/--heads/--layers/--vis-hidden/--vis-depth)
with plain transformers on a demo's stage-1 parquet, as examples/stage1_learnability_probe.py does,
and every --eval-every steps scores three things per subtask on the test prompts, teacher-forced
(argmax over the candidates' first tokens, no generation):

* c1: the colour word right after ``<think><element>`` (the top-left cell's hue, read from pixels);
* maj: the colour word after ``<interaction>`` given the true element/context steps (the majority hue);
* ans: the answer given the world teacher's whole evidence CoT (text -> label).

With --steps 0 --init MODEL it scores a trained checkpoint (e.g. a demo's scaffold) without training.
docs/demo-world.md records what it measured. Needs a demo folder past its cot stage (see the other
probe's docstring), e.g.::

    python examples/stage1_perception_probe.py --root /tmp/w1 --steps 0 --init /tmp/w1/checkpoints/stage1/final_hf
"""
from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from stage1_learnability_probe import chat, cot_prefix

from emocaliber_rl.world.scenes import loop_order
from emocaliber_rl.world.teacher import colour_name, evidence_steps, read_evidence


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="an `emocaliber demo --out` folder past its cot stage")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--hidden", type=int, default=0, help="text hidden size of a fresh model (0: the demo's base)")
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--layers", type=int, default=0)
    p.add_argument("--vis-hidden", type=int, default=0)
    p.add_argument("--vis-depth", type=int, default=0)
    p.add_argument("--untie", action="store_true")
    p.add_argument("--init", type=Path, default=None, help="start from this checkpoint (HF folder)")
    p.add_argument("--train", type=Path, default=None, help="stage-1 parquet (default ROOT/data/stage1.parquet)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    import pandas as pd
    import torch
    from PIL import Image
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from emocaliber_rl.response_loss import response_loss
    from emocaliber_rl.taxonomy import get_subtask
    torch.manual_seed(a.seed); rng = random.Random(a.seed)
    model_dir = a.root / "models" / "base"
    proc = AutoProcessor.from_pretrained(model_dir); proc.tokenizer.padding_side = "right"
    cfg = AutoConfig.from_pretrained(model_dir)
    if a.hidden:
        tc = cfg.text_config
        tc.hidden_size = a.hidden; tc.intermediate_size = 2 * a.hidden
        tc.num_attention_heads = a.heads; tc.num_key_value_heads = a.heads; tc.head_dim = a.hidden // a.heads
        hd = a.hidden // a.heads
        tc.rope_parameters = dict(tc.rope_parameters); tc.rope_parameters["mrope_section"] = [hd // 8, (hd // 2 - hd // 8) // 2, hd // 2 - hd // 8 - (hd // 2 - hd // 8) // 2]
        cfg.vision_config.out_hidden_size = a.hidden
    if a.layers:
        cfg.text_config.num_hidden_layers = a.layers
    if a.vis_hidden:
        cfg.vision_config.hidden_size = a.vis_hidden; cfg.vision_config.intermediate_size = 2 * a.vis_hidden
    if a.vis_depth:
        cfg.vision_config.depth = a.vis_depth; cfg.vision_config.fullatt_block_indexes = [a.vis_depth - 1]
    if a.untie:
        cfg.tie_word_embeddings = False; cfg.text_config.tie_word_embeddings = False
    if a.hidden or a.layers or a.vis_hidden or a.vis_depth or a.untie:
        model = AutoModelForImageTextToText.from_config(cfg, dtype=torch.float32)
    else:
        model = AutoModelForImageTextToText.from_pretrained(a.init or model_dir, dtype=torch.float32)
    print("params", sum(p.numel() for p in model.parameters()), "text", cfg.text_config.hidden_size, cfg.text_config.num_hidden_layers, flush=True)

    def image(row: dict) -> Any:
        return Image.open(io.BytesIO(row["images"][0]["bytes"])).convert("RGB")

    rows = []
    for r in pd.read_parquet(a.train or (a.root / "data" / "stage1.parquet")).to_dict("records"):
        messages = list(r["messages"]); answer = messages[-1]["content"]
        text = proc.apply_chat_template(chat(messages[:-1]), add_generation_prompt=True, tokenize=False)
        im = image(r)
        n = len(proc(text=[text], images=[[im]], return_tensors="pt")["input_ids"][0])
        rows.append((text + answer + "<|im_end|>", im, n))
    print("rows", len(rows), flush=True)
    val = []
    for r in pd.read_parquet(a.root / "data" / "stage3_val.parquet").to_dict("records"):
        task = r["data_source"]; im = image(r)
        prompt = proc.apply_chat_template(chat(list(r["prompt"])), add_generation_prompt=True, tokenize=False)
        ev = read_evidence(im, task); steps = evidence_steps(ev)
        loop = ev.loop
        names = [colour_name(loop, lab) for lab in loop_order(loop)]
        maj = None
        if len(ev.counts) > 1 and ev.counts[ev.ranked[0]] != ev.counts[ev.ranked[1]] or len(ev.counts) == 1:
            maj = colour_name(loop, ev.ranked[0])
        inter_prefix = prompt + f"<think><element>{steps['element']}</element><human>{steps['human']}</human><context>{steps['context']}</context><interaction>"
        val.append({"task": task, "im": im, "truth": r["reward_model"]["ground_truth"], "names": names,
                        "c1": (prompt + "<think><element>", colour_name(loop, ev.first)),
                        "maj": (inter_prefix, maj), "ans": (prompt + cot_prefix(im, task), None)})

    tok_cache = {}
    def first_token(s: str) -> int:
        if s not in tok_cache:
            tok_cache[s] = proc.tokenizer(s, add_special_tokens=False)["input_ids"][0]
        return tok_cache[s]

    @torch.no_grad()
    def score(key: str) -> dict[str, float]:
        model.eval(); hits: dict[str, list[bool]] = {}
        items = [v for v in val if key == "ans" or v[key][1] is not None]
        for i in range(0, len(items), 16):
            chunk = items[i:i + 16]
            enc = proc(text=[v[key][0] for v in chunk], images=[[v["im"]] for v in chunk], return_tensors="pt", padding=True)
            hidden = model.model(**enc).last_hidden_state
            logits = model.lm_head(hidden[torch.arange(len(chunk)), enc["attention_mask"].sum(1) - 1])
            for v, row in zip(chunk, logits):
                if key == "ans":
                    cands = get_subtask(v["task"]).labels; truth = v["truth"]
                else:
                    cands = v["names"]; truth = v[key][1]
                pred = cands[int(torch.argmax(row[[first_token(c) for c in cands]]))]
                hits.setdefault(v["task"], []).append(pred == truth)
        model.train()
        return {k: round(sum(x) / len(x), 2) for k, x in sorted(hits.items())}

    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)
    width = max(len(proc(text=[t], images=[[im]])["input_ids"][0]) for t, im, _ in rows)
    model.train(); start, losses = time.time(), []
    if a.steps == 0:
        for key in ("c1", "maj", "ans"):
            print(f"  {key} {json.dumps(score(key))}", flush=True)
    for step in range(1, a.steps + 1):
        picked = [rows[rng.randrange(len(rows))] for _ in range(a.batch)]
        enc = proc(text=[t for t, _, _ in picked], images=[[im] for _, im, _ in picked], return_tensors="pt",
                   padding="max_length", max_length=width)
        loss = response_loss(model, enc, [n for *_, n in picked])
        loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); opt.zero_grad()
        losses.append(loss.item())
        if step % a.eval_every == 0 or step == a.steps:
            recent = losses[-20:]
            print(f"step {step} ({time.time() - start:.0f} s) loss {sum(recent) / len(recent):.3f}", flush=True)
            for key in ("c1", "maj", "ans"):
                print(f"  {key} {json.dumps(score(key))}", flush=True)


if __name__ == "__main__":
    main()
