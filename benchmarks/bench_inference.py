"""Batched inference through the engine interface vs the official release's style.

The official ``inference/inference_vllm.py`` of the authors' release loops over the test set and
calls vLLM's ``LLM.generate`` once per prompt. The baseline here is written in that style (not
imported): for each prompt, build the chat-template string, open the image, one ``generate`` call
with ``SamplingParams(temperature=0.7, max_tokens=N)``. The contender is
``emocaliber_rl.inference``'s ``VLLMEngine.generate`` fed ``--batch-size`` requests at a time
(images opened, chat template applied, per-token log-probabilities returned: it does more work
per sample). Both run on the same vLLM engine (one start), the same model (the tiny Qwen2.5-VL,
built here), the same prompts and images; the engine's start is not timed.

The limit: raw vLLM, ``LLM.generate`` on the same batches with vLLM's defaults (no log-probabilities,
vLLM's own detokenization) and no emocaliber code in the path (the HF processor's chat template, PIL
for the images, the same seeds). The engine's throughput over raw vLLM's is printed as a ratio
(target >= 0.95x): what our request building and per-token probabilities cost.

Optionally (``--hf-prompts K``) the first K prompts also go through HF transformers one
``generate`` per prompt (torch on one thread, its fastest setting on a shared 2-core box), to
compare vLLM-batched with HF-per-prompt per sample.

Run:  .venv/bin/python benchmarks/bench_inference.py [--prompts 256] [--batch-size 256]
          [--max-new-tokens 128] [--repeat 2] [--hf-prompts 32] [--skip-official]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path


def draw(seed: int, path: Path) -> None:
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    w, h = rng.randint(56, 140), rng.randint(56, 140)
    img = Image.new("RGB", (w, h), tuple(rng.randrange(256) for _ in range(3)))
    d = ImageDraw.Draw(img)
    for _ in range(3):
        x, y = rng.randrange(w // 2), rng.randrange(h // 2)
        d.ellipse((x, y, x + w // 3, y + h // 3), fill=tuple(rng.randrange(256) for _ in range(3)))
    img.save(path)


def official_style_vllm(llm, processor, items, max_new_tokens: int) -> tuple[float, int]:
    """One LLM.generate call per prompt, as the release's inference script does."""
    from PIL import Image
    from vllm import SamplingParams

    sp = SamplingParams(temperature=0.7, max_tokens=max_new_tokens, seed=0)
    tokens = 0
    start = time.perf_counter()
    for messages, image_path in items:
        image = Image.open(image_path).convert("RGB")
        prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        out = llm.generate([{"prompt": prompt, "multi_modal_data": {"image": image}}], sp,
                           use_tqdm=False)
        tokens += len(out[0].outputs[0].token_ids)
    return time.perf_counter() - start, tokens


def raw_vllm_batched(llm, processor, items, max_new_tokens: int, batch_size: int) -> tuple[float, int]:
    """vLLM's own batched ``LLM.generate``, as a user of vLLM would call it: the limit."""
    from PIL import Image
    from vllm import SamplingParams

    tokens = 0
    start = time.perf_counter()
    for b in range(0, len(items), batch_size):
        prompts, params = [], []
        for i, (messages, image_path) in enumerate(items[b : b + batch_size], b):
            prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            prompts.append({"prompt": prompt,
                            "multi_modal_data": {"image": Image.open(image_path).convert("RGB")}})
            params.append(SamplingParams(temperature=0.7, max_tokens=max_new_tokens, seed=i))
        outs = llm.generate(prompts, params, use_tqdm=False)
        tokens += sum(len(o.outputs[0].token_ids) for o in outs)
    return time.perf_counter() - start, tokens


def engine_batched(engine, requests, batch_size: int) -> tuple[float, int]:
    tokens = 0
    start = time.perf_counter()
    for i in range(0, len(requests), batch_size):
        tokens += sum(g.num_tokens for g in engine.generate(requests[i : i + batch_size]))
    return time.perf_counter() - start, tokens


