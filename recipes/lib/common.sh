#!/usr/bin/env bash
# Pieces every stage recipe shares (sourced): the interpreter and the final HF checkpoint link.

# The interpreter: $PYTHON, else the repository's .venv (recipes/install.sh), else python3.
resolve_python() {
  local repo_root="$1"
  if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$repo_root/.venv/bin/python" ]]; then PYTHON="$repo_root/.venv/bin/python"; else PYTHON=python3; fi
  fi
  export PYTHON
}

# Link OUT/final_hf to the HF weights of veRL's last checkpoint (SUBDIR inside global_step_N).
link_final_hf() {
  local out="$1" subdir="$2" tag="$3" step
  step="$(cat "$out/latest_checkpointed_iteration.txt" 2>/dev/null || true)"
  if [[ -n "$step" && -d "$out/global_step_${step}/${subdir}" ]]; then
    ln -sfn "global_step_${step}/${subdir}" "$out/final_hf"
    echo "[${tag}] HF checkpoint: $out/final_hf -> global_step_${step}/${subdir}"
  fi
}

# --profile gpu needs flash-attn (veRL's default attention, flash_attention_2, and remove-padding);
# say so before any process starts when it is missing (recipes/install.sh could not build it).
require_flash_attn() {
  local profile="$1" tag="$2"
  [[ "$profile" == gpu ]] || return 0
  if ! "$PYTHON" -c "import flash_attn" >/dev/null 2>&1; then
    echo "${tag}: flash-attn is not installed in $PYTHON (recipes/install.sh gpu could not build it);" \
         "run with --profile gpu-sdpa (sdpa attention, no remove-padding) or install flash-attn (docs/gpu.md)" >&2
    return 1
  fi
}

# Before a GPU run: flash-attn for --profile gpu. A dry run (DRY=1) checks a run meant for any
# machine, so there a missing flash-attn is a note on stderr, not a refusal.
gpu_preflight() {
  local profile="$1" tag="$2" dry="$3"
  if [[ "$dry" == 1 ]]; then
    [[ "$profile" != gpu ]] || "$PYTHON" -c "import flash_attn" >/dev/null 2>&1 ||
      echo "${tag}: dry run: flash-attn is not installed in $PYTHON; --profile gpu needs it where the run goes" >&2
    return 0
  fi
  require_flash_attn "$profile" "$tag"
}

# GPUs per node: GIVEN when set, else the visible ones (gpus.sh). A dry run on a machine without
# GPUs assumes one node of 8, the paper's; a real run refuses.
gpus_or_default() {
  local given="$1" tag="$2" dry="$3" n
  n="${given:-$(count_visible_gpus)}"
  if [[ "$n" -lt 1 ]]; then
    if [[ "$dry" == 1 ]]; then
      echo "${tag}: dry run: no GPU visible here; assuming 8 GPUs per node" >&2
      n=8
    else
      echo "${tag}: no GPU visible; use --profile cpu or give the GPU count" >&2
      return 2
    fi
  fi
  echo "$n"
}
