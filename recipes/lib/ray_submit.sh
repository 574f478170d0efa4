#!/usr/bin/env bash
# Shared `ray job submit` launcher (sourced by recipes/submit_stage{1,2,3}.sh). Ships the
# repository as the job's working_dir, sets the emocaliber veRL plug-in environment in the job's
# runtime_env and runs the stage's recipe as the job entrypoint on an existing Ray cluster.
# The calling script sets STAGE_NAME, STAGE_SCRIPT (path relative to the repository root) and
# STAGE_NOTE (one paragraph for --help).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

submit_usage() {
  cat <<USAGE
Usage: bash recipes/submit_${STAGE_NAME}.sh [options] -- RECIPE_ARGS...
       bash recipes/submit_${STAGE_NAME}.sh [options] --check [-- RECIPE_ARGS...]

Submits \`bash ${STAGE_SCRIPT} RECIPE_ARGS...\` as a job to an existing Ray cluster with
\`ray job submit\`. RECIPE_ARGS are the recipe's own options (see \`bash ${STAGE_SCRIPT} --help\`).
--out, --train, --val and a local --model must be absolute paths that exist on every node (shared
storage); a relative one is refused before anything uploads, since each node runs the job in a
temporary copy of the repository (data/ is not even in it) and would write its own outputs there.
--out is required for the same reason (the recipe's default is relative); --model may be a hub id.
TensorBoard writes to OUT/tensorboard_log (TENSORBOARD_DIR in the job environment, which veRL's
tracker reads; verl/utils/tracking.py), not to a relative tensorboard_log/ on each node.

${STAGE_NOTE}

Options:
  --address URL        the cluster's job server, i.e. its dashboard (default: \$RAY_ADDRESS if it is
                       an http(s) URL, else http://127.0.0.1:8265).
  --profile P          gpu (default), gpu-sdpa (no flash-attn) or cpu: passed to the recipe unless
                       RECIPE_ARGS name one; cpu adds VERL_PLATFORM=cpu to the job environment.
  --python PATH        interpreter the job runs the recipe and the check with, on the cluster
                       (default: this repository's .venv/bin/python when it exists, else python3;
                       the recipe reads it as PYTHON).
  --submission-id ID   job id (default: Ray picks one).
  --entrypoint-num-gpus N   GPUs reserved for the job's driver process (default 0 for Ray-based
                       stage 3, whose workers reserve their own; stage 1/2 run torchrun inside the
                       driver, so give them the node's GPUs here).
  --no-wait            return after submission (default: follow the logs until the job ends and
                       exit non-zero unless it SUCCEEDED).
  --env NAME=VALUE     add a variable to the job's runtime_env env_vars (repeatable), e.g. the
                       network interfaces of a multi-node run: --env NCCL_SOCKET_IFNAME=eth0
                       --env GLOO_SOCKET_IFNAME=eth0. The variables this script sets itself
                       (VERL_USE_EXTERNAL_MODULES, PYTHON, EMOCALIBER_FREEZE_MODULES, VERL_PLATFORM,
                       EMOCALIBER_HF_DTYPE)
                       are refused: use --python and --profile.
  --check              instead of the recipe, submit a short job that runs one Ray task pinned to
                       each alive node (emocaliber_rl/cluster_check.py) and prints one table, a
                       column per node: the plug-in state (platform, grpo_no_std registered,
                       validation calibration hook) and the --python interpreter with its installed
                       distributions, the repository; with RECIPE_ARGS after --, also the recipe's
                       --dry-run on each node, the --model/--train/--val/--out it names (resolved
                       path, size, sha256 of small files and of the ends of big ones) and whether
                       --out is one shared folder (a token file the driver writes there, every node
                       reads, the driver removes; --out is created). Exits non-zero when a row
                       differs between nodes, a path is missing or a dry run fails.
  -h, --help           this help.

The job's runtime_env: working_dir = the repository root, without the output and data folders
the docs use (ckpt/, checkpoints/, runs/, outputs/, reports/, models/, tensorboard_log/, wandb/,
data/, VEC-CoT/, images/ at the root), .venv, .git, caches, and whatever .gitignore and
.rayignore list (Ray applies both); a package that would reach Ray's upload limit (512 MiB) is
refused before upload, naming its biggest folders (\`emocaliber ray-package\` shows the size).
env_vars = VERL_USE_EXTERNAL_MODULES=
emocaliber_rl.verl_plugins, PYTHON, EMOCALIBER_FREEZE_MODULES (stage 1/2: visual; stage 3: empty),
TENSORBOARD_DIR=OUT/tensorboard_log, WANDB_MODE and EMOCALIBER_LOSS_ROWS when set here,
VERL_PLATFORM=cpu with --profile cpu (stage 3 also VLLM_ENABLE_V1_MULTIPROCESSING=0),
EMOCALIBER_HF_DTYPE=bfloat16 with the GPU profiles (the
checkpoints' HF copy in bf16), and every --env.

Authentication: Ray 2.60 clusters started with \`ray start\` require a token (token auth is on by
default; never turn it off with RAY_AUTH_MODE=disabled on a reachable cluster). \`ray job submit\`
reads it, in this order, from RAY_AUTH_TOKEN (the token itself), RAY_AUTH_TOKEN_PATH (a file
holding it) or ~/.ray/auth_token; \`ray start --head\` writes ~/.ray/auth_token when none exists.
Copy that file (or export RAY_AUTH_TOKEN) on the submitting machine. Keep the dashboard on
loopback (\`ray start --head --dashboard-host=127.0.0.1\`) and reach a remote head with
\`ssh -L 8265:127.0.0.1:8265 HEAD\` rather than binding it to a public address.
USAGE
}

# The recipe's paths, before anything uploads: --out (required), --train, --val (comma-separated
# lists too) and a local --model must be absolute; each node of a Ray job resolves a relative path
# in its own temporary copy of the repository. Prints --out; one line and status 2 on a refusal.
submit_paths_check() {
  local out="" opt value path
  local -a paths
  while [[ $# -gt 0 ]]; do
    opt="$1"
    case "$opt" in
      --out | --train | --val | --model)  # the recipe's options, not this script's
        value="${2-}"; shift $(( $# > 1 ? 2 : 1 ))
        [[ "$opt" != --out ]] || out="$value"
        IFS=',' read -r -a paths <<< "$value"
        for path in "${paths[@]}"; do
          [[ "$path" == /* ]] && continue
          # a hub id (org/name) that is no local directory is downloaded by every node alike
          if [[ "$opt" == --model && "$path" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$ && ! -e "$path" ]]; then continue; fi
          echo "submit_${STAGE_NAME}.sh: ${opt} ${path}: relative; a Ray job runs in a temporary copy of the repository on each node, give an absolute path on shared storage" >&2
          return 2
        done ;;
      --) shift ;;
      *) shift ;;
    esac
  done
  [[ -n "$out" ]] || {
    echo "submit_${STAGE_NAME}.sh: give --out DIR (absolute, on shared storage): the recipe's default is relative and would land in the job's temporary working_dir" >&2
    return 2; }
  echo "$out"
}

submit_main() {
  local address="" profile="gpu" python="" submission_id="" entry_gpus="${STAGE_ENTRY_GPUS:-0}" wait=1 check=0
  local -a recipe_args=() user_env=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --address) address="$2"; shift 2 ;;
      --profile) profile="$2"; shift 2 ;;
      --python) python="$2"; shift 2 ;;
      --submission-id) submission_id="$2"; shift 2 ;;
      --entrypoint-num-gpus) entry_gpus="$2"; shift 2 ;;
      --env) user_env+=("$2"); shift 2 ;;
      --no-wait) wait=0; shift ;;
      --check) check=1; shift ;;
      -h|--help) submit_usage; return 0 ;;
      --) shift; recipe_args+=("$@"); break ;;
      *) echo "submit_${STAGE_NAME}.sh: unknown option '$1' (recipe options go after --; see --help)" >&2; return 2 ;;
    esac
  done
  [[ "$profile" == gpu || "$profile" == gpu-sdpa || "$profile" == cpu ]] || {
    echo "submit_${STAGE_NAME}.sh: --profile must be gpu, gpu-sdpa or cpu" >&2; return 2; }
  if [[ -z "$address" ]]; then
    if [[ "${RAY_ADDRESS:-}" == http://* || "${RAY_ADDRESS:-}" == https://* ]]; then address="$RAY_ADDRESS"; else address="http://127.0.0.1:8265"; fi
  fi
  if [[ -z "$python" ]]; then
    if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then python="$REPO_ROOT/.venv/bin/python"; else python=python3; fi
  fi
  (( check == 1 || ${#recipe_args[@]} > 0 )) || { echo "submit_${STAGE_NAME}.sh: give the recipe's arguments after -- (or --check; see --help)" >&2; return 2; }
  local item name
  for item in "${user_env[@]}"; do
    name="${item%%=*}"
    [[ "$item" == *=* && "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || {
      echo "submit_${STAGE_NAME}.sh: --env wants NAME=VALUE, got '${item}'" >&2; return 2; }
    case "$name" in
      VERL_USE_EXTERNAL_MODULES|PYTHON|EMOCALIBER_FREEZE_MODULES|VERL_PLATFORM|EMOCALIBER_HF_DTYPE|VLLM_ENABLE_V1_MULTIPROCESSING)
        echo "submit_${STAGE_NAME}.sh: --env ${name}: set by this script (use --python / --profile)" >&2; return 2 ;;
    esac
  done
  local out=""
  if (( check == 0 || ${#recipe_args[@]} > 0 )); then
    out="$(submit_paths_check "${recipe_args[@]}")" || return 2
  fi
  if [[ "${RAY_AUTH_MODE:-}" != disabled && -z "${RAY_AUTH_TOKEN:-}" && -z "${RAY_AUTH_TOKEN_PATH:-}" && ! -s "$HOME/.ray/auth_token" ]]; then
    echo "submit_${STAGE_NAME}.sh: warning: no Ray auth token here (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token);" \
         "a cluster with token auth (the Ray 2.60 default) will answer 'Missing authentication token'" >&2
  fi

  local ray_bin
  ray_bin="$(dirname "$python")/ray"
  [[ -x "$ray_bin" ]] || ray_bin="ray"

  # The runtime_env, after a size check of the package with Ray's own packager: an oversized
  # working_dir is refused here, naming its biggest folders, before anything is uploaded.
  local -a env_args=(--env VERL_USE_EXTERNAL_MODULES=emocaliber_rl.verl_plugins --env "PYTHON=$python"
                     --env "EMOCALIBER_FREEZE_MODULES=${STAGE_FREEZE_MODULES-}")
  [[ "$profile" != cpu ]] || env_args+=(--env VERL_PLATFORM=cpu)
  # stage 3's CPU profile runs vLLM's model in the engine-core process (grpo_profile/cpu.yaml),
  # which vLLM's CPU platform allows only with this (the recipe sets it too, but not inside a job)
  [[ "$profile" != cpu || "$STAGE_NAME" != stage3 ]] || env_args+=(--env VLLM_ENABLE_V1_MULTIPROCESSING=0)
  # the GPU profiles' HF copy in bf16 (the recipe sets it too, but inside a job it cannot forward it)
  [[ "$profile" == cpu ]] || env_args+=(--env "EMOCALIBER_HF_DTYPE=${EMOCALIBER_HF_DTYPE-bfloat16}")
  [[ -z "${WANDB_MODE:-}" ]] || env_args+=(--env "WANDB_MODE=$WANDB_MODE")
  # the loss-rows plug-in's off switch (verl_plugins/loss_rows.py): set here, it must reach the
  # job's workers, which the recipe run as the entrypoint cannot forward to (it runs inside the job)
  [[ -z "${EMOCALIBER_LOSS_ROWS+set}" ]] || env_args+=(--env "EMOCALIBER_LOSS_ROWS=$EMOCALIBER_LOSS_ROWS")
  # veRL's TensorBoard logger writes to $TENSORBOARD_DIR, else to a relative tensorboard_log/: in the
  # job's temporary working_dir of whichever node runs the trainer (verl/utils/tracking.py)
  [[ -z "$out" ]] || env_args+=(--env "TENSORBOARD_DIR=${out}/tensorboard_log")
  for item in "${user_env[@]}"; do env_args+=(--env "$item"); done
  local runtime_env
  runtime_env="$(PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" "$python" -m emocaliber_rl.cli ray-package \
                   "$REPO_ROOT" --runtime-env-json "${env_args[@]}")" || {
    echo "submit_${STAGE_NAME}.sh: job not submitted (see above)" >&2; return 3; }

  local -a entry run_args=("${recipe_args[@]}")
  local has_profile=0 a
  for a in "${recipe_args[@]}"; do [[ "$a" == --profile ]] && has_profile=1; done
  (( has_profile == 1 || ${#recipe_args[@]} == 0 )) || run_args=(--profile "$profile" "${recipe_args[@]}")
  if (( check == 1 )); then
    # one task per node; with the recipe's arguments, its dry run and path comparison on each
    entry=("$python" -m emocaliber_rl.cli.cluster_check --repo "$REPO_ROOT" --python "$python")
    (( ${#recipe_args[@]} == 0 )) || entry+=(--stage-script "$STAGE_SCRIPT" -- "${run_args[@]}")
  else
    entry=(bash "$STAGE_SCRIPT" "${run_args[@]}")
  fi

  local -a submit=("$ray_bin" job submit --address "$address" --runtime-env-json "$runtime_env"
                   --entrypoint-num-gpus "$entry_gpus")
  [[ -z "$submission_id" ]] || submit+=(--submission-id "$submission_id")
  (( wait == 1 )) || submit+=(--no-wait)
  echo "[submit_${STAGE_NAME}] address=${address} profile=${profile} check=${check}" >&2
  "${submit[@]}" -- "${entry[@]}"
}
