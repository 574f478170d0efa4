"""Calibration metrics in veRL's validation logs (ECE, Brier, ROC-AUC, confidence histogram).

veRL 0.9.1 logs, at every validation, the mean of each key the reward function returns, per
``data_source`` (``val-core/...``, ``val-aux/...``), and nothing that needs the joint
distribution of confidence and correctness (its issue 4545 asks for such a hook). This module adds
it without editing veRL: the plug-in (``emocaliber_rl/verl_plugins/__init__.py``) wraps the
trainers' ``_val_metrics_update`` - the method both veRL trainers call at the end of
``_validate`` with the per-sample ``reward_extra_infos_dict`` and ``data_sources`` - through
post-import hooks on ``verl.trainer.ppo.v1.trainer_base`` (``PPOTrainer``, every
``trainer.v1.trainer_mode``) and ``verl.trainer.ppo.ray_trainer`` (``RayPPOTrainer``,
``trainer.use_v1=False``). The returned dict gains the keys below and goes to every tracker
(console, tensorboard, wandb, file) through ``self.logger.log`` like veRL's own metrics.

For each ``data_source`` (the VECBench subtask), each VECBench group of those subtasks
(:func:`emocaliber_rl.taxonomy.group_of`; ``ID_VSA``, ``ID_VER``, ``OOD_VER``, spaces as
underscores) and ``all``::

    val-calib/<name>/ece          10 equal-width bins, last bin closed (evaluation.metrics)
    val-calib/<name>/brier        mean (c - correct)^2
    val-calib/<name>/auc          ROC-AUC of c for "correct"; omitted while undefined (one class)
    val-calib/<name>/mean_conf    mean stated confidence
    val-calib/<name>/accuracy     mean correctness over all samples, confidence or not
    val-calib/<name>/conf_parsed  fraction of samples with a valid confidence
    val-calib/<name>/n            samples; n_conf: samples with a valid confidence
    val-calib/<name>/hist_0.0 .. hist_0.9   counts of valid confidences per 0.1 bin
                                  (hist_0.9 holds [0.9, 1.0]), scalars so every tracker logs them

Per-sample inputs are the reward function's extra info (``reward_fns/emocaliber.py``):
``confidence`` and ``correct`` (the paper's I(e), ``answer_label``, the same reading as stage-2
labelling and evaluation) with ``confidence_valid`` (preset ``paper``), or ``confidence``,
``correctness`` and ``format_score`` (preset ``official``, whose confidence counts only when the
format passed). Samples without a valid confidence leave the calibration metrics (the
``exclude`` policy of ``emocaliber eval score``) and still count for accuracy. A run whose reward
returns no confidence gets no ``val-calib`` keys. ``EMOCALIBER_VAL_CALIBRATION=0`` turns this off.

Training steps, too: veRL's v1 trainer logs the summed reward of each training step
(``critic/score/*``) but not the components the reward function returns. The same hook wraps
``PPOTrainer._compute_metrics`` (v1) to add ``reward_extra/<key>/mean`` for every numeric key of the
reward's extra info (``format``, ``correct``, ``confidence``, ``loglik``, ...; ``confidence`` is
-1 where none was stated, as in veRL's ``val-aux`` means), read from the step's rollouts in
TransferQueue before veRL clears them.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

PREFIX = "val-calib"
TRAIN_PREFIX = "reward_extra"
N_BINS = 10
ENV_VAR = "EMOCALIBER_VAL_CALIBRATION"
_MARK = "_emocaliber_val_calibration"


def _as_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _per_sample(extra: Mapping[str, Sequence[Any]], n: int) -> tuple[list[float], list[float | None]] | None:
    """(correct, confidence or None) per sample, or None when the reward gives no confidence."""
    if "confidence" not in extra:
        return None
    correct_key = "correct" if "correct" in extra else "correctness" if "correctness" in extra else None
    if correct_key is None:
        return None
    columns = {"confidence": extra["confidence"], "correct": extra[correct_key]}
    if "confidence_valid" in extra:
        columns["valid"] = extra["confidence_valid"]
    elif "format_score" in extra:
        columns["valid"] = extra["format_score"]
    if any(len(col) != n for col in columns.values()):
        logger.warning("%s: per-sample reward info and data_sources differ in length; skipped", PREFIX)
        return None
    correct: list[float] = []
    confidence: list[float | None] = []
    for i in range(n):
        y = _as_float(columns["correct"][i])
        c = _as_float(columns["confidence"][i])
        valid = _as_float(columns["valid"][i]) if "valid" in columns else 1.0
        correct.append(1.0 if y is not None and y > 0.5 else 0.0)
        confidence.append(c if (c is not None and valid is not None and valid > 0.5 and 0.0 <= c <= 1.0) else None)
    return correct, confidence


def _summary(correct: list[float], confidence: list[float | None], n_bins: int) -> dict[str, float]:
    import numpy as np

    from emocaliber_rl.evaluation import metrics

    y_all = np.asarray(correct, dtype=np.float64)
    mask = np.array([c is not None for c in confidence], dtype=bool)
    conf = np.array([c for c in confidence if c is not None], dtype=np.float64)
    y = y_all[mask]
    out: dict[str, float] = {
        "n": float(y_all.size),
        "n_conf": float(conf.size),
        "accuracy": float(y_all.mean()) if y_all.size else math.nan,
        "conf_parsed": float(conf.size / y_all.size) if y_all.size else math.nan,
    }
    if conf.size:
        out["ece"] = metrics.expected_calibration_error(conf, y, n_bins)
        out["brier"] = metrics.brier_score(conf, y)
        out["auc"] = metrics.roc_auc(conf, y)
        out["mean_conf"] = metrics.mean_confidence(conf)
    counts = np.bincount(metrics.confidence_bin_index(conf, n_bins), minlength=n_bins) if conf.size else np.zeros(n_bins)
    for j in range(n_bins):
        out[f"hist_{round(j / n_bins, 6):g}" if j else "hist_0.0"] = float(counts[j])
    # trackers cannot plot "undefined": leave such keys out (AUC of a single-class set, ...)
    return {k: v for k, v in out.items() if not math.isnan(v)}


def _group_name(data_source: str) -> str | None:
    from emocaliber_rl.taxonomy import UnknownSubtaskError, group_of

    try:
        return group_of(data_source).replace(" ", "_")
    except UnknownSubtaskError:  # not a VECBench subtask: per-data_source metrics only
        return None


def calibration_metrics(
    data_sources: Sequence[Any],
    reward_extra_infos: Mapping[str, Sequence[Any]],
    n_bins: int = N_BINS,
) -> dict[str, float]:
    """``val-calib/...`` metrics (module docstring) of one validation pass."""
    n = len(data_sources)
    per_sample = _per_sample(reward_extra_infos, n)
    if per_sample is None or n == 0:
        return {}
    correct, confidence = per_sample
    sets: dict[str, list[int]] = {"all": list(range(n))}
    for i, ds in enumerate(data_sources):
        name = str(ds)
        sets.setdefault(name, []).append(i)
        group = _group_name(name)
        if group is not None and group != name:
            sets.setdefault(group, []).append(i)
    out: dict[str, float] = {}
    for name, idx in sets.items():
        stats = _summary([correct[i] for i in idx], [confidence[i] for i in idx], n_bins)
        out.update({f"{PREFIX}/{name}/{key}": value for key, value in stats.items()})
    return out


def _wrap(cls: type) -> None:
    original = cls.__dict__.get("_val_metrics_update")
    if original is None:
        raise AttributeError(f"{cls.__qualname__}._val_metrics_update not found: veRL changed, update {__name__}")
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def _val_metrics_update(self, data_sources, sample_uids, reward_extra_infos_dict, *args, **kwargs):
        metric_dict = original(self, data_sources, sample_uids, reward_extra_infos_dict, *args, **kwargs)
        if os.environ.get(ENV_VAR, "1") != "0":
            metric_dict.update(calibration_metrics(list(data_sources), reward_extra_infos_dict))
        return metric_dict

    setattr(_val_metrics_update, _MARK, True)
    cls._val_metrics_update = _val_metrics_update


def training_reward_metrics(extra_fields: Sequence[Any]) -> dict[str, float]:
    """``reward_extra/<key>/mean`` over samples from their ``extra_fields["reward_extra_info"]``."""
    values: dict[str, list[float]] = {}
    for fields in extra_fields:
        info = fields.get("reward_extra_info", {}) if isinstance(fields, Mapping) else {}
        for key, value in (info or {}).items():
            number = _as_float(value) if not isinstance(value, (str, bytes)) else None
            if number is not None:
                values.setdefault(str(key), []).append(number)
    return {f"{TRAIN_PREFIX}/{key}/mean": sum(v) / len(v) for key, v in values.items() if v}


def _wrap_training_metrics(cls: type) -> None:
    original = cls.__dict__.get("_compute_metrics")
    if original is None:
        raise AttributeError(f"{cls.__qualname__}._compute_metrics not found: veRL changed, update {__name__}")
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def _compute_metrics(self, batch, metrics, *args, **kwargs):
        result = original(self, batch, metrics, *args, **kwargs)
        if os.environ.get(ENV_VAR, "1") != "0":
            try:
                import transfer_queue as tq

                keys = [k for k, tag in zip(batch.keys, batch.tags) if not tag.get("is_padding", False)]
                data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
                column = data["extra_fields"]  # numpy array, NonTensorStack or LinkedList by backend
                items = column.tolist() if hasattr(column, "tolist") else list(column)
                metrics.update(training_reward_metrics(items))
            except Exception as exc:  # noqa: BLE001  (a metrics gap must never stop training)
                logger.warning("%s: reward components of the training step not logged: %r", TRAIN_PREFIX, exc)
        return result

    setattr(_compute_metrics, _MARK, True)
    cls._compute_metrics = _compute_metrics


def install_v1(module: ModuleType) -> None:
    """Hook for ``verl.trainer.ppo.v1.trainer_base`` (the default ``trainer.use_v1=True``)."""
    _wrap(module.PPOTrainer)
    _wrap_training_metrics(module.PPOTrainer)


def install_legacy(module: ModuleType) -> None:
    """Hook for ``verl.trainer.ppo.ray_trainer`` (``trainer.use_v1=False``)."""
    _wrap(module.RayPPOTrainer)
