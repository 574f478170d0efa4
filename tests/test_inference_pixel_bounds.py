"""Pixel bounds given to the engines resize images as veRL's training data is resized, so the
number of image tokens a model sees at inference matches training."""

from __future__ import annotations

import argparse

import pytest

from emocaliber_rl.inference.engine import GenerationRequest, prompt_text
from tests.conftest import draw_image


def _image_tokens(tiny_model_dir, bounds) -> int:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    request = GenerationRequest(messages=[{"role": "user", "content": "<image>Which emotion?"}],
                                images=[draw_image(3, (448, 448))])
    text, images = prompt_text(processor, request, bounds)
    inputs = processor(text=[text], images=images, return_tensors="pt")
    return int((inputs["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum())


def test_bounds_set_the_image_token_count(tiny_model_dir):
    assert _image_tokens(tiny_model_dir, None) == 16  # the tiny processor's own max: 28*28*16 pixels
    assert _image_tokens(tiny_model_dir, (3136, 3136)) == 4  # 28*28*4 pixels -> a 2x2 merged grid


def test_cli_bounds():
    from emocaliber_rl.cli.common import pixel_bounds_from_args
    from emocaliber_rl.cli.engine import engine_options

    p = argparse.ArgumentParser(parents=engine_options())
    assert pixel_bounds_from_args(p.parse_args(["--model", "m", "--official-pixels"])) == (200704, 451584)
    # on by default (issue 14): a real photo must not reach Qwen's processor at up to 16,384 tokens
    assert pixel_bounds_from_args(p.parse_args(["--model", "m"])) == (200704, 451584)
    assert pixel_bounds_from_args(p.parse_args(["--model", "m", "--processor-pixels"])) is None
    with pytest.raises(SystemExit):
        pixel_bounds_from_args(p.parse_args(["--model", "m", "--processor-pixels", "--official-pixels"]))
    assert pixel_bounds_from_args(p.parse_args(["--model", "m", "--min-pixels", "10", "--max-pixels", "20"])) == (10, 20)
    with pytest.raises(SystemExit):
        pixel_bounds_from_args(p.parse_args(["--model", "m", "--min-pixels", "10"]))


def test_engines_bound_images_by_default():
    import inspect

    from emocaliber_rl.inference.hf_engine import HFEngine
    from emocaliber_rl.inference.vllm_engine import VLLMEngine

    for cls in (HFEngine, VLLMEngine):
        assert inspect.signature(cls.__init__).parameters["pixel_bounds"].default == (200704, 451584)
