#!/usr/bin/env bash
# Submit Stage 1 (structured-CoT SFT, recipes/stage1_sft.sh) as a Ray job to an existing cluster.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STAGE_NAME=stage1
STAGE_SCRIPT=recipes/stage1_sft.sh
STAGE_NOTE="Stage 1 (structured-CoT SFT, recipes/stage1_sft.sh): veRL's SFT trainer runs under torchrun inside the job's driver, on the one
node the job lands on (multi-node SFT: run the recipe with torchrun's NNODES/NODE_RANK variables on
each node instead). Reserve that node's GPUs with --entrypoint-num-gpus (default 0, right for
--profile cpu; on a GPU cluster give the GPUs per node). The vision tower stays frozen
(EMOCALIBER_FREEZE_MODULES=visual in the job environment)."
STAGE_FREEZE_MODULES=visual
# shellcheck source=lib/ray_submit.sh
source "$HERE/lib/ray_submit.sh"
submit_main "$@"
