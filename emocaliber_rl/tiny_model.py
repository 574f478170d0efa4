"""A tiny random-weight Qwen2.5-VL built fully offline (`emocaliber tiny-model OUT_DIR`).

Tests, the CPU demo and the CPU recipes need a model that every real code path accepts
(transformers' Auto classes, veRL's SFT and PPO trainers, vLLM's CPU build) without a download.
This builds one in a few seconds:

* a byte-level BPE tokenizer trained on the spot on a synthetic emotion/CoT corpus, with Qwen's
  special tokens at Qwen's relative positions and Qwen2-VL's chat template;
* the response-format tags (``<think>``, ``<answer>``, ``<confidence>``, ...) added as whole,
  *non-special* tokens: a loss mask over a tag's content then never shares a token with the tag,
  and ``decode(..., skip_special_tokens=True)`` (what veRL's reward manager does) keeps them;
* a Qwen2.5-VL config with 2 text layers (hidden 128, head_dim 64: vLLM's CPU attention kernels
  support 64) and a 2-block vision tower, and a processor with small pixel bounds so an image
  costs a handful of tokens.

The same seed gives byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from emocaliber_rl.prompts import RESPONSE_TAGS, SYSTEM_PROMPT
from emocaliber_rl.taxonomy import MIKELS_8, POLARITY_2, UNBIASED_6, WEBEMO_7, WEBEMO_25

QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

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

_CORPUS_WORDS = (
    "the a an of in on at with and or but to from by is are was were be this that these those "
    "image picture photo scene person people man woman child children group crowd face faces "
    "smile smiling tears crying eyes hands body posture gesture light dark bright colors color "
    "red blue green yellow black white warm cold soft sharp sky sea water tree trees flowers "
    "street city room house road mountain night day sunset rain snow fire animal dog cat bird "
    "element elements human subject subjects context background interaction interactions "
    "analysis suggests evokes feeling feelings emotion emotional mood atmosphere tone viewer "
    "calm peaceful tense chaotic gentle strong intense quiet lonely together alone joyful "
    "dramatic ambiguous clear likely overall therefore because while however answer confidence "
    "positive negative sentiment polarity which does evoke choose one from first reason step "
    "think structured salient visual broader these how finally give exactly label state "
    "number between inside correct you are helpful assistant what"
)
_WORDS = _CORPUS_WORDS.split()


def _corpus(seed: int, n_lines: int = 3000) -> list[str]:
    rng = random.Random(seed)
    labels = sorted(set(MIKELS_8 + POLARITY_2 + WEBEMO_7 + WEBEMO_25 + UNBIASED_6))
    lines = [SYSTEM_PROMPT]
    for _ in range(n_lines):
        words = rng.choices(_WORDS, k=rng.randint(6, 18))
        words.insert(rng.randrange(len(words)), rng.choice(labels))
        sentence = " ".join(words).capitalize() + rng.choice([".", ",", "!", "?", ":"])
        lines.append(f"{sentence} {rng.choice(labels)} {rng.randint(0, 100) / 100:.2f}")
    lines.extend(f"{i / 100:.2f} {i}% .{i:02d}" for i in range(101))
    lines.extend(labels)
    return lines


def build_tokenizer(seed: int = 0, vocab_size: int = 2000):
    """Train a byte-level BPE with Qwen2's pre-tokenizer and wrap it as a ``Qwen2Tokenizer``."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    bpe.train_from_iterator(_corpus(seed), trainer=trainer)
    vocab = bpe.get_vocab()
    model_json = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_json["merges"]]

    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=[t for t in QWEN_SPECIAL_TOKENS if t not in ("<|im_end|>", "<|endoftext|>")],
    )
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in RESPONSE_TAGS])
    tok.chat_template = QWEN2_VL_CHAT_TEMPLATE
    tok.model_max_length = 4096
    return tok


def build_config(tokenizer):
    """A 2-layer Qwen2.5-VL whose special-token ids match ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
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
        "out_hidden_size": 128,
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


def build_tiny_model(out_dir: str | Path, seed: int = 0, dtype: str = "float32") -> Path:
    """Write a tiny random Qwen2.5-VL (model, tokenizer, processor) to ``out_dir``.

    ``dtype`` is the stored weight type; float32 keeps CPU tests exact, bfloat16 halves the size.
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(seed)
    config = build_config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(getattr(torch, dtype))
    model.generation_config.eos_token_id = [config.text_config.eos_token_id]
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.save_pretrained(out)
    build_processor(tokenizer).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _run(args: argparse.Namespace) -> int:
    path = build_tiny_model(args.out_dir, seed=args.seed, dtype=args.dtype)
    print(f"tiny Qwen2.5-VL written to {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tiny-model",
        help="build a tiny random-weight Qwen2.5-VL offline (for tests and the CPU demo)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="directory to write the HF model into")
    p.add_argument("--seed", type=int, default=0, help="seed of the corpus, BPE and weights (default 0)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="stored weight dtype (default float32)")
    p.set_defaults(func=_run)
