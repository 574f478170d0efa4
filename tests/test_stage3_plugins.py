"""Stage-3 pieces of the veRL plug-in: calibration metrics in validation logs, and the CPU
platform's unpinned FSDP2 offload policy (the reference model of the KL loss needs it on CPU)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from emocaliber_rl.verl_plugins.validation_calibration import calibration_metrics

from .conftest import REPO_ROOT


def test_calibration_metrics_by_hand() -> None:
    # FI-8: c = 0.7 (correct), 0.95 (wrong); WebEmo-2: no valid confidence, wrong; gsm8k: outside VECBench
    m = calibration_metrics(
        ["FI-8", "FI-8", "WebEmo-2", "gsm8k"],
        {"confidence": [0.7, 0.95, -1.0, 1.0], "correct": [1.0, 0.0, 0.0, 1.0],
         "confidence_valid": [1.0, 1.0, 0.0, 1.0], "score": [0, 0, 0, 0]},
    )
    # ECE: bins [0.7, 0.8) and [0.9, 1.0]: (|0.7 - 1| + |0.95 - 0|) / 2
    assert m["val-calib/FI-8/ece"] == pytest.approx((0.3 + 0.95) / 2)
    assert m["val-calib/FI-8/brier"] == pytest.approx((0.3**2 + 0.95**2) / 2)
    assert m["val-calib/FI-8/auc"] == 0.0  # the wrong answer is the more confident one
    assert m["val-calib/FI-8/mean_conf"] == pytest.approx(0.825)
    assert m["val-calib/FI-8/accuracy"] == 0.5
    assert m["val-calib/FI-8/hist_0.7"] == 1 and m["val-calib/FI-8/hist_0.9"] == 1
    assert sum(m[f"val-calib/FI-8/hist_{j / 10:.1f}"] for j in range(10)) == 2
    # groups: FI-8 is ID VER, WebEmo-2 ID VSA; gsm8k has no group
    assert m["val-calib/ID_VER/ece"] == m["val-calib/FI-8/ece"]
    assert "val-calib/ID_VSA/ece" not in m  # no valid confidence: calibration undefined, not 0
    assert m["val-calib/ID_VSA/accuracy"] == 0.0 and m["val-calib/ID_VSA/conf_parsed"] == 0.0
    assert not any(k.startswith("val-calib/OOD_VER/") for k in m)
    # all: 3 valid confidences of 4 samples; c = 1.0 lands in the closed last bin
    assert m["val-calib/all/n"] == 4 and m["val-calib/all/n_conf"] == 3
    assert m["val-calib/all/hist_0.9"] == 2
    assert m["val-calib/all/accuracy"] == 0.5
    assert m["val-calib/all/ece"] == pytest.approx((0.3 + 0.95 + 0.0) / 3)
    assert "val-calib/gsm8k/auc" not in m  # single class: undefined, left out
    assert all(isinstance(v, float) and not math.isnan(v) for v in m.values())


def test_calibration_metrics_official_preset_and_absent_confidence() -> None:
    # the release's keys: correctness, and confidence 1 with format_score 0 when the format fails
    m = calibration_metrics(
        ["Abstract-8"] * 3,
        {"confidence": [0.2, 1, 0.6], "correctness": [0, 0, 1], "format_score": [1, 0, 1]},
    )
    assert m["val-calib/OOD_VER/n_conf"] == 2
    assert m["val-calib/OOD_VER/ece"] == pytest.approx((0.2 + 0.4) / 2)
    assert m["val-calib/OOD_VER/auc"] == 1.0
    # a reward without a confidence: nothing to add
    assert calibration_metrics(["FI-8"], {"score": [1.0], "acc": [1.0]}) == {}


def test_trainers_validation_metrics_carry_calibration() -> None:
    """veRL's own ``_val_metrics_update`` (v1 and legacy trainers) returns the val-calib keys next
    to its val-core/val-aux ones once veRL has loaded the plug-in (entry point)."""
    import verl  # noqa: F401  (loads the plug-in)
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer
    from verl.trainer.ppo.v1 import PPOTrainerSync

    data_sources = ["FI-8", "FI-8", "WebEmo-2"]
    extra = {"reward": [1.5, -0.2, 0.9], "score": [1.5, -0.2, 0.9], "confidence": [0.8, 0.3, 0.9],
             "correct": [1.0, 0.0, 1.0], "confidence_valid": [1.0, 1.0, 1.0]}
    # sample_turns: one entry per sample (v1), one array per batch (legacy)
    for cls, turns in ((PPOTrainerSync, [2, 2, 2]), (RayPPOTrainer, [np.array([2, 2, 2])])):
        trainer = object.__new__(cls)  # the method reads only its arguments
        out = trainer._val_metrics_update(data_sources, ["a", "b", "c"], {k: list(v) for k, v in extra.items()}, turns)
        assert out["val-core/FI-8/reward/mean@1"] == pytest.approx(0.65)
        assert out["val-calib/FI-8/ece"] == pytest.approx((0.2 + 0.3) / 2)
        assert out["val-calib/ID_VSA/hist_0.9"] == 1
        assert out["val-calib/all/auc"] == 1.0
    os.environ["EMOCALIBER_VAL_CALIBRATION"] = "0"
    try:
        out = object.__new__(PPOTrainerSync)._val_metrics_update(data_sources, ["a", "b", "c"], extra, [2, 2, 2])
        assert not any(k.startswith("val-calib/") for k in out)
    finally:
        del os.environ["EMOCALIBER_VAL_CALIBRATION"]


def test_training_reward_components() -> None:
    from emocaliber_rl.verl_plugins.validation_calibration import training_reward_metrics

    fields = [{"reward_extra_info": {"score": 1.5, "format": 1.0, "correct": 1, "note": "x"}},
              {"reward_extra_info": {"score": -4.6, "format": 0.0, "correct": 0}},
              {"other": 1}]
    assert training_reward_metrics(fields) == {
        "reward_extra/score/mean": pytest.approx(-1.55), "reward_extra/format/mean": 0.5,
        "reward_extra/correct/mean": 0.5}


_FSDP2_OFFLOAD = textwrap.dedent(
    """
    import os, sys, tempfile
    import torch, torch.distributed as dist
    import verl  # loads the plug-in
    from verl.workers.engine.fsdp import transformer_impl
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo", init_method="file://" + tempfile.mktemp(), rank=0, world_size=1)
    mesh = init_device_mesh("cpu", (1,))
    policy_cls = transformer_impl.CPUOffloadPolicy if sys.argv[1] == "engine" else CPUOffloadPolicy
    policy = policy_cls(pin_memory=True)  # what veRL's FSDP engine asks for a forward-only model
    assert isinstance(policy, CPUOffloadPolicy)
    model = torch.nn.Linear(4, 2)
    try:
        fully_shard(model, mesh=mesh, offload_policy=policy)
        print("OUT", float(model(torch.ones(1, 4)).sum()))
    except RuntimeError as exc:
        print("ERR", exc)
    dist.destroy_process_group()
    """
)


@pytest.mark.parametrize("which", ["engine", "torch"])
def test_fsdp2_cpu_offload_policy_without_accelerator(which: str) -> None:
    """veRL's FSDP2 engine wraps every forward-only model (the KL loss's reference policy) with
    ``CPUOffloadPolicy(pin_memory=True)``; on a machine without an accelerator torch refuses to pin.
    With VERL_PLATFORM=cpu the engine's policy class never pins (``engine``); torch's own class
    still fails here (``torch``), which is what the plug-in works around."""
    env = {**os.environ, "VERL_PLATFORM": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", _FSDP2_OFFLOAD, which], cwd=REPO_ROOT, env=env,
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith(("OUT", "ERR")))
    if which == "engine":
        assert line.startswith("OUT"), line
        assert np.isfinite(float(line.split()[1]))
    else:
        assert line.startswith("ERR") and "accelerator" in line, line
