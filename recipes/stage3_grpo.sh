#!/usr/bin/env bash
# Stage 3 of EmoCaliber: GRPO with the calibration reward (paper 3.3, 4.1) on veRL's PPO trainer
# (python -m verl.trainer.main_ppo) with vLLM rollouts, configured by config/stage3_grpo.yaml.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/.." && pwd)"
CONFIG="$HERE/config/stage3_grpo.yaml"
# shellcheck source=lib/common.sh
source "$REPO_ROOT/recipes/lib/common.sh"
# shellcheck source=lib/gpus.sh
source "$REPO_ROOT/recipes/lib/gpus.sh"
resolve_python "$REPO_ROOT"

usage() {
  cat <<USAGE
Usage: bash recipes/stage3_grpo.sh --model PATH --train FILE --val FILE [options] [-- HYDRA_OVERRIDES...]

Stage 3 (paper 3.3, 4.1): GRPO on VEC-CoT-3 starting from the stage-2 (cold-start) model.
Reward R = R_format + R_correct + R_conf (Eq. 4, log-likelihood) from reward_fns/emocaliber.py;
advantage A = R - group mean without std normalisation (adv_estimator=grpo_no_std); KL loss
0.01 (low_var_kl) against the initial model, no KL in the reward, entropy bonus 0; lr 1e-6 with
every parameter trainable (vision encoder included); 8 responses per prompt from vLLM (async
server mode), 64 prompts per step, mini-batch 32 prompts; prompts up to 4096 tokens, responses
up to 2048; 1 epoch. Calibration metrics (ECE, Brier, ROC-AUC, confidence histogram per
data_source and VECBench group) are added to every validation by the emocaliber veRL plug-in.

Options:
  --model PATH          HF model directory or hub id to start from (required; the stage-2 model).
  --train FILE          training parquet in veRL's RL schema (required; \`emocaliber export rl3\`).
  --val FILE            validation parquet (required; validation runs before training, every
                        trainer.test_freq steps and at the end).
  --out DIR             checkpoint directory (default: checkpoints/stage3_grpo); DIR/final_hf
                        links to the last HF checkpoint when training ends.
  --profile P           gpu (default): the paper's settings above on CUDA GPUs.
                        gpu-sdpa: the same without flash-attn (sdpa attention, no
                        remove-padding), for installs where flash-attn could not be built.
                        cpu: the same trainer with vLLM's CPU build and the emocaliber plug-in's
                        CPU platform, for the tiny model and CI: small batches and lengths,
                        fp32; the keys in recipes/config/grpo_profile/cpu.yaml (each with
                        its reason; docs/stage3.md, "CPU profile").
  --nnodes N            nodes of the Ray cluster (default 1; multi-node: start the cluster with
                        \`ray start\` first and run this on the head node, or use
                        recipes/submit_stage3.sh).
  --gpus-per-node N     GPUs per node (default: the GPUs this process may use: those of
                        \`nvidia-smi -L\`, MIG devices not counted twice, narrowed by
                        CUDA_VISIBLE_DEVICES; 1 with --profile cpu).
  --steps N             stop after N training steps (default: one epoch, the paper's setting).
  --preset P            paper (default): Eq. 5 as written, loss averaged over each response's
                        tokens, then over responses (loss_agg_mode=seq-mean-token-mean).
                        official: the release's veRL defaults (token-mean). Both: dual-clip 3,
                        no warmup. Selects the Hydra config group grpo_preset
                        (recipes/config/grpo_preset/P.yaml) and the default --reward-preset.
  --reward-preset P     paper (Eq. 4 with weights 1, strict format, I(e) correctness) or official
                        (the authors' train/cus_reward.py, bit for bit); default: --preset's.
  --experiment NAME     trainer.experiment_name (default stage3_grpo): names the tracker run.
  --dry-run             run nothing: compose the config, run veRL's validate_config on it, check
                        the paths (absolute ones under a Ray job or with --nnodes > 1), print the
                        command and a per-GPU memory estimate (emocaliber_rl/recipe_dry_run.py).
                        Works without a GPU: --gpus-per-node defaults to 8 when none is visible.
  -h, --help            this help.

Anything after the options (or after --) is passed to veRL as Hydra overrides, e.g.
  data.train_batch_size=128 actor_rollout_ref.rollout.tensor_model_parallel_size=2
  trainer.logger=[console,wandb] trainer.test_freq=5
The stage's settings are in recipes/config/stage3_grpo.yaml (extends veRL's ppo_trainer.yaml).

Environment read: PYTHON (interpreter; default the repository's .venv, else python3); RAY_ADDRESS
(an existing cluster to join; default: a local one); Ray's token variables (RAY_AUTH_TOKEN,
RAY_AUTH_TOKEN_PATH, RAY_AUTH_MODE; see the README).
Environment the script sets (and, outside a Ray job, forwards to every Ray worker through
ray_kwargs.ray_init.runtime_env): VERL_USE_EXTERNAL_MODULES=emocaliber_rl.verl_plugins,
EMOCALIBER_FREEZE_MODULES= (empty: the vision tower trains), with --profile cpu VERL_PLATFORM=cpu
and VLLM_ENABLE_V1_MULTIPROCESSING=0 (vLLM's model in its engine-core process), and
EMOCALIBER_LOSS_ROWS when set (0 runs the output layer over every token, veRL's own path),
with --profile gpu/gpu-sdpa EMOCALIBER_HF_DTYPE=bfloat16 (the checkpoints' HF copy in bf16; set it
empty to keep veRL's fp32 copy).
USAGE
}

model="" train="" val="" out="checkpoints/stage3_grpo" profile="gpu" nnodes="1" gpus="" steps=""
preset="paper" reward_preset="" experiment="stage3_grpo" dry_run=0
overrides=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --train) train="$2"; shift 2 ;;
    --val) val="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --profile) profile="$2"; shift 2 ;;
    --nnodes) nnodes="$2"; shift 2 ;;
    --gpus-per-node) gpus="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --preset) preset="$2"; shift 2 ;;
    --reward-preset) reward_preset="$2"; shift 2 ;;
    --experiment) experiment="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; overrides+=("$@"); break ;;
    --*) echo "stage3_grpo.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) overrides+=("$1"); shift ;;
  esac
done
[[ -n "$model" && -n "$train" && -n "$val" ]] || { echo "stage3_grpo.sh: --model, --train and --val are required (see --help)" >&2; exit 2; }
[[ "$profile" == gpu || "$profile" == gpu-sdpa || "$profile" == cpu ]] || {
  echo "stage3_grpo.sh: --profile must be gpu, gpu-sdpa or cpu" >&2; exit 2; }
[[ "$preset" == paper || "$preset" == official ]] || { echo "stage3_grpo.sh: --preset must be paper or official" >&2; exit 2; }
reward_preset="${reward_preset:-$preset}"
[[ "$reward_preset" == paper || "$reward_preset" == official ]] || { echo "stage3_grpo.sh: --reward-preset must be paper or official" >&2; exit 2; }

export VERL_USE_EXTERNAL_MODULES="${VERL_USE_EXTERNAL_MODULES:-emocaliber_rl.verl_plugins}"
# Stage 3 trains every parameter: never inherit the stage-1/2 freeze switch.
export EMOCALIBER_FREEZE_MODULES=""
env_names=(VERL_USE_EXTERNAL_MODULES EMOCALIBER_FREEZE_MODULES)

profile_overrides=()
if [[ "$profile" == cpu ]]; then
  # VLLM_ENABLE_V1_MULTIPROCESSING=0: vLLM's CPU platform keeps the profile's one-process executor
  # (recipes/config/grpo_profile/cpu.yaml, rollout.engine_kwargs) only with it
  export VERL_PLATFORM=cpu WANDB_MODE="${WANDB_MODE:-disabled}" VLLM_ENABLE_V1_MULTIPROCESSING=0
  env_names+=(VERL_PLATFORM WANDB_MODE VLLM_ENABLE_V1_MULTIPROCESSING)
  # the loss-rows plug-in's off switch (verl_plugins/loss_rows.py), when set, reaches every worker
  [[ -z "${EMOCALIBER_LOSS_ROWS+set}" ]] || env_names+=(EMOCALIBER_LOSS_ROWS)
  gpus="${gpus:-1}"
  # the CPU keys, each with the error it avoids: recipes/config/grpo_profile/cpu.yaml
  profile_overrides=(+grpo_profile=cpu)
  if [[ -z "${RAY_ADDRESS:-}" ]]; then
    # Ray: veRL counts GPU resources and TransferQueue plus the workers want more CPUs than 2
    # cores; a local cluster gets logical ones. An existing cluster (RAY_ADDRESS, a Ray job) must
    # have been started with them: ray start --head --num-cpus=16 --num-gpus=1.
    profile_overrides+=(ray_kwargs.ray_init.num_cpus=16 +ray_kwargs.ray_init.num_gpus="$gpus")
  fi
else
  gpu_preflight "$profile" stage3_grpo.sh "$dry_run" || exit 2
  # the checkpoints' HF copy in bf16, the published checkpoint's dtype, not veRL's fp32 master
  # weights (emocaliber_rl/verl_plugins/hf_dtype.py): 16.6 instead of 33 GB each
  export EMOCALIBER_HF_DTYPE="${EMOCALIBER_HF_DTYPE-bfloat16}"
  env_names+=(EMOCALIBER_HF_DTYPE)
  if [[ "$profile" == gpu-sdpa ]]; then
    profile_overrides=(+actor_rollout_ref.model.override_config.attn_implementation=sdpa
                       actor_rollout_ref.model.use_remove_padding=False)
  fi
  gpus="$(gpus_or_default "$gpus" stage3_grpo.sh "$dry_run")" || exit 2
fi

# The reward file: under a Ray job every node unpacks the job's working_dir (this repository) at a
# path of its own and runs its workers there, so a relative path finds each node's copy; an
# absolute path would name the driver node's.
reward_path="$REPO_ROOT/reward_fns/emocaliber.py"
[[ -z "${RAY_JOB_CONFIG_JSON_ENV_VAR:-}" ]] || reward_path="reward_fns/emocaliber.py"
run_overrides=(
  actor_rollout_ref.model.path="$model"
  data.train_files="$train"
  data.val_files="$val"
  reward.custom_reward_function.path="$reward_path"
  grpo_preset="$preset"
  "+reward.custom_reward_function.reward_kwargs={preset:${reward_preset}}"
  trainer.default_local_dir="$out"
  trainer.experiment_name="$experiment"
  trainer.nnodes="$nnodes"
  trainer.n_gpus_per_node="$gpus"
)
[[ -z "$steps" ]] || run_overrides+=("trainer.total_training_steps=${steps}")
# Forward the plug-in environment to Ray workers, unless this runs as a Ray job: the job's
# runtime_env (recipes/submit_stage3.sh) already carries it and Ray refuses the same variable twice.
if [[ -z "${RAY_JOB_CONFIG_JSON_ENV_VAR:-}" ]]; then
  for name in "${env_names[@]}"; do
    run_overrides+=("+ray_kwargs.ray_init.runtime_env.env_vars.${name}='${!name}'")
  done
fi

echo "[stage3_grpo] preset=${preset} reward_preset=${reward_preset} profile=${profile} nnodes=${nnodes} gpus_per_node=${gpus} model=${model} out=${out}"
cmd=("$PYTHON" -m verl.trainer.main_ppo
     --config-path="$(dirname "$CONFIG")" --config-name="$(basename "$CONFIG" .yaml)"
     "${profile_overrides[@]}" "${run_overrides[@]}" "${overrides[@]}")
if (( dry_run == 1 )); then
  # every node of a Ray job or a multi-node run resolves a relative path in a directory of its own
  dry_args=(--kind grpo --tag stage3_grpo)
  [[ -z "${RAY_JOB_CONFIG_JSON_ENV_VAR:-}" && "$nnodes" == 1 ]] || dry_args+=(--absolute)
  PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m emocaliber_rl.recipe_dry_run "${dry_args[@]}" -- "${cmd[@]}"
fi
"${cmd[@]}"

link_final_hf "$out" actor/huggingface stage3_grpo
