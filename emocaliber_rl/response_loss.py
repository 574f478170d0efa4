"""The loss that teaches the tiny model a response in a few CPU steps, outside veRL (the tests' colour
world, examples/stage1_learnability_probe.py)."""

from __future__ import annotations

from typing import Any


def response_loss(model: Any, enc: Any, n_prompt: list[int]) -> Any:
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