def hf_per_prompt(model_dir: Path, requests) -> tuple[float, int]:
    import torch

    from emocaliber_rl.inference import make_engine

    torch.set_num_threads(1)
    engine = make_engine("hf", model_dir, dtype="float32", device="cpu", pixel_bounds=None)
    engine.generate(requests[:1])  # warm-up, not timed
    tokens = 0
    start = time.perf_counter()
    for req in requests:
        tokens += engine.generate([req])[0].num_tokens
    return time.perf_counter() - start, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=256, help="number of prompts (default 256)")
    ap.add_argument("--batch-size", type=int, default=256,
                    help="requests per engine call (default 256: all prompts in one call, as vLLM advises)")
    ap.add_argument("--max-new-tokens", type=int, default=128,
                    help="completion cap (default 128; the random tiny model never stops early)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="alternate the two vLLM measurements this many times and keep each "
                         "side's fastest run (the box is shared; the minimum is the least "
                         "disturbed run) (default 1)")
    ap.add_argument("--skip-official", action="store_true",
                    help="leave out the slow one-generate-per-prompt side (only engine vs raw vLLM)")
    ap.add_argument("--hf-prompts", type=int, default=0,
                    help="also time HF one-generate-per-prompt on the first K prompts (default 0)")
    args = ap.parse_args()

    from emocaliber_rl.inference import GenerationRequest, SamplingConfig, make_engine
    from emocaliber_rl.prompts import SYSTEM_PROMPT, task_question
    from emocaliber_rl.taxonomy import SUBTASKS
    from emocaliber_rl.tiny_model import build_tiny_model

    tmp = Path(tempfile.mkdtemp(prefix="bench_inference_"))
    model_dir = build_tiny_model(tmp / "tiny", seed=0)
    tasks = list(SUBTASKS)
    requests = []
    official_items = []
    for i in range(args.prompts):
        path = tmp / f"{i}.png"
        draw(i, path)
        text = task_question(tasks[i % len(tasks)], image_token="")
        messages = [{"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        official_items.append((messages, path))
        requests.append(GenerationRequest(messages, [path], SamplingConfig(
            temperature=0.7, max_new_tokens=args.max_new_tokens, seed=i)))

    engine = make_engine("vllm", model_dir, dtype="float32", max_model_len=2048, pixel_bounds=None)
    engine.generate(requests[:4])  # warm-up of both paths' kernels, not timed
    offs, engs, raws = [], [], []
    for _ in range(args.repeat):
        if not args.skip_official:
            offs.append(official_style_vllm(engine.llm, engine.processor, official_items, args.max_new_tokens))
        engs.append(engine_batched(engine, requests, args.batch_size))
        raws.append(raw_vllm_batched(engine.llm, engine.processor, official_items, args.max_new_tokens,
                                     args.batch_size))
    engine.close()
    t_off, tok_off = min(offs) if offs else (float("nan"), 0)
    t_eng, tok_eng = min(engs)
    t_raw, tok_raw = min(raws)
    if args.repeat > 1:
        print(f"runs (s): official style {[round(t, 2) for t, _ in offs] or 'skipped'}, "
              f"engine {[round(t, 2) for t, _ in engs]}, raw vLLM {[round(t, 2) for t, _ in raws]}; "
              "the fastest of each is reported")
    n = args.prompts
    print(f"model: tiny Qwen2.5-VL (float32), {n} prompts, max_new_tokens {args.max_new_tokens}, "
          "temperature 0.7")
    if offs:
        print(f"official style (vLLM, one generate per prompt): {t_off:8.2f} s  {n / t_off:8.2f} samples/s"
              f"  {tok_off / t_off:9.1f} tokens/s")
    print(f"engine interface (vLLM, batches of {args.batch_size:3d}):      {t_eng:8.2f} s  "
          f"{n / t_eng:8.2f} samples/s  {tok_eng / t_eng:9.1f} tokens/s")
    print(f"raw vLLM (LLM.generate, batches of {args.batch_size:3d}):     {t_raw:8.2f} s  "
          f"{n / t_raw:8.2f} samples/s  {tok_raw / t_raw:9.1f} tokens/s")
    if offs:
        print(f"speed-up (samples/s): {t_off / t_eng:.1f}x   (tokens/s: "
              f"{(tok_eng / t_eng) / (tok_off / t_off):.1f}x)")
    print(f"engine / raw vLLM (samples/s): {t_raw / t_eng:.3f}x   (tokens/s: "
          f"{(tok_eng / t_eng) / (tok_raw / t_raw):.3f}x; target >= 0.95x)")
    if args.hf_prompts:
        k = min(args.hf_prompts, n)
        t_hf, tok_hf = hf_per_prompt(model_dir, requests[:k])
        print(f"HF transformers, one generate per prompt ({k} prompts): {t_hf:8.2f} s  "
              f"{k / t_hf:8.2f} samples/s  {tok_hf / t_hf:9.1f} tokens/s")
        print(f"vLLM batched vs HF per prompt (samples/s): {(n / t_eng) / (k / t_hf):.1f}x")


if __name__ == "__main__":
    main()
