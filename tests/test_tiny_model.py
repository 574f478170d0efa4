"""The offline tiny Qwen2.5-VL: loadable by transformers' Auto classes, generates with an image,
response tags are whole non-special tokens, and the same seed gives the same bytes."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
import torch

from emocaliber_rl.prompts import RESPONSE_TAGS
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


def test_response_tags_are_single_non_special_tokens(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "<think><element>a dog</element></think><answer>awe</answer><confidence>0.83</confidence>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    pieces = [tok.decode([i]) for i in ids]
    for tag in RESPONSE_TAGS:
        if tag in text:
            assert tag in pieces, f"{tag} split into several tokens: {pieces}"
    # The confidence value's tokens are separate from the tags around it.
    start, end = pieces.index("<confidence>"), pieces.index("</confidence>")
    assert "".join(pieces[start + 1 : end]) == "0.83"
    # veRL's reward manager decodes with skip_special_tokens=True: the tags must survive it.
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.eos_token == "<|im_end|>"


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
