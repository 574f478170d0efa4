"""Pixel bounds written by the exports reach veRL's datasets (through qwen-vl-utils) and set how
many image tokens an image costs."""

from __future__ import annotations

import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from emocaliber_rl.data.exports import OFFICIAL_PIXEL_BOUNDS, check_pixel_bounds, export_sft_stage1
from emocaliber_rl.data.records import Record, write_manifest
from tests.conftest import draw_image

STEPS = {"element": "a", "human": "b", "context": "c", "interaction": "d", "analysis": "e"}


def _records(tmp_path):
    image = tmp_path / "big.png"
    draw_image(7, (448, 448)).save(image)  # 200,704 pixels = 256 patches of 28x28
    return [Record.make("r0", "FI-8", image, "awe", steps=STEPS)]


def _image_tokens(parquet, tiny_model_dir) -> int:
    from transformers import AutoProcessor
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    config = OmegaConf.create({"max_length": 2048, "truncation": "error", "pad_mode": "no_padding",
                               "messages_key": "messages", "image_key": "images"})
    ds = MultiTurnSFTDataset(parquet_files=str(parquet), tokenizer=processor.tokenizer, config=config,
                             processor=processor)
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    return int((ds[0]["input_ids"] == image_id).sum())


def test_bounds_reach_verl_dataset(tmp_path, tiny_model_dir):
    records = _records(tmp_path)
    plain = export_sft_stage1(records, tmp_path / "plain.parquet").path
    # 28*28*4 pixels -> a 2x2 grid of merged patches -> 4 image tokens
    bounded = export_sft_stage1(records, tmp_path / "bounded.parquet", pixel_bounds=(3136, 3136)).path
    cell = pq.read_table(bounded).to_pylist()[0]["images"][0]
    assert (cell["min_pixels"], cell["max_pixels"]) == (3136, 3136)
    assert "min_pixels" not in pq.read_table(plain).to_pylist()[0]["images"][0]
    # the tiny processor's own max is 28*28*16 -> 16 tokens for this large image
    assert _image_tokens(plain, tiny_model_dir) == 16
    assert _image_tokens(bounded, tiny_model_dir) == 4


def test_bad_bounds_rejected():
    assert check_pixel_bounds(OFFICIAL_PIXEL_BOUNDS) == (200704, 451584)
    with pytest.raises(ValueError, match="min_pixels <= max_pixels"):
        check_pixel_bounds((10, 5))


def test_cli_official_pixels(tmp_path):
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, _records(tmp_path))
    out = tmp_path / "o.parquet"
    proc = subprocess.run([sys.executable, "-m", "emocaliber_rl.cli", "export", "sft1", str(manifest), "-o", str(out),
                           "--official-pixels"], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    cell = pq.read_table(out).to_pylist()[0]["images"][0]
    assert (cell["min_pixels"], cell["max_pixels"]) == OFFICIAL_PIXEL_BOUNDS
    proc = subprocess.run([sys.executable, "-m", "emocaliber_rl.cli", "export", "sft1", str(manifest), "-o", str(out),
                           "--min-pixels", "100"], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "both --min-pixels and --max-pixels" in proc.stderr
