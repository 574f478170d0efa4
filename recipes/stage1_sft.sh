#!/usr/bin/env bash
# Stage 1 of EmoCaliber: structured-CoT SFT (the "scaffold" model) on veRL's SFT trainer.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STAGE_NAME=stage1_sft
STAGE_CONFIG="$HERE/config/stage1_sft.yaml"
STAGE_HELP="Stage 1 (paper 3.1, 4.1): full fine-tune of the language model on VEC-CoT-1 (<think> with
the five steps, then <answer>), vision tower frozen, lr 1e-5, 1 epoch, bf16, max length 2048.
Pixel bounds 200704..451584 travel with the data (min_pixels/max_pixels of each image; the
default of \`emocaliber export sft1\`, changed with --min-pixels/--max-pixels, --processor-pixels)."
STAGE_EXTRA_OVERRIDES=()
# shellcheck source=lib/sft_launch.sh
source "$HERE/lib/sft_launch.sh"
sft_main "$@"
