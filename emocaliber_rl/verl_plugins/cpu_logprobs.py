"""Token log-probabilities without veRL's per-row loop, for the CPU platform.

Without flash-attn (every CPU run), veRL 0.9.1's ``logprobs_from_logits`` falls back to
``verl.utils.torch_functional.logprobs_from_logits_v2``, which for fp32 logits computes
``logsumexp`` one token at a time (``torch.stack([torch.logsumexp(row) for row in logits])``) to
bound peak memory on large GPU batches. On CPU that loop is the whole training step once the
vocabulary is Qwen's 151,936 rows: 72 s forward and backward for 1,579 tokens, against 3.5 s for
the same math over blocks of rows (measured on the 2-core machine, docs/measurements.md). This
replaces it, in the processes of the CPU platform only, with the same
formula, ``x[label] - logsumexp(x)``, over blocks of ``ROWS`` tokens: identical values and
gradients (``tests/test_verl_plugins.py`` checks them against veRL's own function), peak memory
bounded by one block. bf16/fp16 logits keep veRL's path.
"""

from __future__ import annotations

from types import ModuleType

ROWS = 256
_MARK = "_emocaliber_blockwise"


def blockwise_logprobs(logits, labels, original):
    """``log_softmax(logits)[labels]`` for fp32/fp64 logits, ``ROWS`` rows of logits at a time."""
    import torch

    if logits.dtype not in (torch.float32, torch.float64):
        return original(logits, labels)
    picked = torch.gather(logits, dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)
    flat = logits.reshape(-1, logits.shape[-1])
    lse = torch.cat([torch.logsumexp(block, dim=-1) for block in flat.split(ROWS)]) if flat.shape[0] else flat.new_zeros(0)
    return picked - lse.reshape(picked.shape)


def install(module: ModuleType) -> None:
    """Hook for ``verl.utils.torch_functional``: wrap ``logprobs_from_logits_v2``."""
    original = module.logprobs_from_logits_v2
    if getattr(original, _MARK, False):
        return

    def logprobs_from_logits_v2(logits, labels):
        return blockwise_logprobs(logits, labels, original)

    logprobs_from_logits_v2.__doc__ = original.__doc__
    logprobs_from_logits_v2.__wrapped__ = original
    setattr(logprobs_from_logits_v2, _MARK, True)
    module.logprobs_from_logits_v2 = logprobs_from_logits_v2
