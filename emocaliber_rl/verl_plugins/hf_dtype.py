"""Save the HF copy of a veRL checkpoint in ``EMOCALIBER_HF_DTYPE`` (the GPU profiles: bfloat16).

veRL 0.9.1 trains with fp32 master weights (``model_dtype: fp32``) and its FSDP checkpoint manager
writes the ``hf_model`` copy from the full fp32 state dict
(``verl/utils/checkpoint/fsdp_checkpoint_manager.py``, ``save_checkpoint``): it builds the model to
save with ``torch_dtype=torch.bfloat16`` (so its config.json says bfloat16) but passes the fp32
tensors to ``save_pretrained``, which writes them as they are: ~33 GB for Qwen2.5-VL-7B instead of
the ~16.6 GB of the published bf16 checkpoint, in every checkpoint. veRL has no setting for it.

The manager calls ``get_fsdp_full_state_dict`` only for that copy (veRL's own sharded model and
optimizer files are written through ``state_dict()`` of the sharded model and stay fp32, so a
resume is exact). With ``EMOCALIBER_HF_DTYPE`` set, the wrapper installed here casts the
floating-point tensors of that full state dict to it, so the HF copy matches its own config.json.
The stage recipes set ``bfloat16`` for ``--profile gpu``/``gpu-sdpa`` and leave it unset for
``--profile cpu`` (the tiny model's CPU runs compare fp32 weights exactly).
"""

from __future__ import annotations

import functools
import os
from types import ModuleType

import torch

ENV_VAR = "EMOCALIBER_HF_DTYPE"
DTYPES: dict[str, torch.dtype] = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def target_dtype() -> torch.dtype | None:
    """The dtype named by ``EMOCALIBER_HF_DTYPE``; None when unset or empty.

    Raises:
        ValueError: an unknown name (a typo must not silently keep fp32 copies).
    """
    name = os.environ.get(ENV_VAR, "").strip()
    if not name:
        return None
    if name not in DTYPES:
        raise ValueError(f"{ENV_VAR}={name!r}: expected one of {', '.join(DTYPES)}")
    return DTYPES[name]


def cast_state_dict(state_dict: dict, dtype: torch.dtype) -> dict:
    """Floating-point tensors cast to ``dtype``; integer buffers and non-tensors unchanged."""
    return {k: v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v
            for k, v in state_dict.items()}


def install(module: ModuleType) -> None:
    """Wrap ``get_fsdp_full_state_dict`` in veRL's FSDP checkpoint manager module (idempotent)."""
    original = module.get_fsdp_full_state_dict
    if getattr(original, "_emocaliber_hf_dtype", False):
        return

    @functools.wraps(original)
    def full_state_dict_in_hf_dtype(*args, **kwargs):
        state_dict = original(*args, **kwargs)
        dtype = target_dtype()
        return state_dict if dtype is None else cast_state_dict(state_dict, dtype)

    full_state_dict_in_hf_dtype._emocaliber_hf_dtype = True
    module.get_fsdp_full_state_dict = full_state_dict_in_hf_dtype
