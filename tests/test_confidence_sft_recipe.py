"""Stage 2 end to end on CPU: a stage-2 parquet -> recipes/stage2_sft.sh -> veRL's real SFT trainer
(torchrun, FSDP2, gloo) with ConfidenceOnlySFTDataset, on the tiny Qwen2.5-VL.

The proof that the loss covers only the confidence: veRL's step-1 loss (computed by veRL on the
initial weights, before any update) equals the mean negative log-likelihood of exactly the
confidence value tokens, computed here independently with transformers on the same model and
rows. The mean over whole assistant turns (veRL's stock mask) is a different number; the test checks
the two are far enough apart for the comparison to tell them apart.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import REPO_ROOT, STEPS, changed_tensors, draw_image, png_bytes

pytestmark = pytest.mark.slow

# (subtask, answer, confidence)
ROWS = [("FI-8", "amusement", 0.83), ("FI-2", "positive", 1.0), ("EmoSet-8", "sadness", 0.05),
        ("WebEmo-7", "joy", 0.5)]
N_STEPS = 2


@pytest.fixture(scope="module")
def stage2_parquet(tmp_path_factory) -> Path:
    """The stage-2 SFT schema (stage 1's, assistant = response + <confidence>0.xx</confidence>)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from emocaliber_rl.data.exports import prompt_messages, sft_schema
    from emocaliber_rl.prompts import format_response

    root = tmp_path_factory.mktemp("stage2-data")
    rows = []
    for i, (subtask, answer, conf) in enumerate(ROWS):
        messages = prompt_messages(subtask, ask_confidence=True)
        messages.append({"role": "assistant", "content": format_response(STEPS, answer, conf)})
        rows.append({"messages": messages, "images": [{"bytes": png_bytes(draw_image(i)), "path": None}],
                     "id": f"s2-{i}", "subtask": subtask, "label": answer})
    path = root / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=sft_schema()), path)
    return path


def _independent_losses(model_dir: Path, parquet: Path) -> dict[str, Any]:
    """Mean NLL of the initial model over several candidate loss masks, and the batch's tokens.

    Uses only transformers: the processor's chat template over the whole conversation with the
    images, a plain fp32 forward pass of the HF model, and the token pieces around the confidence
    listed by hand. Nothing from the dataset class or veRL. Masks: ``value`` (Eq. 3,
    the default), with the close tag, with the open tag (``><`` included: it holds its ``<``), with
    ``<|im_end|>``, and ``turn`` (veRL's stock mask: the whole assistant turn).
    """
    import io

    import pandas as pd
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    tok = processor.tokenizer
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32,
                                                        attn_implementation="sdpa").eval()
    im_start, im_end = tok.convert_tokens_to_ids("<|im_start|>"), tok.convert_tokens_to_ids("<|im_end|>")
    gen_prompt = tok.encode("<|im_start|>assistant\n", add_special_tokens=False)
    nlls: dict[str, list[torch.Tensor]] = {"value": [], "value+close": [], "open+value": [], "open+value+close": [],
                                          "open+value+close+eot": [], "turn": []}
    seq_tokens = 0
    for row in pd.read_parquet(parquet).to_dict("records"):
        msgs = []
        for m in row["messages"]:
            if m["role"] == "user":
                text = m["content"].replace("<image>", "")
                msgs.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]})
            else:
                msgs.append({"role": m["role"], "content": [{"type": "text", "text": m["content"]}]})
        image = Image.open(io.BytesIO(row["images"][0]["bytes"])).convert("RGB")
        prompt = processor.apply_chat_template(msgs, add_generation_prompt=False, tokenize=False)
        inputs = processor(text=[prompt], images=[image], return_tensors="pt")
        ids = inputs["input_ids"][0]
        seq_tokens += ids.numel()
        with torch.no_grad():
            logp = torch.log_softmax(model(**inputs).logits[0].float(), dim=-1)
        # nll[t - 1] is the loss of token t (predicted at position t - 1)
        nll = -logp[:-1].gather(1, ids[1:, None])[:, 0]

        # Qwen's BPE: "</answer><confidence>0.83</confidence><|im_end|>" is
        # "</ answer >< confidence > 0 . 8 3 </ confidence > <|im_end|>"; "><" holds the open tag's "<".
        eot = int((ids == im_end).nonzero()[-1])
        value = re.findall(r"<confidence>(.*?)</confidence>", row["messages"][-1]["content"])[-1]
        close = eot - 3
        start = close - len(value)  # one token per character: digits and "." are never merged
        pieces = [tok.decode([int(t)]) for t in ids[start - 3 : eot + 1]]
        assert pieces == ["><", "confidence", ">", *value, "</", "confidence", ">", "<|im_end|>"], pieces
        body = int((ids == im_start).nonzero()[-1]) + len(gen_prompt)
        for name, (lo, hi) in {"value": (start, close), "value+close": (start, eot),
                               "open+value": (start - 3, close), "open+value+close": (start - 3, eot),
                               "open+value+close+eot": (start - 3, eot + 1),
                               "turn": (body, ids.numel())}.items():
            nlls[name] += [nll[t - 1] for t in range(lo, hi)]
    out: dict[str, Any] = {name: float(torch.stack(v).mean()) for name, v in nlls.items()}
    out["n_value"] = len(nlls["value"])
    out["seq_tokens"] = seq_tokens
    return out


