"""`emocaliber gpu-check`: does this node's NVIDIA driver run the CUDA build of the installed torch?

PyPI's torch 2.11.0 (the gpu profile's, veRL 0.9.1's pin) and vLLM 0.24.0 are CUDA 13.0 builds.
A CUDA runtime runs on drivers at least as new as its major version's minimum (NVIDIA's CUDA
Toolkit release notes, "CUDA Driver" table, minor version compatibility): CUDA 11.x needs
>= 450.80.02, 12.x >= 525.60.13, 13.x >= 580.65.06. Most clusters still run 535/550 (CUDA 12)
drivers; on those the CUDA 13 wheels find no usable GPU, so the check says what to install instead.
It also checks what Triton's first kernel needs on the node (a C compiler, Python's headers).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

MIN_DRIVER: dict[int, str] = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}

# torch 2.11's CUDA builds are 12.6, 12.8 and 13.0 (13.0 on PyPI): PyTorch moved its stable CUDA
# from 12.8 to 13.0 for 2.11 (pytorch/pytorch#177975); the per-torch CUDA map of the flash-attention
# prebuilt-wheel project lists "2.11": 12.6, 12.8, 13.0 (github.com/mjun0812/
# flash-attention-prebuild-wheels, scripts/coverage_matrix.py). There is no cu129 build of 2.11.
# vLLM 0.24.0 on PyPI is a CUDA 13 build; a CUDA 12 vLLM 0.24.0 wheel has not been verified here
# (release assets named vllm-VERSION+cuXYZ have been missing for some versions, vllm-project/vllm#37847).
CUDA12_HINT = (
    "Either upgrade the driver to >= 580.65.06 (CUDA 13: the stack the pins were checked for), or install\n"
    "CUDA 12 builds of the same torch (torch 2.11's CUDA 12 builds are cu126 and cu128):\n"
    "  pip install torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0 --index-url https://download.pytorch.org/whl/cu128\n"
    "and a vLLM 0.24.0 built for CUDA 12 (PyPI's is CUDA 13; none is verified here: look for a\n"
    "vllm-0.24.0+cu12x asset on https://github.com/vllm-project/vllm/releases/tag/v0.24.0, else build\n"
    "vLLM from source against that torch), then rerun bash recipes/install.sh gpu: pip keeps them, as\n"
    "torch==2.11.0 matches 2.11.0+cu128 (docs/first-gpu-run.md)"
)


def c_compiler(env: dict[str, str], path: str | None = None) -> str | None:
    """The C compiler Triton would use to build its launcher on the first kernel (CC, else gcc, else
    clang on PATH; triton/runtime/build.py, ``_find_compiler``); None when there is none."""
    if env.get("CC"):
        return env["CC"]
    return shutil.which("gcc", path=path) or shutil.which("clang", path=path)


def python_include_dir() -> str:
    """Where Triton looks for Python.h (``sysconfig``'s include path; Debian's posix_local scheme
    read as posix_prefix, as triton/runtime/build.py does)."""
    scheme = sysconfig.get_default_scheme()
    if scheme == "posix_local":
        scheme = "posix_prefix"
    return sysconfig.get_paths(scheme=scheme)["include"]


def toolchain_problems(env: dict[str, str], include_dir: str, path: str | None = None) -> list[str]:
    """What Triton's first kernel (vLLM, liger-kernel, torch.compile) needs and this node lacks:
    a C compiler and Python's headers. One line each; empty when both are there."""
    problems = []
    if c_compiler(env, path) is None:
        problems.append("no C compiler (CC unset; no gcc or clang on PATH): Triton compiles a small launcher "
                        "at its first kernel and fails with 'Failed to find C compiler'; install gcc "
                        "(e.g. apt-get install build-essential) or set CC")
    if not (Path(include_dir) / "Python.h").is_file():
        problems.append(f"no Python.h in {include_dir}: Triton's launcher build needs Python's headers; install "
                        f"them (e.g. apt-get install python3-dev, or python{sys.version_info[0]}."
                        f"{sys.version_info[1]}-dev)")
    return problems


# The gpu profile's runtime pins (setup.py's GPU list; tests/test_gpu_profile.py keeps them equal):
# the install's environment check compares what pip left installed with them.
GPU_PINS: dict[str, str] = {"torch": "2.11.0", "torchvision": "0.26.0", "vllm": "0.24.0",
                            "transformers": "5.9.0", "torchcodec": "0.11.1", "verl": "0.9.1"}


def environment_problems(pins: dict[str, str] = GPU_PINS) -> list[str]:
    """The gpu profile's environment check: each pinned distribution installed at its pin (a local
    build tag such as +cu128 allowed) and importable in a fresh interpreter (torchcodec's and vLLM's
    compiled libraries load at import and fail there when they do not match torch). One line each."""
    from importlib import metadata

    from emocaliber_rl.cpu_env import _imports_cleanly

    problems = []
    for dist, pin in pins.items():
        try:
            installed = metadata.version(dist)
        except metadata.PackageNotFoundError:
            problems.append(f"{dist} is not installed (the gpu profile pins {dist}=={pin})")
            continue
        if installed.split("+")[0] != pin:
            problems.append(f"{dist} {installed} is installed; the gpu profile pins {pin}")
            continue
        ok, err = _imports_cleanly(dist)
        if not ok:
            problems.append(f"import {dist} fails: {err}")
    return problems


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.strip().split("."))


def driver_versions() -> list[str]:
    """Driver version of every GPU `nvidia-smi` lists (empty when there is no driver)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def check_driver(torch_cuda: str | None, driver: str | None) -> tuple[bool, str]:
    """``(ok, message)`` for a torch built with CUDA ``torch_cuda`` (``torch.version.cuda``) on a
    node whose driver is ``driver`` (None: no NVIDIA driver found)."""
    if torch_cuda is None:
        return False, "the installed torch is a CPU build (torch.version.cuda is None): install the gpu profile"
    major = int(torch_cuda.split(".")[0])
    need = MIN_DRIVER.get(major)
    if driver is None:
        return False, (f"no NVIDIA driver found (nvidia-smi missing or failing): torch is a CUDA {torch_cuda} "
                       f"build; the GPU nodes need a driver >= {need}")
    if need is None:
        return False, f"torch is a CUDA {torch_cuda} build, for which no minimum driver is known here"
    if _version(driver) >= _version(need):
        return True, f"driver {driver} runs CUDA {torch_cuda} (needs >= {need})"
    msg = (f"driver {driver} is too old for the installed torch, a CUDA {torch_cuda} build "
           f"(needs >= {need}): torch and vLLM would find no usable GPU.")
    if major >= 13:
        msg += "\n" + CUDA12_HINT
    return False, msg
