"""The one builder of the stage-3 command line (emocaliber_rl/stage3_command.py).

The built command is run for real against recipes/stage3_grpo.sh with a recording interpreter as
PYTHON (the recipe's launch line is written to a file instead of starting veRL), so the test checks
what veRL's ``main_ppo`` would receive."""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

from emocaliber_rl.stage3_command import stage3_command

from .conftest import REPO_ROOT


def _recorder(tmp_path: Path) -> Path:
    rec = tmp_path / "record-python"
    rec.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path / "argv.txt"}"\n')
    rec.chmod(0o755)
    return rec


def test_the_built_command_reaches_main_ppo(tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    cmd = stage3_command(model="m", train="t.parquet", val="v.parquet", out=out, steps=3, experiment="x",
                         overrides=["data.seed=7", "trainer.test_freq=-1"])
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_JOB_CONFIG_JSON_ENV_VAR")}
    env["PYTHON"] = str(_recorder(tmp_path))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    assert argv[:2] == ["-m", "verl.trainer.main_ppo"]
    for key in ("+grpo_profile=cpu", "actor_rollout_ref.model.path=m", "data.train_files=t.parquet",
                "data.val_files=v.parquet", f"trainer.default_local_dir={out}", "trainer.experiment_name=x",
                "trainer.total_training_steps=3"):
        assert key in argv, key
    assert argv[-2:] == ["data.seed=7", "trainer.test_freq=-1"]  # the caller's overrides win (last)


def test_nodes_and_gpus_reach_main_ppo(tmp_path: Path) -> None:
    # the two-node test run (tests/stage3_shared.py) asks for one worker on each of two nodes
    cmd = stage3_command(model="m", train="t.parquet", val="v.parquet", out=tmp_path / "ckpt", nnodes=2,
                         gpus_per_node=1)
    assert cmd[-5:] == ["--nnodes", "2", "--gpus-per-node", "1", "--"]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_JOB_CONFIG_JSON_ENV_VAR")}
    env["PYTHON"] = str(_recorder(tmp_path))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    assert "trainer.nnodes=2" in argv and "trainer.n_gpus_per_node=1" in argv


def test_defaults_leave_steps_and_experiment_to_the_recipe() -> None:
    cmd = stage3_command(model="m", train="t", val="v", out="o", profile="gpu")
    assert cmd[2:] == ["--profile", "gpu", "--model", "m", "--train", "t", "--val", "v", "--out", "o", "--"]


def test_the_studies_keep_their_command_lines(tmp_path: Path) -> None:
    # written out by hand from the command lines the studies ran before the builder existed
    from emocaliber_rl.study import calibration, table9

    recipe = str(REPO_ROOT / "recipes" / "stage3_grpo.sh")
    s = calibration.Settings()
    got = calibration.recipe_command(model="m", train=Path("t"), val=Path("v"), out=Path("o"), steps=5, s=s,
                                     seed=1, extra=["x=1"], validate_first=False)
    assert got == ["bash", recipe, "--profile", "cpu", "--model", "m", "--train", "t", "--val", "v", "--out", "o",
                   "--steps", "5", "--experiment", "calibration", "--", *calibration.grpo_overrides(s), "data.seed=1",
                   "trainer.test_freq=20", "trainer.save_freq=20", "trainer.val_before_train=False",
                   "trainer.max_actor_ckpt_to_keep=1", "trainer.resume_mode=auto", "trainer.logger=[console,file]",
                   "x=1"]
    run = table9.RUNS[0]
    got = table9.recipe_command(run, model="m", train="t", val="v", out=Path("o"), steps=4, lr=1e-6,
                                profile="gpu", seed=2, extra=[])
    assert got == ["bash", recipe, "--profile", "gpu", "--model", "m", "--train", "t", "--val", "v",
                   "--out", "o/ckpt", "--steps", "4", "--experiment", f"table9_{run.name}", "--",
                   *table9.run_overrides(run), "actor_rollout_ref.actor.optim.lr=1e-06", "data.seed=2",
                   "trainer.logger=[console,file]", "trainer.save_freq=4"]


def test_no_other_module_names_the_stage3_recipe() -> None:
    # a second place that assembles the command would drift from the recipe's options
    builder = REPO_ROOT / "emocaliber_rl" / "stage3_command.py"
    offenders = []
    for path in sorted((REPO_ROOT / "emocaliber_rl").rglob("*.py")):
        if path == builder:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value == "stage3_grpo.sh":
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert not offenders, offenders
