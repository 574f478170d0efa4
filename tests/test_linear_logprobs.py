"""The tiled log-probabilities and entropies of ``verl_plugins/linear_logprobs.py`` against
torch's own ``log_softmax`` of the full logits matrix, differentiated by autograd (float64, so that
any difference is the formula, not rounding)."""

from __future__ import annotations

import pytest
import torch

from emocaliber_rl.verl_plugins.linear_logprobs import linear_logprobs


def _reference(hidden, weight, labels):
    logp_all = (hidden @ weight.t()).log_softmax(-1)
    return logp_all.gather(-1, labels[:, None]).squeeze(-1), -(logp_all.exp() * logp_all).sum(-1)


@pytest.mark.parametrize(("rows", "cols"), [(1, 300), (7, 64), (32, 7), (1000, 1000), (45, 1)])
@pytest.mark.parametrize("with_entropy", [False, True])
def test_values_and_gradients_equal_log_softmax(rows: int, cols: int, with_entropy: bool) -> None:
    gen = torch.Generator().manual_seed(rows * cols)
    # 45 rows x 300 entries: the last tile is partial for 7 and 32 rows, 64 and 7 columns
    n, width, vocab = 45, 8, 300
    hidden = torch.randn(n, width, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(vocab, width, dtype=torch.float64, generator=gen, requires_grad=True)
    labels = torch.randint(0, vocab, (n,), generator=gen)
    g, e = torch.randn(n, dtype=torch.float64, generator=gen), torch.randn(n, dtype=torch.float64, generator=gen)

    logp, entropy = linear_logprobs(hidden, weight, labels, with_entropy=with_entropy, rows=rows, cols=cols)
    ref_logp, ref_entropy = _reference(hidden, weight, labels)
    torch.testing.assert_close(logp, ref_logp, rtol=0, atol=1e-12)
    if with_entropy:
        torch.testing.assert_close(entropy, ref_entropy, rtol=0, atol=1e-12)
        ours = torch.autograd.grad((logp * g).sum() + (entropy * e).sum(), (hidden, weight))
        ref = torch.autograd.grad((ref_logp * g).sum() + (ref_entropy * e).sum(), (hidden, weight))
    else:
        assert entropy is None
        ours = torch.autograd.grad((logp * g).sum(), (hidden, weight))
        ref = torch.autograd.grad((ref_logp * g).sum(), (hidden, weight))
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


def test_only_the_entropy_carries_gradient() -> None:
    """A loss of the entropy alone (the log-probabilities unused) differentiates as torch's."""
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(10, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(50, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    labels = torch.randint(0, 50, (10,), generator=gen)
    _, entropy = linear_logprobs(hidden, weight, labels, with_entropy=True, rows=3, cols=16)
    ours = torch.autograd.grad(entropy.sum(), (hidden, weight))
    ref = torch.autograd.grad(_reference(hidden, weight, labels)[1].sum(), (hidden, weight))
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


def test_a_frozen_weight_gets_no_gradient() -> None:
    hidden = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(20, 4, dtype=torch.float64)
    logp, _ = linear_logprobs(hidden, weight, torch.arange(6), rows=4, cols=8)
    (dh,) = torch.autograd.grad(logp.sum(), (hidden,))
    ref_logp, _ = _reference(hidden, weight, torch.arange(6))
    torch.testing.assert_close(dh, torch.autograd.grad(ref_logp.sum(), (hidden,))[0], rtol=0, atol=1e-12)


def test_logits_far_beyond_exp_range_stay_exact() -> None:
    """Logits in the thousands (exp overflows fp32 past ~88): the running maximum keeps every tile's
    exponentials in range, in fp32 as the CPU profiles run."""
    gen = torch.Generator().manual_seed(1)
    hidden = 60 * torch.randn(12, 8, generator=gen)
    weight = 10 * torch.randn(500, 8, generator=gen)
    labels = torch.randint(0, 500, (12,), generator=gen)
    logp, entropy = linear_logprobs(hidden, weight, labels, with_entropy=True, rows=5, cols=64)
    ref_logp, ref_entropy = _reference(hidden.double(), weight.double(), labels)
    assert torch.isfinite(logp).all() and torch.isfinite(entropy).all()
    torch.testing.assert_close(logp.double(), ref_logp, rtol=1e-5, atol=1e-2)
    torch.testing.assert_close(entropy.double(), ref_entropy, rtol=1e-5, atol=1e-3)
