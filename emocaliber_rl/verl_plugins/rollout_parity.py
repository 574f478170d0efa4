"""A warning in the training log when the rollouts stop behaving like the model they roll out.

veRL logs, every training step, ``training/rollout_probs_diff_max``: the largest difference,
over the step's response tokens, between the probability the rollout engine (vLLM) gave a token
and the probability the trainer's actor gives it. Both run the same weights, so in fp32 the two
agree to ~1e-4; bf16 numerics move single tokens by up to a few tenths. A value near 1 means the
two are different models for some tokens: a weight sync that missed something (see
``recipes/config/stage3_grpo.yaml``, ``load_format``), a different image preprocessing, a
different chat template. GRPO then optimises the actor on samples from another policy and
learns little, while every loss and reward still looks plausible. This hook makes that loud: it
prints one line naming the step and the figures whenever the max exceeds the threshold.

``EMOCALIBER_ROLLOUT_DIFF_WARN`` sets the threshold (default 0.5; ``0`` or a negative value turns
the warning off).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Mapping
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

ENV_VAR = "EMOCALIBER_ROLLOUT_DIFF_WARN"
DEFAULT_THRESHOLD = 0.5
KEY_MAX = "training/rollout_probs_diff_max"
KEY_MEAN = "training/rollout_probs_diff_mean"
_MARK = "_emocaliber_rollout_parity"


def threshold() -> float:
    """The warning threshold from the environment (module docstring)."""
    raw = os.environ.get(ENV_VAR, "")
    try:
        return float(raw) if raw.strip() else DEFAULT_THRESHOLD
    except ValueError:
        logger.warning("%s=%r is not a number; using %s", ENV_VAR, raw, DEFAULT_THRESHOLD)
        return DEFAULT_THRESHOLD


def parity_warning(metrics: Mapping[str, Any], step: int | None, limit: float) -> str | None:
    """The warning line for one step's metrics, or None when the rollouts agree with the actor."""
    if limit <= 0:
        return None
    try:
        worst = float(metrics[KEY_MAX])
    except (KeyError, TypeError, ValueError):
        return None
    if math.isnan(worst) or worst <= limit:
        return None
    mean = metrics.get(KEY_MEAN)
    mean_txt = f", mean {float(mean):.3g}" if isinstance(mean, (int, float)) else ""
    return (f"[emocaliber] WARNING step {step}: {KEY_MAX} = {worst:.3g} > {limit:g}{mean_txt}: the vLLM "
            "rollouts and the actor disagree on some tokens, so GRPO trains on another policy's samples. "
            "Check the rollout's load_format (recipes/config/stage3_grpo.yaml), the weight sync and the "
            f"image preprocessing; {ENV_VAR} sets this threshold.")


def _wrap(cls: type) -> None:
    original = cls.__dict__.get("_compute_metrics")
    if original is None:
        raise AttributeError(f"{cls.__qualname__}._compute_metrics not found: veRL changed, update {__name__}")
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def _compute_metrics(self, batch, metrics, *args, **kwargs):
        result = original(self, batch, metrics, *args, **kwargs)
        line = parity_warning(metrics, kwargs.get("global_steps", getattr(self, "global_steps", None)), threshold())
        if line is not None:
            # print, not only logging: veRL's trainer process logs to stdout, the recipe's log
            print(line, flush=True)
            logger.warning(line)
        return result

    setattr(_compute_metrics, _MARK, True)
    cls._compute_metrics = _compute_metrics


def install_v1(module: ModuleType) -> None:
    """Hook for ``verl.trainer.ppo.v1.trainer_base`` (the default ``trainer.use_v1=True``)."""
    _wrap(module.PPOTrainer)
