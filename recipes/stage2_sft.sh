#!/usr/bin/env bash
# Stage 2 of EmoCaliber: confidence-only SFT (the "cold-start" model) on veRL's SFT trainer.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STAGE_NAME=stage2_sft
STAGE_CONFIG="$HERE/config/stage2_sft.yaml"
STAGE_HELP="Stage 2 (paper 3.2, 4.1): fine-tune the stage-1 scaffold model on VEC-CoT-2 whose assistant
turns end with the Eq. 2 target <confidence>0.xx</confidence> (\`emocaliber stage2 label\`). The loss
covers only the encapsulated confidence <confidence>0.xx</confidence> (and the end-of-turn
token after it) of the last assistant message (Eq. 3; the reasoning and answer are context): data.custom_cls = ConfidenceOnlySFTDataset
(emocaliber_rl/verl_plugins/confidence_sft_dataset.py). A row without a confidence is an error
naming the row, raised before the first step. Language model fully fine-tuned, vision tower
frozen, lr 4e-6, 1 epoch, bf16, max length 2048; --model is the stage-1 checkpoint (OUT/final_hf).
Mask options (Hydra overrides; this recipe's YAML sets all three to true, the dataset class
defaults to false):
  data.confidence_mask.include_open_tag=true|false    train the tokens of <confidence> too (with Qwen's BPE: the '><' token)
  data.confidence_mask.include_close_tag=true|false   train the tokens of </confidence> too
  data.confidence_mask.include_end_of_turn=true|false train the end-of-turn token after it too
  data.confidence_mask.include_response=false|true    also train the response before <confidence> (not Eq. 3;
                                                      default false; the CPU demo's anchor, docs/stage2.md)
  data.confidence_mask.exclude_answer=false|true      with include_response: but not the <answer> content's tokens
                                                      (the label text; paper 4.7; default false)
  data.confidence_mask.locate=auto|token_ids|char_offsets   how the span is found (default auto)"
STAGE_EXTRA_OVERRIDES=()
# shellcheck source=lib/sft_launch.sh
source "$HERE/lib/sft_launch.sh"
sft_main "$@"
