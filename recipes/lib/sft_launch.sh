#!/usr/bin/env bash
# Shared launcher of the SFT stages (sourced by stage1_sft.sh and stage2_sft.sh): parses the
# common options, picks the GPU or CPU profile and runs `torchrun -m verl.trainer.sft_trainer`
# with the stage's YAML config. The calling script sets STAGE_NAME, STAGE_CONFIG, STAGE_HELP and
# may set STAGE_EXTRA_OVERRIDES (array).
set -euo pipefail

RECIPES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=common.sh
source "$RECIPES_DIR/lib/common.sh"
# shellcheck source=gpus.sh
source "$RECIPES_DIR/lib/gpus.sh"
resolve_python "$RECIPES_DIR/.."

sft_usage() {
  cat <<USAGE
Usage: bash recipes/${STAGE_NAME}.sh --model PATH --train FILE [options] [-- HYDRA_OVERRIDES...]

${STAGE_HELP}

Options:
  --model PATH      HF model directory or hub id to start from (required).
  --train FILE      training parquet in veRL's SFT schema (required; comma-separate several).
  --val FILE        validation parquet (optional; loss logged at the end and every test_freq).
  --out DIR         where veRL writes checkpoints (default: checkpoints/${STAGE_NAME});
                    DIR/final_hf links to the last HF checkpoint when training ends.
  --profile P       gpu (default): bf16 mixed precision, FSDP2, flash-attention, remove-padding.
                    gpu-sdpa: the same without flash-attn (PyTorch sdpa attention, no
                    remove-padding), for installs where flash-attn could not be built.
                    cpu: the same trainer on CPU through the emocaliber veRL plug-in
                    (VERL_PLATFORM=cpu, gloo, sdpa attention, fp32) for the tiny model and CI;
                    the keys in recipes/config/sft_profile/cpu.yaml (each with its reason).
  --nproc N         processes per node (default: the GPUs this process may use: those of
                    \`nvidia-smi -L\`, MIG devices not counted twice, narrowed by
                    CUDA_VISIBLE_DEVICES; 1 with --profile cpu).
  --steps N         stop after N optimizer steps (default: one epoch, the paper's setting).
  --dry-run         run nothing: compose the config, run veRL's checks of it (its SFT config
                    dataclasses, the batch split over the GPUs), check the paths, print the
                    command and a per-GPU memory estimate (emocaliber_rl/recipe_dry_run.py).
                    Works without a GPU: --nproc defaults to 8 when none is visible.
  --preset P        paper (default): constant lr from the first step, no weight decay (the paper
                    states none of these). official: the release's ms-swift run, warmup ratio
                    0.05, cosine decay, weight decay 0.1. Selects the Hydra config group
                    sft_preset (recipes/config/sft_preset/P.yaml); see docs/correctness-and-presets.md.
  -h, --help        this help.

Anything after the options (or after --) is passed to veRL as Hydra overrides, e.g.
  data.train_batch_size=64 optim.lr=2e-5 trainer.logger=[console,wandb]
The stage's settings are in ${STAGE_CONFIG#"$RECIPES_DIR"/} (extends veRL's sft_trainer_engine.yaml).

Multi-node: set the usual torchrun variables NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT on
every node (single node runs --standalone).
Environment read: PYTHON (interpreter; default the repository's .venv, else python3).
Environment the script sets: EMOCALIBER_FREEZE_MODULES (modules kept frozen, see the README),
VERL_USE_EXTERNAL_MODULES=emocaliber_rl.verl_plugins, with --profile cpu VERL_PLATFORM=cpu, with
--profile gpu/gpu-sdpa EMOCALIBER_HF_DTYPE=bfloat16 (the checkpoints' HF copy in bf16; set it
empty to keep veRL's fp32 copy).
USAGE
}

sft_main() {
  local model="" train="" val="" out="checkpoints/${STAGE_NAME}" profile="gpu" nproc="" steps="" preset="paper" dry_run=0
  local -a overrides=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --model) model="$2"; shift 2 ;;
      --train) train="$2"; shift 2 ;;
      --val) val="$2"; shift 2 ;;
      --out) out="$2"; shift 2 ;;
      --profile) profile="$2"; shift 2 ;;
      --nproc) nproc="$2"; shift 2 ;;
      --steps) steps="$2"; shift 2 ;;
      --preset) preset="$2"; shift 2 ;;
      --dry-run) dry_run=1; shift ;;
      -h|--help) sft_usage; return 0 ;;
      --) shift; overrides+=("$@"); break ;;
      --*) echo "${STAGE_NAME}.sh: unknown option '$1' (see --help)" >&2; return 2 ;;
      *) overrides+=("$1"); shift ;;
    esac
  done
  [[ -n "$model" && -n "$train" ]] || { echo "${STAGE_NAME}.sh: --model and --train are required (see --help)" >&2; return 2; }
  [[ "$profile" == gpu || "$profile" == gpu-sdpa || "$profile" == cpu ]] || {
    echo "${STAGE_NAME}.sh: --profile must be gpu, gpu-sdpa or cpu" >&2; return 2; }
  [[ "$preset" == paper || "$preset" == official ]] || { echo "${STAGE_NAME}.sh: --preset must be paper or official" >&2; return 2; }

  export VERL_USE_EXTERNAL_MODULES="${VERL_USE_EXTERNAL_MODULES:-emocaliber_rl.verl_plugins}"
  export EMOCALIBER_FREEZE_MODULES="${EMOCALIBER_FREEZE_MODULES-visual}"
  local -a profile_overrides=()
  if [[ "$profile" == cpu ]]; then
    export VERL_PLATFORM=cpu WANDB_MODE="${WANDB_MODE:-disabled}"
    nproc="${nproc:-1}"
    # the CPU keys, each with its reason: recipes/config/sft_profile/cpu.yaml
    profile_overrides=(+sft_profile=cpu)
  else
    gpu_preflight "$profile" "${STAGE_NAME}.sh" "$dry_run" || return 2
    # the checkpoints' HF copy in bf16, not veRL's fp32 master weights (verl_plugins/hf_dtype.py)
    export EMOCALIBER_HF_DTYPE="${EMOCALIBER_HF_DTYPE-bfloat16}"
    if [[ "$profile" == gpu-sdpa ]]; then
      profile_overrides=(+model.override_config.attn_implementation=sdpa model.use_remove_padding=False)
    fi
    nproc="$(gpus_or_default "$nproc" "${STAGE_NAME}.sh" "$dry_run")" || return 2
  fi

  local -a data_args=("data.train_files=${train}")
  if [[ -n "$val" ]]; then data_args+=("data.val_files=${val}"); else data_args+=("data.val_files=null"); fi
  [[ -z "$steps" ]] || data_args+=("trainer.total_training_steps=${steps}")

  local -a launcher
  if [[ -n "${NNODES:-}" && "${NNODES}" != 1 ]]; then
    launcher=("$PYTHON" -m torch.distributed.run --nnodes="$NNODES" --node_rank="${NODE_RANK:?NODE_RANK must be set with NNODES}"
              --master_addr="${MASTER_ADDR:?MASTER_ADDR must be set with NNODES}" --master_port="${MASTER_PORT:-29500}"
              --nproc_per_node="$nproc")
  else
    launcher=("$PYTHON" -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node="$nproc")
  fi

  echo "[${STAGE_NAME}] preset=${preset} profile=${profile} nproc=${nproc} nnodes=${NNODES:-1} model=${model} out=${out}"
  local -a cmd=("${launcher[@]}" -m verl.trainer.sft_trainer
    --config-path="$(dirname "$STAGE_CONFIG")" --config-name="$(basename "$STAGE_CONFIG" .yaml)"
    sft_preset="$preset" model.path="$model" trainer.default_local_dir="$out"
    trainer.n_gpus_per_node="$nproc" trainer.nnodes="${NNODES:-1}"
    "${data_args[@]}" "${profile_overrides[@]}" "${STAGE_EXTRA_OVERRIDES[@]}" "${overrides[@]}")
  if (( dry_run == 1 )); then
    # a Ray job's entrypoint runs in a temporary copy of the repository: relative paths land there
    local -a dry_args=(--kind sft --tag "$STAGE_NAME")
    [[ -z "${RAY_JOB_CONFIG_JSON_ENV_VAR:-}" ]] || dry_args+=(--absolute)
    PYTHONPATH="$RECIPES_DIR/..${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m emocaliber_rl.recipe_dry_run \
      "${dry_args[@]}" -- "${cmd[@]}"
    return
  fi
  "${cmd[@]}"

  link_final_hf "$out" huggingface "$STAGE_NAME"
}
