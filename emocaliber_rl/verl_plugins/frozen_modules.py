"""Freeze sub-modules of the model that veRL's FSDP engine trains (``EMOCALIBER_FREEZE_MODULES``).

Stage 1 and 2 of the paper fine-tune the language model with the vision encoder frozen; veRL
0.9.1's SFT trainer has no such switch (``actor.freeze_vision_tower`` exists in its actor config
but nothing reads it). With ``EMOCALIBER_FREEZE_MODULES=visual`` (comma-separated names), every
parameter whose dotted name contains one of those components gets ``requires_grad=False`` right
after the engine loads the HF model and before FSDP wraps it: frozen parameters then never get a
gradient, so the optimizer never touches them and they stay bit-identical. A name that matches
no parameter is an error, so a typo cannot silently train the whole model.
"""

from __future__ import annotations

import functools
import logging
import os
from types import ModuleType

import torch

ENV_VAR = "EMOCALIBER_FREEZE_MODULES"
logger = logging.getLogger(__name__)


def modules_to_freeze() -> list[str]:
    return [name.strip() for name in os.environ.get(ENV_VAR, "").split(",") if name.strip()]


def freeze_modules(model: torch.nn.Module, names: list[str]) -> int:
    """Set ``requires_grad=False`` on parameters under any of ``names``; returns how many.

    Raises:
        ValueError: a name matches no parameter (the error lists the top-level modules).
    """
    frozen = 0
    for name in names:
        matched = 0
        for param_name, param in model.named_parameters():
            if name in param_name.split("."):
                param.requires_grad_(False)
                matched += param.numel()
        if matched == 0:
            top = sorted({n.split(".")[0] for n, _ in model.named_modules() if n})
            raise ValueError(
                f"{ENV_VAR}: no parameter under a module named {name!r}; "
                f"top-level modules are {top}"
            )
        frozen += matched
    return frozen


def install(module: ModuleType) -> None:
    """Wrap ``FSDPEngine._build_module`` so the freshly loaded model gets frozen parts."""
    engine_cls = module.FSDPEngine
    original = engine_cls._build_module
    if getattr(original, "_emocaliber_freeze", False):
        return

    @functools.wraps(original)
    def _build_module(self):
        model = original(self)
        names = modules_to_freeze()
        if names and not getattr(self.engine_config, "forward_only", False):
            count = freeze_modules(model, names)
            logger.warning("%s=%s: froze %d parameters", ENV_VAR, ",".join(names), count)
        return model

    _build_module._emocaliber_freeze = True  # type: ignore[attr-defined]
    engine_cls._build_module = _build_module
