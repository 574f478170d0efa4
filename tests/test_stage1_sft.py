"""Stage 1 end to end on CPU: our export -> recipes/stage1_sft.sh -> veRL's real SFT trainer
(torchrun, FSDP2, gloo) with 1 and 2 processes, on the tiny Qwen2.5-VL. The runs are the session's
shared stage-1 runs (tests/stage1_shared.py); the two-process one is tests/test_multinode.py's
one-node reference too."""

from __future__ import annotations

import pytest

from tests.conftest import changed_tensors

pytestmark = pytest.mark.slow


def test_stage1_loss_rows_plugin_matches_verl(stage1_train_run):
    """The CPU plug-in that runs the output layer on the loss rows only (verl_plugins/loss_rows.py)
    gives veRL's own loss and gradient norm at every step: same data, seed and weights, the plug-in
    off (``EMOCALIBER_LOSS_ROWS=0``, veRL's forward over every token) against on. A wrong row
    (off by one in the mask roll, a prompt row, a lost image) changes the loss in the first step."""
    _, fast = stage1_train_run(1, "1")
    _, verl = stage1_train_run(1, "0")
    assert len(fast["loss"]) == len(verl["loss"]) == 4, (fast, verl)
    assert fast["loss"] == pytest.approx(verl["loss"], rel=1e-5, abs=1e-6)
    assert fast["grad_norm"] == pytest.approx(verl["grad_norm"], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("nproc", [1, 2])
def test_stage1_sft_trains_language_model_only(nproc, tiny_model_dir, stage1_train_run, make_image):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out, metrics = stage1_train_run(nproc)
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
