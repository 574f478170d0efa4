"""``grpo_no_std`` through veRL's own advantage dispatchers (legacy ray_trainer path and the v1
path), against veRL's built-in GRPO with ``norm_adv_by_std_in_grpo=False`` and against the
group means worked out by hand."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from verl import DataProto
from verl.trainer.config import AlgoConfig
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories

from emocaliber_rl.verl_plugins import advantage

REPO = Path(__file__).resolve().parents[1]

# Three prompts: group a (3 responses), b (2), c (1); per-response reward R and valid length.
UIDS = ["a", "a", "a", "b", "b", "c"]
REWARDS = [1.0, 0.0, 0.5, 2.0, -1.0, 0.7]
LENGTHS = [4, 2, 5, 3, 5, 1]
# By hand: mean_a = (1 + 0 + .5)/3 = .5 -> A = .5, -.5, 0
#          mean_b = (2 - 1)/2 = .5      -> A = 1.5, -1.5
#          c has one response: veRL's convention is mean 0 -> A = R = .7
HAND = [0.5, -0.5, 0.0, 1.5, -1.5, 0.7]


def batch(rewards=REWARDS, uids=UIDS, lengths=LENGTHS, width: int = 6) -> DataProto:
    """Outcome rewards on the last valid token (as the reward manager places them)."""
    mask = torch.zeros(len(rewards), width)
    tlr = torch.zeros(len(rewards), width)
    for i, (r, n) in enumerate(zip(rewards, lengths)):
        mask[i, :n] = 1
        tlr[i, n - 1] = r
    uid = np.empty(len(uids), dtype=object)
    uid[:] = uids
    return DataProto.from_dict(tensors={"token_level_rewards": tlr, "response_mask": mask}, non_tensors={"uid": uid})


def expected_tokens(values: list[float], lengths=LENGTHS, width: int = 6) -> torch.Tensor:
    out = torch.zeros(len(values), width)
    for i, (v, n) in enumerate(zip(values, lengths)):
        out[i, :n] = v
    return out


def test_registered_under_its_name() -> None:
    assert core_algos.get_adv_estimator_fn("grpo_no_std") is advantage.compute_grpo_no_std_advantage


def test_hand_computed_group_means_on_the_ray_trainer_path() -> None:
    cfg = AlgoConfig(adv_estimator="grpo_no_std")
    out = compute_advantage(batch(), adv_estimator="grpo_no_std", config=cfg)
    assert torch.allclose(out.batch["advantages"], expected_tokens(HAND), atol=1e-6)
    assert torch.equal(out.batch["advantages"], out.batch["returns"])
    # property: in every group of >1 responses the advantages sum to 0 and A + mean(R) = R
    adv = out.batch["advantages"][:, 0]
    for g in ("a", "b"):
        rows = [i for i, u in enumerate(UIDS) if u == g]
        assert adv[rows].sum().item() == pytest.approx(0.0, abs=1e-6)
        mean = sum(REWARDS[i] for i in rows) / len(rows)
        assert [adv[i].item() + mean for i in rows] == pytest.approx([REWARDS[i] for i in rows])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_builtin_grpo_without_std_on_the_ray_trainer_path(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_groups, g = 16, 8
    rewards = rng.normal(size=n_groups * g).round(3).tolist()
    uids = [f"uid-{k}" for k in rng.permutation(np.repeat(np.arange(n_groups), g))]  # groups interleaved
    lengths = rng.integers(1, 7, size=n_groups * g).tolist()
    ours = compute_advantage(batch(rewards, uids, lengths), adv_estimator="grpo_no_std",
                             config=AlgoConfig(adv_estimator="grpo_no_std"))
    builtin = compute_advantage(batch(rewards, uids, lengths), adv_estimator=core_algos.AdvantageEstimator.GRPO,
                                norm_adv_by_std_in_grpo=False)
    normed = compute_advantage(batch(rewards, uids, lengths), adv_estimator=core_algos.AdvantageEstimator.GRPO,
                               norm_adv_by_std_in_grpo=True)
    assert torch.allclose(ours.batch["advantages"], builtin.batch["advantages"], atol=1e-6)
    assert torch.allclose(ours.batch["returns"], builtin.batch["returns"], atol=1e-6)
    assert not torch.allclose(ours.batch["advantages"], normed.batch["advantages"], atol=1e-3)


def test_equals_builtin_grpo_without_std_on_the_v1_path() -> None:
    # v1 row keys are "{uid}_{session_id}_{index}"; single-turn: one output per session.
    keys = [f"{u}_{s}_0" for s, u in enumerate(UIDS)]
    cfg = AlgoConfig(adv_estimator="grpo_no_std", norm_adv_by_std_in_grpo=False)
    ours = compute_advantage_for_multi_trajectories(batch(), batch_keys=keys, adv_estimator="grpo_no_std",
                                                    norm_adv_by_std_in_grpo=False, config=cfg)
    builtin = compute_advantage_for_multi_trajectories(batch(), batch_keys=keys, adv_estimator="grpo",
                                                       norm_adv_by_std_in_grpo=False, config=cfg)
    assert torch.allclose(ours.batch["advantages"], expected_tokens(HAND), atol=1e-6)
    assert torch.allclose(ours.batch["advantages"], builtin.batch["advantages"], atol=1e-6)
    assert torch.allclose(ours.batch["returns"], builtin.batch["returns"], atol=1e-6)


def test_ignores_the_std_flag_and_needs_group_ids() -> None:
    cfg = AlgoConfig(adv_estimator="grpo_no_std", norm_adv_by_std_in_grpo=True)
    out = compute_advantage(batch(), adv_estimator="grpo_no_std", norm_adv_by_std_in_grpo=True, config=cfg)
    assert torch.allclose(out.batch["advantages"], expected_tokens(HAND), atol=1e-6)
    data = batch()
    with pytest.raises(ValueError, match="uid"):
        advantage.compute_grpo_no_std_advantage(data.batch["token_level_rewards"], data.batch["response_mask"])


def test_registration_is_idempotent() -> None:
    original = advantage.compute_grpo_no_std_advantage
    try:
        importlib.reload(advantage)  # a new function object under the same name
        assert advantage.compute_grpo_no_std_advantage is not original
        advantage.register(core_algos)  # replaces the earlier copy instead of raising
        assert core_algos.get_adv_estimator_fn("grpo_no_std") is advantage.compute_grpo_no_std_advantage
        advantage.register(core_algos)  # explicit repeat: no-op
        spec = importlib.util.spec_from_file_location("advantage_by_path", advantage.__file__)
        copy = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(copy)  # the same file loaded under another module name
        copy.register(core_algos)
        assert core_algos.get_adv_estimator_fn("grpo_no_std") is copy.compute_grpo_no_std_advantage
    finally:
        # leave the process as other tests expect it: the original function registered
        advantage.compute_grpo_no_std_advantage = original
        advantage.register(core_algos)
    assert core_algos.get_adv_estimator_fn("grpo_no_std") is original


def test_a_foreign_estimator_under_the_name_is_a_conflict() -> None:
    registry = core_algos.ADV_ESTIMATOR_REGISTRY
    saved = registry["grpo_no_std"]
    registry["grpo_no_std"] = lambda **kw: None
    try:
        with pytest.raises(ValueError, match="already been registered"):
            advantage.register(core_algos)
    finally:
        registry["grpo_no_std"] = saved


def test_plugin_package_registers_it_when_core_algos_is_imported_later() -> None:
    # the wiring lives in emocaliber_rl/verl_plugins/__init__.py (imported with the submodule)
    code = (
        "import emocaliber_rl.verl_plugins.advantage as adv\n"
        "from verl.trainer.ppo import core_algos\n"
        "assert core_algos.get_adv_estimator_fn('grpo_no_std') is adv.compute_grpo_no_std_advantage\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith("ok")
