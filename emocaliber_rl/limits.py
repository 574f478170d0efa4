"""The limits the recipes' YAML also states, in one place (tests/test_limits.py ties the two).

Exports check rows against the trainers' token limits so that a row over them is reported at
export instead of stopping stage 1 mid-run (veRL's SFT ``truncation: error``) or vanishing from
stage 3 (``filter_overlong_prompts``); images carry the pixel bounds the release trains and
evaluates with. The recipes (``recipes/config/*.yaml``) are what veRL reads; these constants are
the toolkit's defaults, which must name the same numbers.
"""

from __future__ import annotations

# The official release trains and evaluates with images bounded to 256..576 28x28 patches; the
# exports and the inference engines apply them unless told otherwise (None: the processor's own
# bounds, up to 16,384 image tokens for Qwen2.5-VL, which a large photo reaches). The recipes set
# none: the bounds travel with every image of the exported parquet.
OFFICIAL_PIXEL_BOUNDS: tuple[int, int] = (200_704, 451_584)

# recipes/config/stage1_sft.yaml and stage2_sft.yaml: data.max_length (prompt, image and response).
SFT_MAX_LENGTH = 2048
# recipes/config/stage3_grpo.yaml: data.max_prompt_length and data.max_response_length (the
# release's; the CPU profile, recipes/config/grpo_profile/cpu.yaml, lowers both for the tiny model).
RL_MAX_PROMPT_LENGTH = 4096
RL_MAX_RESPONSE_LENGTH = 2048
