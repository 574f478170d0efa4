"""Teaching the tiny model a response in a few CPU steps (not a test module itself)."""

from __future__ import annotations


def response_loss(model, enc, n_prompt: list[int]):
    """Cross-entropy over each row's response tokens only (positions ``n_prompt[i]`` on, padding
    excluded), projecting just their hidden states onto the vocabulary: with Qwen's 151,936 rows the
    full logits of every prompt token would be most of a training step's cost."""
    import torch

    ids = enc["input_ids"]
    target = torch.zeros_like(ids, dtype=torch.bool)
    for i, n in enumerate(n_prompt):
        target[i, n:] = True
    target &= enc["attention_mask"].bool()
    # position t - 1 predicts token t
    hidden = model.model(**enc).last_hidden_state[:, :-1][target[:, 1:]]
    return torch.nn.functional.cross_entropy(model.lm_head(hidden).float(), ids[:, 1:][target[:, 1:]])
