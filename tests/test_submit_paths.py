"""recipes/submit_stage*.sh before `ray job submit`: relative paths refused (each node runs the job
in a temporary copy of the repository), TensorBoard under --out, --env passed to the job's
runtime_env. A recording `ray` stands in for the cluster: nothing here starts Ray."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_ray_package import submit_bin  # noqa: F401  (fixture: this interpreter + a recording `ray`)

from .conftest import REPO_ROOT


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The code the submit recipe packages (a small working_dir, as in test_ray_package)."""
    root = tmp_path / "repo"
    for name in ("recipes", "emocaliber_rl", "reward_fns"):
        shutil.copytree(REPO_ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _submit(root: Path, bin_dir: Path, stage: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_TOKEN": "t" * 32}
    env.pop("PYTHONPATH", None)
    env.pop("WANDB_MODE", None)
    env.pop("EMOCALIBER_LOSS_ROWS", None)
    return subprocess.run(["bash", str(root / "recipes" / f"submit_{stage}.sh"), "--python", str(bin_dir / "python"),
                           *args], cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("stage", "recipe_args", "refused"), [
    ("stage3", ["--model", "/s/m", "--train", "/s/t.parquet", "--val", "/s/v.parquet", "--out", "ckpt/s3"],
     "--out ckpt/s3: relative"),
    ("stage3", ["--model", "/s/m", "--train", "data/t.parquet", "--val", "/s/v.parquet", "--out", "/s/o"],
     "--train data/t.parquet: relative"),
    ("stage3", ["--model", "/s/m", "--train", "/s/t.parquet", "--val", "v.parquet", "--out", "/s/o"],
     "--val v.parquet: relative"),
    ("stage3", ["--model", "stage2_model", "--train", "/s/t.parquet", "--val", "/s/v.parquet", "--out", "/s/o"],
     "--model stage2_model: relative"),
    ("stage1", ["--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--train", "/s/a.parquet,b.parquet", "--out", "/s/o"],
     "--train b.parquet: relative"),
    ("stage2", ["--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--train", "/s/a.parquet"],
     "give --out DIR (absolute, on shared storage)"),
])
def test_relative_paths_are_refused_before_anything_uploads(repo: Path, submit_bin: Path, tmp_path: Path,  # noqa: F811
                                                            stage: str, recipe_args: list[str], refused: str) -> None:
    proc = _submit(repo, submit_bin, stage, "--", *recipe_args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and refused in lines[0] and lines[0].startswith(f"submit_{stage}.sh: "), proc.stderr
    assert not (tmp_path / "ray_argv.txt").exists()  # `ray job submit` never ran


def test_a_local_relative_model_directory_is_refused_but_a_hub_id_passes(repo: Path, submit_bin: Path,  # noqa: F811
                                                                         tmp_path: Path) -> None:
    (repo / "models" / "stage2").mkdir(parents=True)
    proc = _submit(repo, submit_bin, "stage3", "--", "--model", "models/stage2", "--train", "/s/t", "--val", "/s/v",
                   "--out", "/s/o")
    assert proc.returncode == 2 and "--model models/stage2: relative" in proc.stderr
    proc = _submit(repo, submit_bin, "stage3", "--", "--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--train", "/s/t",
                   "--val", "/s/v", "--out", "/s/o")
    assert proc.returncode == 0, proc.stderr


def test_env_reaches_the_runtime_env_and_tensorboard_goes_under_out(repo: Path, submit_bin: Path,  # noqa: F811
                                                                    tmp_path: Path) -> None:
    proc = _submit(repo, submit_bin, "stage3", "--env", "NCCL_SOCKET_IFNAME=eth0", "--env", "GLOO_SOCKET_IFNAME=eth0",
                   "--env", "NCCL_DEBUG=INFO=x", "--", "--model", "/s/m", "--train", "/s/t", "--val", "/s/v",
                   "--out", "/shared/run1")
    assert proc.returncode == 0, proc.stderr
    argv = (tmp_path / "ray_argv.txt").read_text().splitlines()
    env_vars = json.loads(argv[argv.index("--runtime-env-json") + 1])["env_vars"]
    assert env_vars["NCCL_SOCKET_IFNAME"] == "eth0" and env_vars["GLOO_SOCKET_IFNAME"] == "eth0"
    assert env_vars["NCCL_DEBUG"] == "INFO=x"  # the value is everything after the first '='
    assert env_vars["TENSORBOARD_DIR"] == "/shared/run1/tensorboard_log"
    assert env_vars["EMOCALIBER_FREEZE_MODULES"] == "" and env_vars["EMOCALIBER_HF_DTYPE"] == "bfloat16"


@pytest.mark.parametrize(("item", "message"), [
    ("NCCL_SOCKET_IFNAME", "--env wants NAME=VALUE, got 'NCCL_SOCKET_IFNAME'"),
    ("1X=a", "--env wants NAME=VALUE, got '1X=a'"),
    ("EMOCALIBER_FREEZE_MODULES=visual", "--env EMOCALIBER_FREEZE_MODULES: set by this script (use --python / --profile)"),
])
def test_bad_env_is_refused(repo: Path, submit_bin: Path, tmp_path: Path, item: str, message: str) -> None:  # noqa: F811
    proc = _submit(repo, submit_bin, "stage3", "--env", item, "--", "--model", "/s/m", "--train", "/s/t",
                   "--val", "/s/v", "--out", "/s/o")
    assert proc.returncode == 2 and proc.stderr.strip() == f"submit_stage3.sh: {message}"
    assert not (tmp_path / "ray_argv.txt").exists()
