"""The overconfidence study reproduces paper Table 9's ordering: std-normalised GRPO drifts to
extreme confidences whatever the reward, log-likelihood without normalisation calibrates best."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("overconfidence_study", REPO / "examples" / "overconfidence_study.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [0, 3])
def test_final_ece_ordering_matches_table_9(study, seed: int) -> None:
    results = {r.name: r for r in study.run_study(steps=300, seed=seed)}
    b_std, b_raw = results["#1 Brier + std"], results["#2 Brier, no std"]
    l_std, l_raw = results["#3 log-lik + std"], results["#4 log-lik, no std"]
    cold_ece, _, _, cold_extreme = study.initial_metrics(seed)
    # Table 9: #4 best, #2 next, the std-normalised runs (#1, #3) worst
    assert l_raw.ece < b_raw.ece < min(b_std.ece, l_std.ece)
    # no std: calibration improves on the cold start; std: it gets worse than the cold start
    assert l_raw.ece < cold_ece and b_raw.ece < cold_ece
    assert b_std.ece > cold_ece and l_std.ece > cold_ece
    # the std runs pile confidence onto the extremes (c <= .1 or c >= .9)
    assert min(b_std.extreme_mass, l_std.extreme_mass) > max(b_raw.extreme_mass, l_raw.extreme_mass, cold_extreme)


def test_population_metrics_by_hand(study) -> None:
    import numpy as np

    # two prompts, right with p = .8 and .2; prompt 1 always says .8, prompt 2 says .2 or .4
    policy = np.zeros((2, 11))
    policy[0, 8] = 1.0
    policy[1, 2], policy[1, 4] = 0.5, 0.5
    ece, brier, mean_conf, extreme = study.population_metrics(policy, np.array([0.8, 0.2]))
    # levels used: .8 (weight .5, acc .8), .2 (weight .25, acc .2), .4 (weight .25, acc .2)
    # ECE = .5*0 + .25*0 + .25*|.2 - .4| = .05
    assert ece == pytest.approx(0.05)
    # Brier: prompt 1: .8*(1-.8)^2 + .2*.8^2 = .032 + .128 = .16
    #        prompt 2: .5*(.2*.8^2 + .8*.2^2) + .5*(.2*.6^2 + .8*.4^2) = .5*.16 + .5*(.072 + .128) = .18
    assert brier == pytest.approx((0.16 + 0.18) / 2)
    assert mean_conf == pytest.approx((0.8 + 0.3) / 2)
    assert extreme == pytest.approx(0.0)


def test_cli_writes_the_plot(study, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plot.png"
    assert study.main(["--steps", "5", "--prompts", "4", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "#4 log-lik, no std" in printed and str(out) in printed
    with pytest.raises(SystemExit) as exc:
        study.main(["--help"])
    assert exc.value.code == 0
