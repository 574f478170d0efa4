"""`emocaliber study table9`: the four runs differ exactly in the two switches of paper Table 9, the
composed configs carry them (Hydra's compose and the recipe's own `--cfg job`), and Table 9 and the
curves are computed from the runs' files as the paper defines them (numbers by hand)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emocaliber_rl.study.table9 import RUNS, high_confidence_share, run_overrides, table9_markdown, val_curves

from .conftest import REPO_ROOT

EXPECTED = {  # paper 4.8, Table 9 rows 1-4
    "1_brier_std": ("grpo", True, "brier"),
    "2_brier_nostd": ("grpo_no_std", False, "brier"),
    "3_loglik_std": ("grpo", True, "loglik"),
    "4_loglik_nostd": ("grpo_no_std", False, "loglik"),
}


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO_ROOT / "recipes" / "config"), version_base=None):
        return compose(config_name="stage3_grpo", overrides=overrides)


@pytest.mark.parametrize("run", RUNS, ids=lambda r: r.name)
def test_each_run_composes_its_table9_row(run) -> None:
    # the recipe's own reward kwargs come first, the run's switch adds to them
    cfg = _compose(["+reward.custom_reward_function.reward_kwargs={preset:paper}", *run_overrides(run)])
    adv, norm, conf = EXPECTED[run.name]
    assert cfg.algorithm.adv_estimator == adv
    assert cfg.algorithm.norm_adv_by_std_in_grpo is norm
    assert dict(cfg.reward.custom_reward_function.reward_kwargs) == {"preset": "paper", "conf_reward": conf}
    # everything else is shared: the four configs differ only in these keys
    base = _compose(["+reward.custom_reward_function.reward_kwargs={preset:paper}", *run_overrides(RUNS[3])])
    assert cfg.actor_rollout_ref == base.actor_rollout_ref and cfg.data == base.data


def test_the_recipe_passes_the_switches_to_verl(tmp_path: Path) -> None:
    """Run 1 through `study table9 --dry-run`'s command with veRL's `--cfg job`: the composed job
    config has std-normalised grpo and the Brier reward."""
    out = subprocess.run([sys.executable, "-m", "emocaliber_rl.cli", "study", "table9", "--model", "m", "--train",
                          "t.parquet", "--val", "v.parquet", "--manifest", "x", "--out", str(tmp_path), "--dry-run",
                          "--profile", "gpu-sdpa", "--", "trainer.n_gpus_per_node=1"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) == 4

    cmd = shlex.split(out[0])
    i = cmd.index("--steps")
    cmd[i:i + 2] = ["--steps", "3", "--gpus-per-node", "1"]
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([*cmd, "--cfg", "job"], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    cfg = yaml.safe_load("\n".join(lines[next(i for i, x in enumerate(lines) if x.startswith("[stage")) + 1:]))
    assert cfg["algorithm"]["adv_estimator"] == "grpo" and cfg["algorithm"]["norm_adv_by_std_in_grpo"] is True
    assert cfg["reward"]["custom_reward_function"]["reward_kwargs"] == {"preset": "paper", "conf_reward": "brier"}
    assert cfg["trainer"]["total_training_steps"] == 3


def test_table9_from_run_files(tmp_path: Path) -> None:
    samples = tmp_path / "samples.jsonl"
    rows = [{"group": "ID VER", "conf_verb": c} for c in (0.95, 0.9, 0.5, None)] + [{"group": "ID VSA", "conf_verb": 0.99}]
    samples.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    share = high_confidence_share(samples)
    assert share == pytest.approx(2 / 3)  # 0.95 and 0.9 of the three stated ID-VER confidences
    scores = {"groups": {"ID VER": {"acc": 0.5503, "verb": {"brier": 0.2277, "ece": 0.1363}},
                         "ID VSA": {"acc": 0.8195, "verb": {"brier": 0.1468}},
                         "OOD VER": {"acc": 0.5037, "verb": {"brier": 0.2241}}}}
    table = table9_markdown([("#4 log-lik, no std", scores, share)])
    # the paper's Table 9 row #4 values, as percentages with two decimals
    assert "| #4 log-lik, no std | 55.03 | 22.77 | 81.95 | 14.68 | 50.37 | 22.41 | 13.63 | 66.67 |" in table
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps(x) for x in [
        {"step": 0, "data": {"val-calib/ID_VER/ece": 0.3, "val-calib/ID_VER/mean_conf": 0.8}},
        {"step": 1, "data": {"training/global_step": 1}},
        {"step": 2, "data": {"val-calib/ID_VER/ece": 0.2, "val-calib/ID_VER/mean_conf": 0.7}}]) + "\n")
    assert val_curves(metrics) == {"ece": [(0, 0.3), (2, 0.2)], "mean_conf": [(0, 0.8), (2, 0.7)]}


def test_the_oracle_is_table9s_first_row(tmp_path: Path) -> None:
    """With ``--oracle`` the known optimum heads Table 9, above the cold-start model and the runs."""
    from emocaliber_rl.study.table9 import write_outputs

    def scored(folder: Path, acc: float, confs: list[float]) -> Path:
        folder.mkdir(parents=True)
        (folder / "scores.json").write_text(json.dumps({"groups": {"ID VER": {"acc": acc, "verb": {"brier": 0.1, "ece": 0.05}}}}))
        (folder / "samples.jsonl").write_text("".join(json.dumps({"group": "ID VER", "conf_verb": c}) + "\n" for c in confs))
        return folder

    oracle = scored(tmp_path / "oracle", 0.8, [0.5, 1.0, 0.75, 0.875])
    baseline = scored(tmp_path / "0_cold_start", 0.26, [0.95, 0.99])
    run = scored(tmp_path / RUNS[3].name, 0.3, [0.5, 0.95])
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in [
        {"step": 3, "data": {"val-calib/ID_VER/ece": 0.04, "val-calib/ID_VER/mean_conf": 0.7}},
        {"step": 6, "data": {"val-calib/ID_VER/ece": 0.03, "val-calib/ID_VER/mean_conf": 0.6}}]))
    summary = write_outputs(tmp_path, RUNS, baseline=baseline, oracle=oracle)
    # without validation before training, the curve starts at the cold-start model's eval score (ECE 0.05;
    # these scores carry no mean confidence, so that curve has no step-0 point)
    assert summary["curve_points"][RUNS[3].label] == {"ece": [[0, 0.05], [3, 0.04], [6, 0.03]],
                                                      "mean_conf": [[3, 0.7], [6, 0.6]]}
    rows = [line.split(" | ")[0] for line in (tmp_path / "table9.md").read_text().splitlines()[2:]]
    assert rows == ["| oracle", "| cold-start", f"| {RUNS[3].label}"]
    # the oracle's share of c >= 0.9: 1 of 4 (only the certain image); the cold-start's 2 of 2
    lines = (tmp_path / "table9.md").read_text().splitlines()
    assert lines[2].endswith("| 5.00 | 25.00 |") and lines[3].endswith("| 5.00 | 100.00 |")


def test_an_oracle_folder_without_scores_is_refused_before_any_run(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "emocaliber_rl.cli", "study", "table9", "--model", "m", "--train", "t",
                           "--val", "v", "--manifest", "x", "--out", str(tmp_path / "study"), "--oracle", str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert f"--oracle {tmp_path}: no scores.json there" in proc.stderr
    assert not (tmp_path / "study").exists()  # nothing trained or evaluated
