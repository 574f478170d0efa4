"""The loss that teaches the tiny model a response in a few CPU steps, outside veRL (the tests' colour
world and scaffold, examples/stage1_learnability_probe.py).

With Qwen's 151,936-row vocabulary the output layer is nearly all of a tiny model's step: its
matrix products and the log-softmax over every row. A teaching run touches a few hundred token ids,
so ``keep_vocabulary`` sets every other row of the output layer to zero, and ``response_loss(...,
vocab=...)`` then computes the same cross-entropy from the kept rows alone: each zeroed row's logit
is exactly 0, so the full softmax's normaliser is the kept rows' sum plus one ``exp(0)`` per zeroed
row. The zeroed rows get no gradient (no logit of theirs is computed), so an optimiser leaves them
at zero and the identity holds at every step: the model trained is the full-vocabulary model with
those rows held at zero, and its saved checkpoint keeps the whole vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def keep_vocabulary(model: Any, used_ids: Iterable[int]) -> Any:
    """Zero the output-layer rows of every token id outside ``used_ids`` (with tied embeddings
    the input rows too: such a token, never in the teaching text, reads as a zero vector) and
    return the kept ids, sorted, as the ``vocab`` of ``response_loss``. A model taught this way
    before (most of its output layer's rows zero; a fresh one has at most its padding row zero)
    also keeps every nonzero row: a second teaching pass must not wipe what the first trained."""
    import torch

    head = model.get_output_embeddings()
    if getattr(head, "bias", None) is not None:
        raise ValueError("keep_vocabulary: the output layer has a bias, so a zeroed row's logit is not 0")
    used = {int(i) for i in used_ids}
    nonzero = head.weight.detach().ne(0).any(dim=1)
    if nonzero.sum() < len(nonzero) // 2:
        used.update(nonzero.nonzero()[:, 0].tolist())
    vocab = torch.tensor(sorted(used), dtype=torch.long)
    rows = head.weight.shape[0]
    if len(vocab) == 0 or vocab[0] < 0 or vocab[-1] >= rows:
        raise ValueError(f"keep_vocabulary: token ids must lie in [0, {rows}), got {len(vocab)} ids "
                         f"from {vocab.min().item() if len(vocab) else None}")
    dropped = torch.ones(rows, dtype=torch.bool)
    dropped[vocab] = False
    with torch.no_grad():
        head.weight[dropped] = 0.0
    return vocab


def response_loss(model: Any, enc: Any, n_prompt: list[int], vocab: Any = None) -> Any:
    """Cross-entropy over each row's response tokens only (positions ``n_prompt[i]`` on, padding
    excluded), projecting just their hidden states onto the vocabulary: with Qwen's 151,936 rows the
    full logits of every prompt token would be most of a training step's cost. With ``vocab`` (from
    ``keep_vocabulary``) only the kept rows are projected, and the zeroed rows enter the
    normaliser as ``log(n_zeroed)``: the same value and gradients as the full projection."""
    import torch

    ids = enc["input_ids"]
    target = torch.zeros_like(ids, dtype=torch.bool)
    for i, n in enumerate(n_prompt):
        target[i, n:] = True
    target &= enc["attention_mask"].bool()
    # position t - 1 predicts token t
    hidden = model.model(**enc).last_hidden_state[:, :-1][target[:, 1:]]
    labels = ids[:, 1:][target[:, 1:]]
    if vocab is None:
        return torch.nn.functional.cross_entropy(model.lm_head(hidden).float(), labels)
    col = torch.searchsorted(vocab, labels).clamp(max=len(vocab) - 1)
    if not torch.equal(vocab[col], labels):
        missing = sorted(set(labels[vocab[col] != labels].tolist()))
        raise ValueError(f"response_loss: response token ids {missing[:10]} are outside the kept vocabulary")
    weight = model.get_output_embeddings().weight
    logits = (hidden @ weight[vocab].T).float()
    zeroed = weight.shape[0] - len(vocab)
    norm = logits.logsumexp(-1)
    if zeroed:
        norm = torch.logaddexp(norm, torch.tensor(math.log(zeroed)))
    return (norm - logits.gather(1, col[:, None])[:, 0]).mean()
