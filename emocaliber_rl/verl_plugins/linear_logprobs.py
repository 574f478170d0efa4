"""Token log-probabilities (and entropies) straight from hidden states, a tile of logits at a time.

The output layer of the tiny model is Qwen's 151,936-row vocabulary on a 64-wide body, so a
step's cost is that layer's logits: ``rows x 151,936`` floats written, read back for
``logsumexp``, written again as their gradient and read twice more for the two gradient matrix
products (~240 MB a pass for a demo micro-batch's 400 loss rows, far beyond any cache). This
computes the same quantities over tiles of ``ROWS`` rows by ``COLS`` vocabulary entries (a few MB,
which stay in cache between their uses), with a running maximum for the ``logsumexp`` as flash
attention keeps one, and recomputes the tiles in the backward pass instead of keeping them:

    log p(y_i) = z_iy - logsumexp_v z_iv,                       z_iv = h_i . w_v
    H_i        = logsumexp_v z_iv - sum_v p_iv z_iv,             p_iv = softmax(z_i)_v

    d/dz_iv of (g_i log p(y_i) + e_i H_i) = g_i ([v = y_i] - p_iv) - e_i p_iv (log p_iv + H_i)

the formulas of veRL's own torch implementation
(``verl.utils.experimental.torch_functional.FusedLinearForPPOFunction``, which tiles rows only, in
blocks of 512, so a demo micro-batch is one full logits matrix), with the entropy optional. The
values equal ``log_softmax(h @ W.T)`` at the labels to float rounding, and so do the gradients
(``tests/test_linear_logprobs.py``); ``benchmarks/bench_loss_rows.py`` times it against the
logits-matrix path. The CPU profiles' fp32 is what it is used for.
"""

from __future__ import annotations

# 400 rows x 151,936 on the 2-core machine, forward + backward (2026-12-04): tiles of 1,024 or 2,048
# vocabulary columns 0.38-0.45 s, 512 or 4,096-8,192 0.41-0.53 s, one logits matrix 0.98-1.34 s
ROWS = 1024
COLS = 2048


def _linear_logprobs_class():
    import torch

    class LinearLogprobs(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, labels, with_entropy: bool, rows: int, cols: int):
            ctx.set_materialize_grads(False)
            n = hidden.shape[0]
            lse = hidden.new_empty(n)
            entropy = hidden.new_empty(n) if with_entropy else hidden.new_zeros(0)
            for r in range(0, n, rows):
                h = hidden[r:r + rows]
                run_max = h.new_full((len(h),), float("-inf"))
                run_sum = h.new_zeros(len(h))
                run_dot = h.new_zeros(len(h)) if with_entropy else None  # sum_v exp(z - max) z
                for c in range(0, weight.shape[0], cols):
                    z = h @ weight[c:c + cols].t()
                    new_max = torch.maximum(run_max, z.amax(-1))
                    rescale = torch.exp(run_max - new_max)
                    e = torch.exp(z - new_max[:, None])
                    run_sum = run_sum * rescale + e.sum(-1)
                    if with_entropy:
                        run_dot = run_dot * rescale + (e * z).sum(-1)
                    run_max = new_max
                lse[r:r + rows] = run_max + torch.log(run_sum)
                if with_entropy:
                    entropy[r:r + rows] = lse[r:r + rows] - run_dot / run_sum
            logp = (hidden * weight[labels]).sum(-1) - lse
            ctx.save_for_backward(hidden, weight, labels, lse, entropy)
            ctx.tiles = (rows, cols)
            return logp, entropy

        @staticmethod
        def backward(ctx, dlogp, dentropy):
            hidden, weight, labels, lse, entropy = ctx.saved_tensors
            rows, cols = ctx.tiles
            if dentropy is not None and dentropy.numel() == 0:  # no entropy was asked for
                dentropy = None
            dhidden = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
            dweight = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
            for r in range(0, hidden.shape[0], rows):
                h = hidden[r:r + rows]
                for c in range(0, weight.shape[0], cols):
                    w = weight[c:c + cols]
                    logp_all = h @ w.t() - lse[r:r + rows, None]
                    p = torch.exp(logp_all)
                    dz = torch.zeros_like(p)
                    if dlogp is not None:  # the -g p part; the label's +g is added below
                        dz -= dlogp[r:r + rows, None] * p
                    if dentropy is not None:
                        dz -= dentropy[r:r + rows, None] * p * (logp_all + entropy[r:r + rows, None])
                    if dhidden is not None:
                        dhidden[r:r + rows].addmm_(dz, w)
                    if dweight is not None:
                        dweight[c:c + cols].addmm_(dz.t(), h)
            if dlogp is not None:  # d z_iy / d(h_i, w_y) of the picked logit
                if dhidden is not None:
                    dhidden += dlogp[:, None] * weight[labels]
                if dweight is not None:
                    dweight.index_add_(0, labels, dlogp[:, None] * hidden)
            return dhidden, dweight, None, None, None, None

    return LinearLogprobs


_FN = None


def linear_logprobs(hidden, weight, labels, *, with_entropy: bool = False, rows: int = ROWS, cols: int = COLS):
    """``(log_softmax(hidden @ weight.T)[i, labels[i]], entropy_i or None)`` for 2-D ``hidden``,
    without the ``(n, vocab)`` logits matrix; differentiable in ``hidden`` and ``weight``."""
    global _FN
    if _FN is None:
        _FN = _linear_logprobs_class()
    logp, entropy = _FN.apply(hidden, weight, labels, with_entropy, rows, cols)
    return logp, (entropy if with_entropy else None)
