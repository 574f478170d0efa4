"""The Ray job package of recipes/submit_stage*.sh, built with Ray 2.60's own packager
(ray._private.runtime_env.packaging.create_package, the function `ray job submit` zips the
working_dir with): output folders, .gitignore and .rayignore entries stay out; a package over
Ray's limit is refused before any upload, naming its biggest folder.

Ray's limit is GCS_STORAGE_MAX_SIZE (512 MiB by default, from RAY_max_grpc_message_size);
the refusal tests lower it through that same variable so that a few MiB of random bytes exceed it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

MIB = 1024 ** 2


def _write(path: Path, data: bytes | str = "x\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def _ray_zip_names(root: Path, excludes: list[str]) -> set[str]:
    from ray._private.runtime_env.packaging import create_package

    target = root.parent / f"{root.name}.zip"
    create_package(str(root), target, include_gitignore=True, excludes=excludes)
    with zipfile.ZipFile(target) as zf:
        return {n for n in zf.namelist() if not n.endswith("/")}


def test_excludes_gitignore_and_rayignore_keep_outputs_out(tmp_path: Path) -> None:
    from emocaliber_rl.ray_package import JOB_EXCLUDES, measure_package

    root = tmp_path / "repo"
    kept = ["setup.py", "recipes/stage3_grpo.sh", "emocaliber_rl/data/exports.py", "emocaliber_rl/runs_note.txt",
            "tests/data/fixture.json", "docs/models/README.md"]
    dropped = ["ckpt/stage3/global_step_2/model.pt", "checkpoints/stage1/x.bin", "runs/demo/pred.jsonl",
               "outputs/2026-12-01/main.log", "reports/cmp/table.md", "models/qwen/config.json",
               "tensorboard_log/ev", "wandb/run-1/files", "data/FI/img.jpg", "VEC-CoT/stage1.jsonl",
               "images/a.jpg", ".venv/bin/python", ".git/HEAD", "emocaliber_rl/__pycache__/a.pyc",
               "my_cache/blob",          # .gitignore
               "notes/big.safetensors",  # .rayignore
               ]
    for rel in kept + dropped:
        _write(root / rel)
    _write(root / ".gitignore", "my_cache/\n")
    _write(root / ".rayignore", "*.safetensors\n")
    kept += [".gitignore", ".rayignore"]

    assert _ray_zip_names(root, list(JOB_EXCLUDES)) == set(kept)
    size = measure_package(root)
    assert size.fits and size.n_files == len(kept) and size.zip_bytes is None
    assert size.raw_bytes == sum((root / k).stat().st_size for k in kept)


def test_ckpt_of_600_mib_stays_out_at_rays_default_limit(tmp_path: Path) -> None:
    """The issue's case: 600 MiB under ckpt/ (the README's --out) made a 601 MiB package."""
    from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE

    from emocaliber_rl.ray_package import measure_package

    root = tmp_path / "repo"
    _write(root / "setup.py")
    big = root / "ckpt" / "stage1" / "model.safetensors"
    big.parent.mkdir(parents=True)
    with big.open("wb") as f:  # sparse: 600 MiB of size without 600 MiB of disk
        f.truncate(600 * MIB)
    size = measure_package(root)
    assert GCS_STORAGE_MAX_SIZE == 512 * MIB and size.limit == GCS_STORAGE_MAX_SIZE
    assert size.fits and size.n_files == 1 and size.top_level == {"setup.py": 2}


def _oversized_repo(tmp_path: Path) -> Path:
    """A copy of the code the submit recipe needs, plus 3 MiB of random bytes in weights/."""
    root = tmp_path / "repo"
    for name in ("recipes", "emocaliber_rl", "reward_fns"):
        shutil.copytree(REPO_ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    _write(root / "weights" / "a.bin", os.urandom(2 * MIB))
    _write(root / "weights" / "b.bin", os.urandom(1 * MIB))
    return root


def test_oversized_package_is_refused_as_ray_would(tmp_path: Path) -> None:
    root = _oversized_repo(tmp_path)
    limit = 2 * MIB
    code = f"""
