"""emocaliber_rl/response_loss.py: the teaching loss over the kept rows of the output layer equals
the cross-entropy of the whole model's logits (transformers' own forward, every vocabulary row),
in value and gradients, and an optimiser step leaves the zeroed rows at zero."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


def _batch(model_dir: Path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from .conftest import draw_image

    proc = AutoProcessor.from_pretrained(model_dir)
    proc.tokenizer.padding_side = "right"
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which emotion?"}]}]
    prompt = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    texts = [prompt + "<answer>anger</answer><|im_end|>", prompt + "<answer>sadness, surely</answer><|im_end|>"]
    images = [[draw_image(1, (56, 56))], [draw_image(2, (56, 56))]]
    n = len(proc(text=[prompt], images=images[0], return_tensors="pt")["input_ids"][0])
    enc = proc(text=texts, images=images, return_tensors="pt", padding=True)
    return model, enc, n


def _reference(model, enc, n: int):
    """Cross-entropy from transformers' full forward: every position's logits over all rows."""
    logits = model(**enc).logits[:, :-1]
    ids = enc["input_ids"][:, 1:]
    keep = enc["attention_mask"][:, 1:].bool().clone()
    keep[:, : n - 1] = False  # position t - 1 predicts token t: the response starts at n
    return torch.nn.functional.cross_entropy(logits[keep].float(), ids[keep])


def test_kept_rows_give_the_full_vocabularys_loss_and_gradients(tiny_model_dir: Path) -> None:
    from emocaliber_rl.response_loss import keep_vocabulary, response_loss

    model, enc, n = _batch(tiny_model_dir)
    vocab = keep_vocabulary(model, enc["input_ids"].flatten().tolist())
    rows = model.get_output_embeddings().weight.shape[0]
    assert 10 < len(vocab) < 200 and rows == 151_936  # Qwen's vocabulary, a few dozen rows kept
    ref = _reference(model, enc, n)
    ref.backward()
    ref_grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    loss = response_loss(model, enc, [n, n], vocab)
    loss.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    # the rows kept and every other parameter get the full forward's gradients; only the zeroed
    # rows differ (the full softmax pushes them down, they are held at zero here)
    emb = model.get_output_embeddings().weight
    zeroed = torch.ones(rows, dtype=torch.bool)
    zeroed[vocab] = False
    for name, p in model.named_parameters():
        got, want = p.grad, ref_grads[name]
        if p is emb:
            assert torch.count_nonzero(got[zeroed]) == 0
            got, want = got[vocab], want[vocab]
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6, msg=name)

    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    opt.step()
    assert torch.count_nonzero(emb.detach()[zeroed]) == 0
    assert torch.count_nonzero(emb.detach()[vocab]) > 0


def test_a_second_pass_keeps_what_the_first_kept(tiny_model_dir: Path) -> None:
    from emocaliber_rl.response_loss import keep_vocabulary

    model = _batch(tiny_model_dir)[0]
    first = keep_vocabulary(model, [1, 2, 3, 500])
    assert first.tolist() == [1, 2, 3, 500]
    assert keep_vocabulary(model, [7]).tolist() == [1, 2, 3, 7, 500]


def test_a_response_token_outside_the_kept_rows_is_an_error(tiny_model_dir: Path) -> None:
    from emocaliber_rl.response_loss import keep_vocabulary, response_loss

    model, enc, n = _batch(tiny_model_dir)
    ids = enc["input_ids"][:, :n].flatten().tolist()  # the prompts' tokens only
    vocab = keep_vocabulary(model, ids)
    with pytest.raises(ValueError, match="outside the kept vocabulary"):
        response_loss(model, enc, [n, n], vocab)