def _train(model: Path, data: Path, out: Path, *extra: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("VERL_USE_EXTERNAL_MODULES", None)
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "recipes" / "stage2_sft.sh"), "--profile", "cpu",
         "--model", str(model), "--train", str(data), "--out", str(out), "--steps", str(N_STEPS),
         f"data.train_batch_size={len(ROWS)}", "data.micro_batch_size_per_gpu=2", "optim.lr=1e-3",
         f"trainer.total_epochs={N_STEPS}", "trainer.balance_batch=False", *extra],
        check=False, capture_output=True, text=True, timeout=600, env=env, cwd=out.parent,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    return log


def _metric(log: str, name: str) -> list[float]:
    return [float(x) for x in re.findall(rf"step:\d+ - .*?{re.escape(name)}:([0-9.]+)", log)]


def test_stage2_sft_trains_on_confidence_tokens_only(tiny_model_dir, stage2_parquet, tmp_path):
    """The recipe's default mask: the encapsulated confidence and the stop. The other masks are the
    dataset's alone (tests/test_confidence_sft_dataset.py builds each one, value-only included, and
    checks its tokens); that the recipe's ``data.confidence_mask.*`` keys reach the config veRL
    hands the dataset is checked on veRL's composed config (tests/test_recipe_presets.py). One run
    here proves veRL's trainer takes the dataset's mask as its loss mask, whichever mask that is."""
    target = "open+value+close+eot"
    out = tmp_path / "ckpt"
    log = _train(tiny_model_dir, stage2_parquet, out)
    assert "froze" in log  # EMOCALIBER_FREEZE_MODULES=visual took effect

    losses = _metric(log, "train/loss")
    seq_tokens = _metric(log, "train/global_tokens")
    assert len(losses) == N_STEPS, losses
    ref = _independent_losses(tiny_model_dir, stage2_parquet)
    # 4 value tokens per row: "0.83", "1.00", "0.05", "0.50"
    assert ref["n_value"] == 4 * len(ROWS)
    # every step sees the whole 4-row parquet (train/global_tokens counts all input tokens, not loss tokens)
    assert seq_tokens == [ref["seq_tokens"]] * N_STEPS
    # step 1 is computed on the initial weights: veRL's loss is the mean NLL of exactly this mask
    assert losses[0] == pytest.approx(ref[target], abs=1e-4), (losses, ref)
    # ... and no other candidate mask comes within 10x that tolerance, so the match is decisive
    others = {k: ref[k] for k in ("value", "value+close", "open+value", "open+value+close", "open+value+close+eot",
                                  "turn") if k != target}
    assert all(abs(v - ref[target]) > 1e-3 for v in others.values()), ref
    assert losses[1] < losses[0], losses

    vision_changed, language_changed, _ = changed_tensors(tiny_model_dir, out / "final_hf")
    assert not vision_changed, f"vision tower changed: {vision_changed}"
    assert language_changed, "language model unchanged"


def test_stage2_sft_rejects_rows_without_confidence(tiny_model_dir, tmp_path):
    """The recipe fails before training and names the row that has no confidence."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from emocaliber_rl.data.exports import prompt_messages, sft_schema
    from emocaliber_rl.prompts import format_response

    rows = []
    for i, conf in enumerate([0.7, None]):
        messages = prompt_messages("FI-8", ask_confidence=True)
        messages.append({"role": "assistant", "content": format_response(STEPS, "awe", conf)})
        rows.append({"messages": messages, "images": [{"bytes": png_bytes(draw_image(i)), "path": None}],
                     "id": f"bad-{i}", "subtask": "FI-8", "label": "awe"})
    data = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=sft_schema()), data)
    out = tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("VERL_USE_EXTERNAL_MODULES", None)
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "recipes" / "stage2_sft.sh"), "--profile", "cpu", "--model", str(tiny_model_dir),
         "--train", str(data), "--out", str(out), "--steps", "1", "data.train_batch_size=2",
         "data.micro_batch_size_per_gpu=2"],
        check=False, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "1 of 2 rows" in log and "row 1 (id 'bad-1'): the last assistant message has no <confidence>" in log, \
        log[-3000:]
    assert not re.search(r"step:\d+ - ", log)
    assert not (out / "final_hf").exists()


def test_stage2_help_explains_every_option():
    proc = subprocess.run(["bash", str(REPO_ROOT / "recipes" / "stage2_sft.sh"), "--help"],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    text = proc.stdout
    for opt in ("--model", "--train", "--val", "--out", "--profile", "--nproc", "--steps", "--help",
                "include_open_tag", "include_close_tag", "locate", "lr 4e-6", "vision tower", "Eq. 3"):
        assert opt in text, opt
