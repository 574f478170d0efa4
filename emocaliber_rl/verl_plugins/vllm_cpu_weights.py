"""Let vLLM's CPU build take in-place weight updates (veRL's actor -> rollout weight sync).

vLLM's CPU ``UnquantizedLinearMethod.process_weights_after_loading`` calls
``dispatch_cpu_unquantized_gemm(layer, remove_weight=True)``, which pre-packs the weight for
oneDNN and replaces ``layer.weight`` by an empty Parameter without ``weight_loader``. veRL's first
weight sync then fails in ``model.load_weights`` with "'Parameter' object has no attribute
'weight_loader'". For 2-D weights the replacement keeps the original Parameter and computes with
``torch.nn.functional.linear`` on it, so updated weights are used at once; everything else goes to
vLLM's function. It is applied only in processes that load veRL's rollout (where the plug-in is
imported), so plain vLLM inference keeps the pre-packed kernels.
"""

from __future__ import annotations

from types import ModuleType

import torch


def install(module: ModuleType) -> None:
    original = module.dispatch_cpu_unquantized_gemm
    if getattr(original, "_emocaliber_plain_linear", False):
        return

    def dispatch_cpu_unquantized_gemm(layer: torch.nn.Module, remove_weight: bool) -> None:
        if not layer.weight.is_meta and layer.weight.ndim == 2:
            layer.cpu_linear = torch.nn.functional.linear
            return
        original(layer, remove_weight)

    dispatch_cpu_unquantized_gemm._emocaliber_plain_linear = True  # type: ignore[attr-defined]
    dispatch_cpu_unquantized_gemm.__wrapped__ = original  # type: ignore[attr-defined]
    module.dispatch_cpu_unquantized_gemm = dispatch_cpu_unquantized_gemm
