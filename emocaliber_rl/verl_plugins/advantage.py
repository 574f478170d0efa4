"""``grpo_no_std``: GRPO's group-relative advantage without the std division (paper section 3.3).

``A_{i,g} = R(y_{i,g}) - mean_g R(y_{i,g})`` over the responses sharing a prompt (veRL's ``uid``),
broadcast over the response tokens. Select it with ``algorithm.adv_estimator=grpo_no_std``; it
gives the same numbers as veRL's built-in ``algorithm.adv_estimator=grpo
algorithm.norm_adv_by_std_in_grpo=False`` (tests/test_advantage.py checks both trainer paths),
under a name that cannot silently fall back to the std-normalised default when the flag is
forgotten, which is what drives verbalised confidence to extremes (paper section 4.8, Table 9).

Conventions copied from veRL's ``compute_grpo_outcome_advantage`` so the two agree exactly:
a response's reward is the sum of its token-level rewards; a prompt with a single response gets
mean 0, i.e. ``A = R``. ``algorithm.norm_adv_by_std_in_grpo`` is ignored (there is no std here).

On the v1 trainer (``trainer.use_v1=True``) ``compute_advantage_for_multi_trajectories`` keeps
its "final output of each session" logic for the name ``grpo`` only and passes every other name,
this one included, to ``compute_advantage`` over all rows. Single-turn rollouts (EmoCaliber's)
have one output per session, so both agree; multi-turn agent loops would not.

The plug-in package (``emocaliber_rl/verl_plugins/__init__.py``) calls :func:`register` once
``verl.trainer.ppo.core_algos`` is imported (at once, if it already is), so that the switch
``EMOCALIBER_VERL_PLUGINS=0`` covers it too; importing veRL's algorithms from inside
``import verl`` (where veRL loads its plug-ins) would cost seconds in every process and risk an
import cycle. Other code may call :func:`register` directly; repeating it is harmless.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

NAME = "grpo_no_std"
_MARK = "__emocaliber_adv_estimator__"


def compute_grpo_no_std_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray | list[Any] | None = None,
    config: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns (equal, as for veRL's GRPO), shape ``(batch, response_length)``.

    ``index`` holds each row's prompt-group id (veRL passes ``non_tensor_batch["uid"]``);
    ``config`` and other keyword arguments veRL passes are accepted and unused.
    """
    import torch

    if index is None:
        raise ValueError(f"{NAME} needs the prompt group ids (non_tensor_batch['uid'])")
    scores = token_level_rewards.sum(dim=-1)
    if len(index) != scores.shape[0]:
        raise ValueError(f"{len(index)} group ids for {scores.shape[0]} responses")
    groups: dict[Any, int] = {}
    ids = torch.tensor([groups.setdefault(uid, len(groups)) for uid in index], dtype=torch.long)
    ids = ids.to(scores.device)
    with torch.no_grad():
        sums = torch.zeros(len(groups), dtype=scores.dtype, device=scores.device).index_add_(0, ids, scores)
        counts = torch.bincount(ids, minlength=len(groups))
        means = torch.where(counts > 1, sums / counts.to(scores.dtype), torch.zeros_like(sums))
        advantages = (scores - means[ids]).unsqueeze(-1) * response_mask
    return advantages, advantages


setattr(compute_grpo_no_std_advantage, _MARK, NAME)


def register(core_algos: ModuleType) -> None:
    """Register :func:`compute_grpo_no_std_advantage` as ``grpo_no_std``; safe to repeat."""
    registry = core_algos.ADV_ESTIMATOR_REGISTRY
    existing = registry.get(NAME)
    if existing is compute_grpo_no_std_advantage:
        return
    if existing is not None and getattr(existing, _MARK, None) == NAME:
        # An earlier copy of this module (importlib.reload, or this file loaded by path under
        # another module name) registered its own function object; veRL's register_adv_est would
        # reject the new one as a conflict. Anything else under this name is a real conflict and
        # still raises below.
        del registry[NAME]
    core_algos.register_adv_est(NAME)(compute_grpo_no_std_advantage)

