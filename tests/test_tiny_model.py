"""The offline tiny Qwen2.5-VL: loadable by transformers' Auto classes, generates with an image,
has Qwen2.5-VL's ids and rows, and the same seed gives the same bytes (the tokenizer itself is
checked against published tokenizations in test_qwen_tokenizer.py)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
import torch

from tests.conftest import draw_image


def test_loads_and_generates_with_an_image(tiny_model_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which emotion?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert "<|vision_start|><|image_pad|><|vision_end|>" in prompt
    inputs = processor(text=[prompt], images=[draw_image(1, (112, 84))], return_tensors="pt")
    # 112x84 -> a 8x6 grid of 14-px patches -> 2x2 merge -> 12 image tokens
    assert inputs["image_grid_thw"].tolist() == [[1, 6, 8]]
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"] == image_id).sum()) == 12
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_config_matches_qwen25_vl_ids_and_rows(tiny_model_dir):
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(tiny_model_dir)
    text = cfg.text_config
    # Qwen2.5-VL-7B-Instruct's config.json: 151,936 rows, eos <|im_end|>, image/video/vision ids.
    assert text.vocab_size == 151936
    assert (text.eos_token_id, text.pad_token_id) == (151645, 151643)
    assert (cfg.image_token_id, cfg.video_token_id, cfg.vision_start_token_id, cfg.vision_end_token_id) == (
        151655, 151656, 151652, 151653)
    assert text.tie_word_embeddings and text.head_dim == 64


def _digest(path) -> dict[str, str]:
    return {
        name: hashlib.sha256((path / name).read_bytes()).hexdigest()
        for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json")
    }


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path):
    from emocaliber_rl.tiny_model import build_tiny_model

    a = _digest(build_tiny_model(tmp_path / "a", seed=3))
    b = _digest(build_tiny_model(tmp_path / "b", seed=3))
    c = _digest(build_tiny_model(tmp_path / "c", seed=4))
    assert a == b
    assert a["model.safetensors"] != c["model.safetensors"]


def test_cli_builds_the_model(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "emocaliber_rl.cli", "tiny-model", str(tmp_path / "m"), "--dtype", "bfloat16"],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "m" / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}


@pytest.mark.parametrize("command", [["--help"], ["tiny-model", "--help"], ["setup-cpu", "--help"]])
def test_help_explains(command):
    proc = subprocess.run([sys.executable, "-m", "emocaliber_rl.cli", *command],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "usage:" in proc.stdout
