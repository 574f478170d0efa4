"""A tiny random-weight Qwen2.5-VL built fully offline (`emocaliber tiny-model OUT_DIR`).

Tests, the CPU demo and the CPU recipes need a model that every real code path accepts
(transformers' Auto classes, veRL's SFT and PPO trainers, vLLM's CPU build) without a download.
This builds one in a few seconds:

* Qwen2.5-VL's real tokenizer (``emocaliber_rl.qwen_tokenizer``): Qwen's 151,643 BPE ranks from the
  ``dashscope==2.0.2`` wheel turned into Qwen2's vocabulary and merges, Qwen2's pre-tokenizer, the
  22 added tokens at their published ids, eos ``<|im_end|>``, pad ``<|endoftext|>`` and Qwen2-VL's
  chat template. The response tags (``<think>``, ``<answer>``, ``<confidence>``, ...) are plain text,
  tokenized as a real Qwen does: BPE merges across tag boundaries (``</answer><confidence>`` is
  ``</ answer >< confidence >``);
* a Qwen2.5-VL config with Qwen2.5-VL's 151,936 embedding rows, tied with the output layer, and
  2 text layers of hidden size 64 (one attention head of head_dim 64: vLLM's CPU attention kernels
  support 64), a 2-block vision tower, and a processor with small pixel bounds so an image costs
  a handful of tokens. The embedding is almost all of its ~10M parameters.

The same seed gives byte-identical files; the tokenizer does not depend on the seed.
"""

from __future__ import annotations

from pathlib import Path

from emocaliber_rl.qwen_tokenizer import QWEN25_VL_ADDED_TOKENS, QWEN25_VL_VOCAB_SIZE, build_qwen_tokenizer

QWEN_SPECIAL_TOKENS: tuple[str, ...] = tuple(t for t, special in QWEN25_VL_ADDED_TOKENS if special)

# Qwen2-VL's chat template (the one shipped with Qwen2.5-VL-7B-Instruct).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# 28x28-pixel patches after 2x2 merging: 4..16 image tokens per image.
MIN_PIXELS = 28 * 28 * 4
MAX_PIXELS = 28 * 28 * 16


def build_tokenizer(seed: int = 0):
    """Qwen2.5-VL's tokenizer with Qwen2-VL's chat template (``seed`` is accepted and unused: the
    vocabulary is Qwen's, not trained)."""
    del seed
    return build_qwen_tokenizer(chat_template=QWEN2_VL_CHAT_TEMPLATE, model_max_length=4096)


def build_config(tokenizer, text_layers: int = 2):
    """A Qwen2.5-VL with ``text_layers`` text layers whose special-token ids match ``tokenizer``
    (Qwen's published ids)."""
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    text_config = {
        # Qwen2.5-VL's row count (151,665 tokens padded up), so ids and shapes match a real checkpoint.
        "vocab_size": QWEN25_VL_VOCAB_SIZE,
        # The 151,936 x hidden embedding dominates size and step time: hidden 64 keeps the model ~10M
        # parameters; one head of head_dim 64 (a head size vLLM's CPU attention kernels support).
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": text_layers,
        # one head: transformers' Qwen2.5-VL text attention takes head_dim = hidden / heads
        "num_attention_heads": 1,
        "num_key_value_heads": 1,
        "head_dim": 64,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [8, 12, 12]},
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision_config = {
        "depth": 2,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_heads": 2,
        "out_hidden_size": 64,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [1],
        "in_channels": 3,
    }
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def build_processor(tokenizer):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    image_processor = Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, size=size)
    video_processor = Qwen2VLVideoProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, size=size)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )


def build_tiny_model(out_dir: str | Path, seed: int = 0, dtype: str = "float32", text_layers: int = 2) -> Path:
    """Write a tiny random Qwen2.5-VL (model, tokenizer, processor) to ``out_dir``.

    ``dtype`` is the stored weight type; float32 keeps CPU tests exact, bfloat16 halves the size.
    ``text_layers`` sizes the language model: the default is the tests' model; the demo's
    known-answer world needs more depth to generate its format unaided (docs/demo-world.md).
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(seed)
    config = build_config(tokenizer, text_layers=text_layers)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(getattr(torch, dtype))
    model.generation_config.eos_token_id = [config.text_config.eos_token_id]
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.save_pretrained(out)
    build_processor(tokenizer).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
