"""Why EmoCaliber drops GRPO's std normalisation: a CPU simulation of paper Table 9.

A policy verbalises one of 11 confidences (0.0, 0.1, ..., 1.0) for each of ``--prompts`` prompts;
its answers are right with a fixed, known probability ``p_k`` per prompt that the confidence
cannot change (like an emotion prediction the confidence tokens follow). Each step samples
``--group`` responses per prompt, scores them with the stage-3 reward (format 1 + correct +
R_conf, ``R_conf`` from ``reward_fns/emocaliber.py``: Eq. 4 log-likelihood or Eq. 6 Brier), turns
rewards into advantages with **veRL's own** ``grpo`` estimator (``get_adv_estimator_fn``, i.e.
``compute_grpo_outcome_advantage``) with and without ``norm_adv_by_std_in_grpo``, and takes a
REINFORCE step on each prompt's softmax logits. The policy starts calibrated but diffuse
(a cold-start model).

Both confidence rewards are proper scoring rules, so the plain policy gradient (no std) heads to
``c = p_k``. Dividing by the group's reward std re-weights the groups: a group whose answers
are all right (or all wrong) has a tiny std, made of confidence differences only, so its "be
more (less) confident" signal is blown up, and for ``p_k > 0.5`` all-right groups are the more
frequent: confidence drifts to the extremes (the positive feedback loop of paper section 4.8).

Metrics are population values of the final policy (no evaluation sampling noise): ECE with one
bin per verbalised level (the 10-bin ECE for a 0.1 grid), Brier, mean confidence and the mass
on extreme confidences (``c <= 0.1`` or ``c >= 0.9``).

    .venv/bin/python examples/overconfidence_study.py          # writes examples/overconfidence_study.png
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from reward_fns.emocaliber import confidence_reward

LEVELS = np.round(np.linspace(0.0, 1.0, 11), 2)
CONFIGS: tuple[tuple[str, str, bool], ...] = (
    # (name, R_conf, std-normalised), in paper Table 9 order #1..#4
    ("#1 Brier + std", "brier", True),
    ("#2 Brier, no std", "brier", False),
    ("#3 log-lik + std", "loglik", True),
    ("#4 log-lik, no std", "loglik", False),
)


@dataclass
class RunResult:
    name: str
    conf_reward: str
    norm_std: bool
    ece: float
    brier: float
    mean_conf: float
    extreme_mass: float
    level_mass: np.ndarray
    ece_curve: list[float] = field(default_factory=list)


def population_metrics(policy: np.ndarray, p_correct: np.ndarray) -> tuple[float, float, float, float]:
    """ECE (one bin per level), Brier, mean confidence and extreme mass of ``policy`` (K x L)."""
    mass = policy.sum(axis=0)  # expected number of prompts answering with each level
    hits = policy.T @ p_correct  # expected number of right answers at each level
    weight = mass / mass.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(mass > 0, hits / mass, 0.0)
    ece = float(np.sum(weight * np.abs(acc - LEVELS)))
    brier = float(
        np.mean(policy @ (LEVELS**2) * (1 - p_correct) + policy @ ((1 - LEVELS) ** 2) * p_correct)
    )
    mean_conf = float(np.mean(policy @ LEVELS))
    extreme = float(weight[(LEVELS <= 0.1) | (LEVELS >= 0.9)].sum())
    return ece, brier, mean_conf, extreme


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def simulate(
    conf_reward: str,
    norm_std: bool,
    *,
    steps: int = 300,
    prompts: int = 32,
    group: int = 8,
    lr: float = 0.5,
    init_width: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Train one configuration; returns (final policy K x L, p_correct, ECE per step)."""
    import torch
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    grpo = get_adv_estimator_fn("grpo")
    setup_rng = np.random.default_rng(seed)
    p_correct = setup_rng.uniform(0.15, 0.95, size=prompts)
    logits = -((LEVELS[None, :] - p_correct[:, None]) ** 2) / (2 * init_width**2)
    # Same sampling stream for every configuration, so differences come from the update rule.
    rng = np.random.default_rng(seed + 1)
    table = np.array([[confidence_reward(bool(i), float(c), conf_reward) for c in LEVELS] for i in (0, 1)])
    index = np.repeat(np.arange(prompts), group)
    mask = torch.ones(prompts * group, 1)
    curve = []
    for _ in range(steps):
        policy = _softmax(logits)
        cum = policy.cumsum(axis=1)
        u = rng.random((prompts, group))
        level = np.minimum((u[:, :, None] > cum[:, None, :]).sum(axis=2), len(LEVELS) - 1)
        correct = (rng.random((prompts, group)) < p_correct[:, None]).astype(int)
        reward = 1.0 + correct + table[correct, level]  # format 1 + R_correct + R_conf
        rewards = torch.tensor(reward.reshape(-1, 1), dtype=torch.float32)
        adv, _ = grpo(token_level_rewards=rewards, response_mask=mask, index=index, norm_adv_by_std_in_grpo=norm_std)
        adv = adv[:, 0].numpy().reshape(prompts, group)
        onehot = np.eye(len(LEVELS))[level]  # K x G x L
        grad = np.einsum("kg,kgl->kl", adv, onehot - policy[:, None, :]) / group
        logits = logits + lr * grad
        curve.append(population_metrics(_softmax(logits), p_correct)[0])
    return _softmax(logits), p_correct, curve


