#!/usr/bin/env bash
# Submit stage 3 (GRPO, recipes/stage3_grpo.sh) as a Ray job to an existing cluster.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STAGE_NAME=stage3
STAGE_SCRIPT=recipes/stage3_grpo.sh
STAGE_NOTE="Stage 3 (GRPO, recipes/stage3_grpo.sh): veRL's PPO trainer joins the cluster (RAY_ADDRESS
is set for the job) and places its actor/rollout workers on the cluster's GPUs itself, so the
driver reserves none. Pass --nnodes and --gpus-per-node to the recipe to match the cluster. With
--profile cpu the cluster must offer logical resources: ray start --head --num-cpus=16 --num-gpus=1.
Every parameter trains (EMOCALIBER_FREEZE_MODULES empty in the job environment)."
STAGE_FREEZE_MODULES=""
# shellcheck source=lib/ray_submit.sh
source "$HERE/lib/ray_submit.sh"
submit_main "$@"