import json, sys
from pathlib import Path
from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE, _store_package_in_gcs, create_package
from emocaliber_rl.ray_package import JOB_EXCLUDES, measure_package
root = Path({str(root)!r})
size = measure_package(root)
target = root.parent / "ray.zip"
create_package(str(root), target, include_gitignore=True, excludes=list(JOB_EXCLUDES))
try:
    _store_package_in_gcs("gcs://_ray_pkg_test.zip", target.read_bytes())  # refuses before any GCS call
    ray_refused = ""
except ValueError as e:
    ray_refused = str(e)
print(json.dumps({{"limit": GCS_STORAGE_MAX_SIZE, "fits": size.fits, "zip_bytes": size.zip_bytes,
                  "ray_zip": target.stat().st_size, "ray_refused": ray_refused,
                  "biggest": size.biggest(1), "refusal": size.refusal()}}))
"""
    env = {**os.environ, "RAY_max_grpc_message_size": str(limit), "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["limit"] == limit
    assert out["zip_bytes"] == out["ray_zip"] > 3 * MIB  # random bytes do not compress
    assert "exceeds the maximum size of 2.00MiB" in out["ray_refused"]
    assert out["fits"] is False
    assert out["biggest"][0][0] == "weights/" and out["biggest"][0][1] >= 3 * MIB
    assert "weights/ 3.0 MiB" in out["refusal"] and "weights/a.bin 2.0 MiB" in out["refusal"]


@pytest.fixture
def submit_bin(tmp_path: Path) -> Path:
    """PYTHON for the submit recipe (this interpreter) with a recording `ray` next to it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "ray").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path / "ray_argv.txt"}"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return bin_dir


def _submit(root: Path, bin_dir: Path, limit: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_max_grpc_message_size": str(limit), "RAY_AUTH_TOKEN": "t" * 32}
    env.pop("PYTHONPATH", None)
    env.pop("WANDB_MODE", None)
    return subprocess.run(["bash", str(root / "recipes" / "submit_stage3.sh"), "--python", str(bin_dir / "python"),
                           "--profile", "cpu", "--", "--model", "/shared/m", "--train", "/shared/t", "--val", "/shared/v",
                           "--out", "/shared/out"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def test_submit_refuses_before_upload_naming_the_folder(tmp_path: Path, submit_bin: Path) -> None:
    root = _oversized_repo(tmp_path)
    proc = _submit(root, submit_bin, 2 * MIB)
    assert proc.returncode == 3, proc.stderr
    assert "over Ray's limit of 2.00 MiB" in proc.stderr and "weights/ 3.0 MiB" in proc.stderr
    assert "job not submitted" in proc.stderr
    assert not (tmp_path / "ray_argv.txt").exists()  # `ray job submit` never ran


def test_submit_ships_without_the_checkpoint_folder(tmp_path: Path, submit_bin: Path) -> None:
    root = _oversized_repo(tmp_path)
    (root / "ckpt").mkdir()
    (root / "weights").rename(root / "ckpt" / "stage3")
    proc = _submit(root, submit_bin, 2 * MIB)
    assert proc.returncode == 0, proc.stderr
    argv = (tmp_path / "ray_argv.txt").read_text().splitlines()
    assert argv[:2] == ["job", "submit"]
    runtime_env = json.loads(argv[argv.index("--runtime-env-json") + 1])
    assert runtime_env["working_dir"] == str(root) and "/ckpt/" in runtime_env["excludes"]
    assert runtime_env["env_vars"] == {"VERL_USE_EXTERNAL_MODULES": "emocaliber_rl.verl_plugins",
                                       "PYTHON": str(submit_bin / "python"), "EMOCALIBER_FREEZE_MODULES": "",
                                       "VERL_PLATFORM": "cpu", "TENSORBOARD_DIR": "/shared/out/tensorboard_log",
                                       # stage 3's CPU profile: vLLM's model in its engine-core process
                                       "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    assert argv[argv.index("--") + 1:][:3] == ["bash", "recipes/stage3_grpo.sh", "--profile"]
    # what Ray would zip from this runtime_env holds no checkpoint byte
    assert not any(n.startswith("ckpt/") for n in _ray_zip_names(root, runtime_env["excludes"]))
