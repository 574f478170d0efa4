"""Pixel bounds written by the exports reach veRL's datasets (through qwen-vl-utils) and set how
many image tokens an image costs."""

from __future__ import annotations

import json
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
    plain = export_sft_stage1(records, tmp_path / "plain.parquet", pixel_bounds=None).path
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


# --- bounds on by default; overlong rows reported (issue 14) ---------------------------------

PHOTO = (2000, 1500)
# qwen-vl-utils' smart_resize by hand (factor 28): bounded, 3e6 px > 451,584 -> beta = 2.5775,
# 1500/beta = 581.96 -> 560, 2000/beta = 775.9 -> 756: 20 x 27 = 540 tokens; unbounded (Qwen's
# processor allows 12,845,056 px): round(1500/28) = 54, round(2000/28) = 71: 3,834 tokens.
PHOTO_TOKENS_BOUNDED, PHOTO_TOKENS_UNBOUNDED = 540, 3834


def _photo_records(tmp_path):
    photo = tmp_path / "photo.jpg"
    draw_image(11, PHOTO).save(photo, quality=90)
    small = tmp_path / "small.png"
    draw_image(12, (120, 90)).save(small)
    return [Record.make("photo", "FI-8", photo, "awe", steps=STEPS),
            Record.make("small", "FI-8", small, "fear", steps=STEPS)]


@pytest.fixture(scope="module")
def qwen_sized_processor(tmp_path_factory, tiny_model_dir):
    """The tiny model's processor with Qwen2.5-VL-7B-Instruct's own image bounds (its
    preprocessor_config.json: min_pixels 3136, max_pixels 12845056)."""
    from transformers import AutoProcessor

    out = tmp_path_factory.mktemp("qwen-sized")
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    ip = processor.image_processor
    ip.min_pixels, ip.max_pixels = 3136, 12845056
    ip.size = {"shortest_edge": 3136, "longest_edge": 12845056}
    processor.save_pretrained(out)
    return out


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "emocaliber_rl.cli", *args], check=False, capture_output=True,
                          text=True, timeout=300)


def test_photo_export_carries_bounds_without_any_flag(tmp_path, qwen_sized_processor):
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, _photo_records(tmp_path))
    for kind in ("sft1", "rl3"):
        out = tmp_path / f"{kind}.parquet"
        proc = _cli("export", kind, str(manifest), "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        rows = pq.read_table(out).to_pylist()
        assert [r["id"] if kind == "sft1" else r["extra_info"]["id"] for r in rows] == ["photo", "small"]
        for r in rows:
            cell = r["images"][0]
            assert (cell["min_pixels"], cell["max_pixels"]) == OFFICIAL_PIXEL_BOUNDS
    # veRL's SFT dataset with Qwen-sized bounds sees the photo at 540 image tokens, not 3,834
    assert _image_tokens(tmp_path / "sft1.parquet", qwen_sized_processor) == PHOTO_TOKENS_BOUNDED


def test_overlong_rows_are_reported_not_dropped_silently(tmp_path, qwen_sized_processor):
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, _photo_records(tmp_path))
    out = tmp_path / "sft.parquet"
    proc = _cli("export", "sft1", str(manifest), "-o", str(out), "--processor-pixels")
    assert proc.returncode == 3, proc.stderr  # written, the overlong row left out
    assert [r["id"] for r in pq.read_table(out).to_pylist()] == ["small"]
    assert "1 input records not used (overlong: 1)" in proc.stderr
    report = [json.loads(x) for x in (tmp_path / "sft.parquet.report.jsonl").read_text().splitlines()]
    assert [(p["item"], p["kind"]) for p in report] == [("photo", "overlong")]
    assert report[0]["detail"].startswith(f"{PHOTO_TOKENS_UNBOUNDED} image tokens alone")
    assert "max length 2048" in report[0]["detail"]

    # rl3: the prompt limit is 4096, which the photo's 3,834 image tokens alone do not reach; with
    # the tokenizer the whole prompt is counted
    out3 = tmp_path / "rl.parquet"
    proc = _cli("export", "rl3", str(manifest), "-o", str(out3), "--processor-pixels", "--max-length", "3800")
    assert proc.returncode == 3, proc.stderr
    assert [r["extra_info"]["id"] for r in pq.read_table(out3).to_pylist()] == ["small"]


def test_counted_length_is_verl_dataset_length(tmp_path, qwen_sized_processor):
    """With the tokenizer, the export's count is the length veRL's MultiTurnSFTDataset builds."""
    from transformers import AutoProcessor
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    from emocaliber_rl.data.lengths import LengthCheck

    records = _photo_records(tmp_path)
    parquet = export_sft_stage1(records, tmp_path / "all.parquet", pixel_bounds=None, max_length=None).path
    rows = pq.read_table(parquet).to_pylist()
    check = LengthCheck(10**6, str(qwen_sized_processor))
    processor = AutoProcessor.from_pretrained(qwen_sized_processor)
    config = OmegaConf.create({"max_length": 10**6, "truncation": "error", "pad_mode": "no_padding",
                               "messages_key": "messages", "image_key": "images"})
    ds = MultiTurnSFTDataset(parquet_files=str(parquet), tokenizer=processor.tokenizer, config=config,
                             processor=processor)
    for i, row in enumerate(rows):
        counted = check.tokens(row["messages"], row["images"][0]["bytes"], None, add_generation_prompt=False)
        assert counted == len(ds[i]["input_ids"]), row["id"]
    # the CLI with --tokenizer and a limit between the two rows' lengths keeps exactly the short one
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, records)
    limit = len(ds[1]["input_ids"])
    proc = _cli("export", "sft1", str(manifest), "-o", str(tmp_path / "cut.parquet"), "--processor-pixels",
                "--tokenizer", str(qwen_sized_processor), "--max-length", str(limit))
    assert proc.returncode == 3, proc.stderr  # the longer row left out
    assert [r["id"] for r in pq.read_table(tmp_path / "cut.parquet").to_pylist()] == ["small"]
    assert f"{len(ds[0]['input_ids'])} tokens > max length {limit}" in proc.stderr
