"""Fix for veRL 0.9.1's 3-D position_ids when every sequence in a batch has the same length.

veRL packs a VLM batch's mrope position ids as a jagged nested tensor of per-sample ``(k, L_i)``
tensors (``verl/workers/utils/padding.py``), with the ragged dimension at index 2. When all
``L_i`` are equal - a fixed prompt template and image size with responses that all hit the
length limit, which happens on GPUs as much as on CPUs - torch sees no ragged dimension and
defaults to ragged index 1: values ``(k*B, L)``, offsets ``[0, k, 2k, ...]``.
``maybe_fix_3d_position_ids`` then forces ``_ragged_idx = 2`` on that layout and the actor update
dies in ``unbind`` with "split_with_sizes expects split_sizes to sum exactly to ...".

The replacement recognises that layout and rebuilds the same ``(k, L)`` components as a nested
tensor ragged at index 2; any other input behaves exactly as veRL's function. It is installed by
swapping the function's code object, because veRL's modules bind the function by name at import
time (``from verl.utils.tensordict_utils import maybe_fix_3d_position_ids``).
"""

from __future__ import annotations

from types import ModuleType


def maybe_fix_3d_position_ids(data):
    # Self-contained body (imports inside): it runs with the globals of veRL's module.
    import torch

    if "position_ids" not in data.keys():  # noqa: SIM118  (TensorDict keys, not a dict)
        return
    pos = data["position_ids"]
    if pos.dim() != 3 or not pos.is_nested:
        return
    if pos._ragged_idx == 1:
        offsets = pos.offsets()
        values = pos.values()
        batch = offsets.numel() - 1
        steps = offsets.diff()
        if batch > 0 and bool((steps == steps[0]).all()) and values.shape[0] == int(steps[0]) * batch:
            k = int(steps[0])
            length = values.shape[1]
            # (k*B, L) -> B components of (k, L) -> values (k, B*L) ragged along dim 2.
            new_values = values.reshape(batch, k, length).permute(1, 0, 2).reshape(k, batch * length)
            new_offsets = torch.arange(batch + 1, dtype=offsets.dtype, device=offsets.device) * length
            data["position_ids"] = torch.nested.nested_tensor_from_jagged(
                new_values.contiguous(), offsets=new_offsets, jagged_dim=2
            )
            return
    pos._ragged_idx = 2


ORIGINAL_CODE = None  # veRL's own code object, kept for the regression test and for uninstall


def install(module: ModuleType) -> None:
    """Give veRL's ``maybe_fix_3d_position_ids`` the fixed body (every bound name sees it)."""
    global ORIGINAL_CODE
    target = module.maybe_fix_3d_position_ids
    if target.__code__ is not maybe_fix_3d_position_ids.__code__:
        ORIGINAL_CODE = target.__code__
        target.__code__ = maybe_fix_3d_position_ids.__code__
