"""Token log-probabilities (and entropies) straight from hidden states, a block of rows at a time.

The output layer of the tiny model is Qwen's 151,936-row vocabulary on a 64-wide body, so a
step's cost is that layer's logits: ``rows x 151,936`` floats written, read back for
``logsumexp``, written again as their gradient and read twice more for the two gradient matrix
products (~240 MB a pass for a demo micro-batch's 400 loss rows, far beyond any cache). This
computes the same quantities block by block, so that a block's logits stay in cache between
their uses, and recomputes them in the backward pass instead of keeping them:

    log p(y_i) = h_i . w_{y_i} - logsumexp_v(h_i . w_v)
    H_i        = logsumexp_v(z_iv) - sum_v softmax(z_i)_v z_iv,     z_iv = h_i . w_v

    d/dz_iv of (g_i log p(y_i) + e_i H_i) = g_i ([v = y_i] - p_iv) - e_i p_iv (log p_iv + H_i)

the formulas of veRL's own torch implementation
(``verl.utils.experimental.torch_functional.FusedLinearForPPOFunction``, which always computes the
entropy and does so in 512-row blocks, a single block at these sizes), with the entropy optional and
small blocks. The values equal ``log_softmax(h @ W.T)`` at the labels to float rounding, and so do
the gradients (``tests/test_linear_logprobs.py``); ``benchmarks/bench_loss_rows.py`` times it
against the logits-matrix path. fp32 only: the CPU profiles' dtype.
"""

from __future__ import annotations

ROWS = 32  # measured fastest of 16 / 32 / 64 / 400 on the 2-core machine (docs/measurements.md)


def _linear_logprobs_class():
    import torch

    class LinearLogprobs(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, labels, with_entropy: bool, rows: int):
            ctx.set_materialize_grads(False)
            n = hidden.shape[0]
            lse = hidden.new_empty(n)
            entropy = hidden.new_empty(n) if with_entropy else None
            for s in range(0, n, rows):
                z = hidden[s:s + rows] @ weight.t()
                lse[s:s + rows] = torch.logsumexp(z, dim=-1)
                if with_entropy:
                    p = torch.exp(z - lse[s:s + rows, None])
                    entropy[s:s + rows] = lse[s:s + rows] - (p * z).sum(-1)
            picked = (hidden * weight[labels]).sum(-1)
            ctx.save_for_backward(hidden, weight, labels, lse)
            ctx.rows = rows
            logp = picked - lse
            return (logp, entropy) if with_entropy else (logp, logp.new_zeros(0))

        @staticmethod
        def backward(ctx, dlogp, dentropy):
            hidden, weight, labels, lse = ctx.saved_tensors
            rows = ctx.rows
            n = hidden.shape[0]
            dhidden = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
            dweight = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
            if dentropy is not None and dentropy.numel() == 0:
                dentropy = None
            for s in range(0, n, rows):
                h = hidden[s:s + rows]
                z = h @ weight.t()
                logp_all = z - lse[s:s + rows, None]
                p = torch.exp(logp_all)
                dz = torch.zeros_like(z)
                if dlogp is not None:
                    g = dlogp[s:s + rows]
                    dz -= g[:, None] * p
                    dz[torch.arange(len(h)), labels[s:s + rows]] += g
                if dentropy is not None:
                    e = dentropy[s:s + rows]
                    ent = lse[s:s + rows] - (p * z).sum(-1)
                    dz -= e[:, None] * p * (logp_all + ent[:, None])
                if dhidden is not None:
                    dhidden[s:s + rows] = dz @ weight
                if dweight is not None:
                    dweight.addmm_(dz.t(), h)
            return dhidden, dweight, None, None, None

    return LinearLogprobs


_FN = None


def linear_logprobs(hidden, weight, labels, *, with_entropy: bool = False, rows: int = ROWS):
    """``(log_softmax(hidden @ weight.T)[i, labels[i]], entropy_i or None)`` for 2-D ``hidden``,
    without the ``(n, vocab)`` logits matrix; differentiable in ``hidden`` and ``weight``."""
    global _FN
    if _FN is None:
        _FN = _linear_logprobs_class()
    logp, entropy = _FN.apply(hidden, weight, labels, with_entropy, rows)
    return logp, (entropy if with_entropy else None)
