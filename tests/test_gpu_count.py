"""GPU counting of the recipes (recipes/lib/gpus.sh) against a stub `nvidia-smi` on PATH that
prints the listing of an 8-GPU node whose last GPU is in MIG mode.

The listing's layout is `nvidia-smi -L`'s (NVIDIA MIG User Guide, "Listing GPU instances"): one
"GPU i: NAME (UUID: GPU-...)" line per physical GPU and, indented under a MIG-mode GPU, one
"MIG <profile> Device j: (UUID: MIG-...)" line per MIG device. The recipes' launch line is read
from a recording interpreter given as PYTHON (torch.distributed.run / main_ppo are not started)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

UUIDS = [f"GPU-{i:08x}-1111-2222-3333-44444444444{i}" for i in range(8)]
MIG_UUID = "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f"
LISTING = "".join(f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: {u})\n" for i, u in enumerate(UUIDS))
LISTING += f"  MIG 3g.40gb     Device  0: (UUID: {MIG_UUID})\n"


@pytest.fixture
def stub_bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "listing.txt").write_text(LISTING)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\n[ "$1" = "-L" ] || exit 9\ncat "{tmp_path / "listing.txt"}"\n')
    smi.chmod(0o755)
    # Records the command line the recipe launches instead of running it.
    rec = bin_dir / "record-python"
    rec.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path / "argv.txt"}"\n')
    rec.chmod(0o755)
    return bin_dir


def _env(stub_bin: Path, cvd: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "NNODES", "RAY_ADDRESS")}
    env["PATH"] = f"{stub_bin}:{env['PATH']}"
    if cvd is not None:
        env["CUDA_VISIBLE_DEVICES"] = cvd
    return env


def _count(stub_bin: Path, cvd: str | None) -> tuple[int, str]:
    proc = subprocess.run(["bash", "-c", f'source "{REPO_ROOT}/recipes/lib/gpus.sh"; count_visible_gpus'],
                          env=_env(stub_bin, cvd), capture_output=True, text=True, timeout=30, check=True)
    return int(proc.stdout.strip()), proc.stderr


@pytest.mark.parametrize(("cvd", "expected"), [
    (None, 8),                              # unset: physical GPUs; the MIG line is not a ninth
    ("0,1,2,3", 4),
    ("", 0),                                # set but empty: CUDA sees no device
    ("7", 1),
    (f"{UUIDS[2]},{UUIDS[5]}", 2),          # full GPU UUIDs
    ("GPU-00000003,GPU-00000004", 2),       # unique UUID prefixes
    (MIG_UUID, 1),                          # one MIG device
    ("0, 1", 2),
])
def test_count_honours_cuda_visible_devices(stub_bin: Path, cvd: str | None, expected: int) -> None:
    n, err = _count(stub_bin, cvd)
    assert n == expected and err == ""


@pytest.mark.parametrize(("cvd", "expected", "bad"), [
    ("0,8,2", 1, "8"),                      # index 8 does not exist: CUDA stops there
    ("0,-1,2", 1, "-1"),
    ("GPU-0000000", 0, "GPU-0000000"),      # prefix of all eight UUIDs: not unique
    ("GPU-deadbeef", 0, "GPU-deadbeef"),
])
def test_count_stops_at_an_entry_naming_no_device(stub_bin: Path, cvd: str, expected: int, bad: str) -> None:
    n, err = _count(stub_bin, cvd)
    assert n == expected
    assert f"'{bad}' names no device" in err


def test_no_nvidia_smi_counts_zero(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PATH"] = f"{tmp_path}:/usr/bin:/bin"  # no nvidia-smi anywhere on it
    proc = subprocess.run(["bash", "-c", f'source "{REPO_ROOT}/recipes/lib/gpus.sh"; count_visible_gpus'],
                          env=env, capture_output=True, text=True, timeout=30, check=True)
    assert proc.stdout.strip() == "0"


def _argv(tmp_path: Path) -> list[str]:
    return (tmp_path / "argv.txt").read_text().splitlines()


def test_stage1_launches_one_process_per_visible_gpu(stub_bin: Path, tmp_path: Path) -> None:
    env = _env(stub_bin, "0,1,2,3") | {"PYTHON": str(stub_bin / "record-python")}
    proc = subprocess.run(["bash", str(REPO_ROOT / "recipes" / "stage1_sft.sh"), "--model", "m", "--train", "t.parquet",
                           "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    argv = _argv(tmp_path)
    assert argv[:2] == ["-m", "torch.distributed.run"]
    assert "--nproc_per_node=4" in argv and "trainer.n_gpus_per_node=4" in argv
    assert "nproc=4" in proc.stdout


def test_stage3_asks_for_the_visible_gpus(stub_bin: Path, tmp_path: Path) -> None:
    env = _env(stub_bin, "0,1,2,3") | {"PYTHON": str(stub_bin / "record-python")}
    proc = subprocess.run(["bash", str(REPO_ROOT / "recipes" / "stage3_grpo.sh"), "--model", "m", "--train", "t",
                           "--val", "v", "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, check=False,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    argv = _argv(tmp_path)
    assert argv[:2] == ["-m", "verl.trainer.main_ppo"]
    assert "trainer.n_gpus_per_node=4" in argv and "gpus_per_node=4" in proc.stdout


def test_no_visible_gpu_refuses_the_gpu_profile(stub_bin: Path, tmp_path: Path) -> None:
    env = _env(stub_bin, "") | {"PYTHON": str(stub_bin / "record-python")}
    proc = subprocess.run(["bash", str(REPO_ROOT / "recipes" / "stage1_sft.sh"), "--model", "m", "--train", "t"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "no GPU visible" in proc.stderr
    launched = tmp_path / "argv.txt"  # the recorder also answers the recipe's `import flash_attn` probe
    assert not launched.exists() or "torch.distributed.run" not in launched.read_text()
