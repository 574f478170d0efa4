"""Stage 1 end to end on CPU: our export -> recipes/stage1_sft.sh -> veRL's real SFT trainer
(torchrun, FSDP2, gloo) with 1 and 2 processes, on the tiny Qwen2.5-VL."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, STEPS, changed_tensors, draw_image

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def stage1_parquet(tmp_path_factory) -> Path:
    from emocaliber_rl.data.exports import export_sft_stage1
    from emocaliber_rl.data.records import Record

    root = tmp_path_factory.mktemp("stage1-data")
    records = []
    subtasks = ["FI-8", "EmoSet-8", "WebEmo-7", "FI-2"]
    for i in range(16):
        subtask = subtasks[i % len(subtasks)]
        image = root / f"img{i}.png"
        draw_image(i).save(image)
        from emocaliber_rl.taxonomy import get_subtask

        label = get_subtask(subtask).labels[i % len(get_subtask(subtask).labels)]
        records.append(Record.make(f"r{i}", subtask, image, label, steps=STEPS))
    result = export_sft_stage1(records, root / "train.parquet", pixel_bounds=None)
    assert result.rows == 16 and not result.report.problems
    return root / "train.parquet"


def _train(nproc: int, model: Path, data: Path, out: Path, **env_extra: str) -> dict[str, list[float]]:
    """Four steps of the stage-1 recipe; veRL's per-step loss and gradient norm."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **env_extra}
    env.pop("VERL_USE_EXTERNAL_MODULES", None)
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "recipes" / "stage1_sft.sh"), "--profile", "cpu", "--nproc", str(nproc),
         "--model", str(model), "--train", str(data), "--out", str(out), "--steps", "4",
         "data.train_batch_size=4", "data.micro_batch_size_per_gpu=2", "optim.lr=1e-3",
         "trainer.balance_batch=False"],
        check=False, capture_output=True, text=True, timeout=600, env=env, cwd=out.parent,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "froze" in log  # EMOCALIBER_FREEZE_MODULES=visual took effect
    return {key: [float(x) for x in re.findall(rf"step:\d+ - .*?train/{key}:([0-9.e+-]+)", log)]
            for key in ("loss", "grad_norm")}


@pytest.fixture(scope="module")
def train_run(tiny_model_dir, stage1_parquet, tmp_path_factory):
    """One recipe run per (processes, ``EMOCALIBER_LOSS_ROWS``), shared by the tests below."""
    runs: dict[tuple[int, str], tuple[Path, dict[str, list[float]]]] = {}

    def run(nproc: int, loss_rows: str = "1") -> tuple[Path, dict[str, list[float]]]:
        if (nproc, loss_rows) not in runs:
            out = tmp_path_factory.mktemp(f"stage1-n{nproc}-rows{loss_rows}") / "ckpt"
            runs[nproc, loss_rows] = (out, _train(nproc, tiny_model_dir, stage1_parquet, out,
                                                  EMOCALIBER_LOSS_ROWS=loss_rows))
        return runs[nproc, loss_rows]
    return run


def test_stage1_loss_rows_plugin_matches_verl(train_run):
    """The CPU plug-in that runs the output layer on the loss rows only (verl_plugins/loss_rows.py)
    gives veRL's own loss and gradient norm at every step: same data, seed and weights, the plug-in
    off (``EMOCALIBER_LOSS_ROWS=0``, veRL's forward over every token) against on. A wrong row
    (off by one in the mask roll, a prompt row, a lost image) changes the loss in the first step."""
    _, fast = train_run(1, "1")
    _, verl = train_run(1, "0")
    assert len(fast["loss"]) == len(verl["loss"]) == 4, (fast, verl)
    assert fast["loss"] == pytest.approx(verl["loss"], rel=1e-5, abs=1e-6)
    assert fast["grad_norm"] == pytest.approx(verl["grad_norm"], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("nproc", [1, 2])
def test_stage1_sft_trains_language_model_only(nproc, tiny_model_dir, train_run, make_image):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out, metrics = train_run(nproc)
    losses = metrics["loss"]
    assert len(losses) == 4, losses
    assert losses[-1] < losses[0], losses

    hf_dir = out / "final_hf"
    vision_changed, language_changed, language = changed_tensors(tiny_model_dir, hf_dir)
    assert not vision_changed, f"vision tower changed: {vision_changed}"
    assert language_changed == language, f"unchanged LM tensors: {set(language) - set(language_changed)}"

    processor = AutoProcessor.from_pretrained(hf_dir)
    model = AutoModelForImageTextToText.from_pretrained(hf_dir)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which emotion?"}]}]
    prompt = processor.apply_chat_template(msgs, add_generation_prompt=True)
    inputs = processor(text=[prompt], images=[make_image(99)], return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 6 or generated[0, -1].item() in (
        processor.tokenizer.eos_token_id,
    )
