"""The exported parquets load in veRL's own datasets (MultiTurnSFTDataset, RLHFDataset) with the
tiny Qwen2.5-VL's tokenizer and processor: the schema contract with veRL, checked by veRL."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from emocaliber_rl.data.exports import export_rl_stage3, export_sft_stage1
from emocaliber_rl.data.records import Record

STEPS = {"element": "red sky", "human": "a smiling child", "context": "a park",
         "interaction": "the child plays", "analysis": "a light playful scene"}


def _records(tmp: Path) -> list[Record]:
    out = []
    for i, (task, label) in enumerate([("FI-8", "awe"), ("WebEmo-2", "negative"),
                                       ("WebEmo-25", "irritabilty")]):
        p = tmp / f"{i}.png"
        Image.new("RGB", (60 + 10 * i, 50), (40 * i, 100, 200)).save(p)
        out.append(Record.make(str(i), task, p, label, steps=STEPS))
    return out


def _tok_proc(tiny: Path):
    from transformers import AutoProcessor, AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny), AutoProcessor.from_pretrained(tiny)


def test_sft_parquet_loads_in_multiturn_sft_dataset(tmp_path: Path, tiny_model_dir: Path) -> None:
    from omegaconf import OmegaConf
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    res = export_sft_stage1(_records(tmp_path), tmp_path / "sft.parquet", pixel_bounds=None)
    tok, proc = _tok_proc(tiny_model_dir)
    cfg = OmegaConf.create({"max_length": 1024, "truncation": "error", "image_key": "images",
                            "messages_key": "messages", "pad_mode": "no_padding"})
    ds = MultiTurnSFTDataset(str(res.path), tok, cfg, processor=proc)
    assert len(ds) == 3
    for i in range(3):
        item = ds[i]
        ids, mask = item["input_ids"], item["loss_mask"]
        assert int(mask.sum()) > 0
        text = tok.decode(ids[mask.bool()])
        assert "<answer>" in text and "<confidence>" not in text
        assert "multi_modal_inputs" in item and "pixel_values" in item["multi_modal_inputs"]
    assert tok.decode(ds[2]["input_ids"][ds[2]["loss_mask"].bool()]).count("irritability") == 1


def test_rl_parquet_loads_in_rlhf_dataset(tmp_path: Path, tiny_model_dir: Path) -> None:
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    res = export_rl_stage3(_records(tmp_path), tmp_path / "rl.parquet", pixel_bounds=None)
    tok, proc = _tok_proc(tiny_model_dir)
    cfg = OmegaConf.create({"prompt_key": "prompt", "image_key": "images", "max_prompt_length": 1024,
                            "filter_overlong_prompts": True, "return_raw_chat": True,
                            "cache_dir": str(tmp_path / "cache")})
    ds = RLHFDataset(str(res.path), tok, cfg, processor=proc)
    assert len(ds) == 3
    items = [ds[i] for i in range(3)]
    assert [it["data_source"] for it in items] == ["FI-8", "WebEmo-2", "WebEmo-25"]
    assert items[2]["reward_model"]["ground_truth"] == "irritability"
    assert items[2]["extra_info"]["aliases"]["irritabilty"] == "irritability"
    assert items[0]["extra_info"]["aliases"]["irritabilty"] is None
    assert [it["index"] for it in items] == [0, 1, 2]
    batch = collate_fn(items)
    assert len(batch["data_source"]) == 3