def run_study(steps: int = 300, seed: int = 0, **kwargs: float) -> list[RunResult]:
    """All four Table-9 configurations with the same seed."""
    results = []
    for name, conf_reward, norm_std in CONFIGS:
        policy, p_correct, curve = simulate(conf_reward, norm_std, steps=steps, seed=seed, **kwargs)
        ece, brier, mean_conf, extreme = population_metrics(policy, p_correct)
        results.append(
            RunResult(name, conf_reward, norm_std, ece, brier, mean_conf, extreme, policy.mean(axis=0), curve)
        )
    return results


def initial_metrics(seed: int = 0, prompts: int = 32, init_width: float = 0.2) -> tuple[float, float, float, float]:
    p_correct = np.random.default_rng(seed).uniform(0.15, 0.95, size=prompts)
    logits = -((LEVELS[None, :] - p_correct[:, None]) ** 2) / (2 * init_width**2)
    return population_metrics(_softmax(logits), p_correct)


def plot(results: list[RunResult], out: Path, initial_ece: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_curve, ax_hist) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        ax_curve.plot(range(1, len(r.ece_curve) + 1), r.ece_curve, label=r.name)
    ax_curve.axhline(initial_ece, color="grey", ls=":", lw=1, label="cold start")
    ax_curve.set_xlabel("GRPO step")
    ax_curve.set_ylabel("ECE (population)")
    ax_curve.set_title("Calibration during training")
    ax_curve.legend(fontsize=8)
    width = 0.02
    for j, r in enumerate(results):
        ax_hist.bar(LEVELS + (j - 1.5) * width, r.level_mass, width=width, label=r.name)
    ax_hist.set_xlabel("verbalised confidence")
    ax_hist.set_ylabel("share of responses")
    ax_hist.set_xticks(LEVELS)
    ax_hist.set_title("Final confidence distribution")
    ax_hist.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="GRPO steps per configuration (default 300)")
    parser.add_argument("--prompts", type=int, default=32, help="prompts per step (default 32)")
    parser.add_argument("--group", type=int, default=8, help="responses per prompt, rollout.n (default 8)")
    parser.add_argument("--lr", type=float, default=0.5, help="step size on the logits (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--out", type=Path, default=REPO / "examples" / "overconfidence_study.png", help="where to write the plot (default examples/overconfidence_study.png)"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = run_study(args.steps, args.seed, prompts=args.prompts, group=args.group, lr=args.lr)
    ece0, brier0, conf0, ext0 = initial_metrics(args.seed, args.prompts)
    print(f"{'configuration':<22}{'ECE':>8}{'Brier':>8}{'mean c':>8}{'c<=.1|c>=.9':>13}")
    print(f"{'cold start':<22}{ece0:>8.4f}{brier0:>8.4f}{conf0:>8.3f}{ext0:>13.3f}")
    for r in results:
        print(f"{r.name:<22}{r.ece:>8.4f}{r.brier:>8.4f}{r.mean_conf:>8.3f}{r.extreme_mass:>13.3f}")
    plot(results, args.out, ece0)
    print(f"plot: {args.out}  ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
