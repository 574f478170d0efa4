"""`emocaliber gpu-check`: does this node's NVIDIA driver run the CUDA build of the installed torch?

PyPI's torch 2.11.0 (the gpu profile's, veRL 0.9.1's pin) and vLLM 0.24.0 are CUDA 13.0 builds.
A CUDA runtime runs on drivers at least as new as its major version's minimum (NVIDIA's CUDA
Toolkit release notes, "CUDA Driver" table, minor version compatibility): CUDA 11.x needs
>= 450.80.02, 12.x >= 525.60.13, 13.x >= 580.65.06. Most clusters still run 535/550 (CUDA 12)
drivers; on those the CUDA 13 wheels find no usable GPU, so the check says what to install instead.
"""

from __future__ import annotations

import subprocess

MIN_DRIVER: dict[int, str] = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}

CUDA12_HINT = (
    "Either upgrade the driver to >= 580.65.06 (CUDA 13), or install CUDA 12 builds of the same versions:\n"
    "  pip install torch==2.11.0 torchvision==0.26.0 --index-url https://download.pytorch.org/whl/cu129\n"
    "  pip install https://github.com/vllm-project/vllm/releases/download/v0.24.0/"
    "vllm-0.24.0+cu129-cp38-abi3-manylinux_2_35_x86_64.whl\n"
    "(vLLM's documented release-wheel pattern vllm-VERSION+cuXYZ; check the release page lists it), then\n"
    "rerun bash recipes/install.sh gpu: pip keeps them, as torch==2.11.0 matches 2.11.0+cu129 (docs/gpu.md)"
)


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
