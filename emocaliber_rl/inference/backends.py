"""The inference backends by name: the one map ``make_engine`` and every ``--backend`` option read.

Each entry names its engine class as ``module:Class`` and is imported only when asked for, so
``--help`` stays instant and the engine modules (which import ``engine.py``) are never imported by
it: no import circle.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emocaliber_rl.inference.engine import Engine

BACKENDS: Mapping[str, str] = MappingProxyType({
    # vLLM's offline LLM: GPU, or CPU through vLLM's CPU build
    "vllm": "emocaliber_rl.inference.vllm_engine:VLLMEngine",
    # transformers generate, batched with left padding
    "hf": "emocaliber_rl.inference.hf_engine:HFEngine",
})


def engine_class(backend: str) -> type[Engine]:
    """The engine class registered as ``backend``.

    Raises:
        ValueError: for a name not in :data:`BACKENDS`, listing the known ones.
    """
    try:
        target = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(map(repr, BACKENDS))}") from None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def make_engine(backend: str, model_path: str | os.PathLike[str], **opts: Any) -> Engine:
    """The engine of ``backend`` (a :data:`BACKENDS` name) on ``model_path``; ``opts`` go to its
    constructor."""
    return engine_class(backend)(str(model_path), **opts)
