"""SFT logits only at the rows the loss reads, for the CPU platform.

veRL 0.9.1's FSDP engine (``FSDPEngineWithLMHead.forward_step``) runs the output layer over every
token and takes a log-probability at each, although ``sft_loss`` keeps only those whose next
token is under the loss mask: the assistant's response in stage 1, the confidence span in stage 2.
With Qwen's 151,936-row output layer and a tiny body, that layer is the whole step: on a demo
stage-1 micro-batch (1,500 tokens, 400 under the loss) a forward and backward over all rows costs
3.6x one over the loss rows (``benchmarks/bench_sft_loss_rows.py``).

This wraps ``forward_step`` so that, for ``sft_loss`` only, a forward pre-hook hands the output
layer the hidden states of the loss rows alone; their log-probabilities (veRL's own
``logprobs_from_logits``, temperature applied as veRL does) are scattered into a zero vector of
the packed length and nested exactly as veRL nests its own, so ``sft_loss`` sees the same values
at every row it reads. Rows it does not read hold 0 instead of a log-probability; nothing else
in the SFT trainer reads ``log_probs``. Loss and gradients equal veRL's (``tests/test_stage1_sft.py``
compares both paths step by step). Only veRL's padded layout is covered, the one the CPU profile
uses (``use_remove_padding=False``: the packed layout needs flash-attn, so it cannot run, nor be
tested, on the CPU platform). Every other case (the packed layout, the PPO losses, fused kernels,
entropy, distillation, Ulysses sequence parallelism) takes veRL's path unchanged.
``EMOCALIBER_SFT_LOSS_ROWS=0`` turns it off.
"""

from __future__ import annotations

import functools
import os
from contextlib import nullcontext
from types import ModuleType

ENV_VAR = "EMOCALIBER_SFT_LOSS_ROWS"
_MARK = "_emocaliber_loss_rows"
_FLAGS_OFF = ("use_fused_kernels", "calculate_entropy", "calculate_sum_pi_squared", "distillation_use_topk",
              "distillation_only")


def enabled() -> bool:
    return os.environ.get(ENV_VAR, "1") != "0"


def loss_rows(loss_mask):
    """Packed positions whose log-probability ``sft_loss`` reads: ``sft_loss`` rolls the mask left
    by one (position ``i`` predicts token ``i + 1``), so row ``i`` counts when ``mask[i + 1]`` is set."""
    import torch

    return torch.roll(loss_mask.to(torch.bool), shifts=-1, dims=0).nonzero().squeeze(-1)


def packed_to_padded(rows, offsets):
    """(sample, position) in the padded ``(batch, max_len)`` layout of each packed row index."""
    import torch

    sample = torch.searchsorted(offsets, rows, right=True) - 1
    return sample, rows - offsets[sample]


def _is_sft_loss(loss_function) -> bool:
    from verl.workers.utils.losses import sft_loss

    return getattr(loss_function, "func", loss_function) is sft_loss


def _covered(engine, micro_batch, loss_function) -> bool:
    from verl.utils import tensordict_utils as tu
    from verl.utils.dataset.dataset_utils import DatasetPadMode

    if loss_function is None or not _is_sft_loss(loss_function):
        return False
    if "loss_mask" not in micro_batch.keys():  # noqa: SIM118 (TensorDict refuses `in`)
        return False
    if engine.use_ulysses_sp or tu.get_non_tensor_data(data=micro_batch, key="use_remove_padding", default=True):
        return False
    if tu.get_non_tensor_data(data=micro_batch, key="pad_mode", default=DatasetPadMode.NO_PADDING) != DatasetPadMode.NO_PADDING:
        return False
    return not any(tu.get_non_tensor_data(data=micro_batch, key=flag, default=False) for flag in _FLAGS_OFF)


def _forward_step_on_loss_rows(engine, module: ModuleType, micro_batch, loss_function):
    """veRL's ``forward_step`` (same inputs, autocast, loss call and return) in the padded layout,
    with the output layer run on the loss rows only."""
    import torch
    from verl.workers.engine.utils import detach_tree

    micro_batch = micro_batch.to(module.get_device_id())
    model_inputs, output_args = engine.prepare_model_inputs(micro_batch=micro_batch)
    offsets = micro_batch["input_ids"].offsets()
    rows = loss_rows(micro_batch["loss_mask"].values())
    sample, position = packed_to_padded(rows, offsets)  # hidden states are (batch, max_len, H)

    head = engine.module.get_output_embeddings()
    autocast_dtype = getattr(engine, "_autocast_dtype", torch.bfloat16)
    autocast_ctx = (nullcontext() if autocast_dtype == torch.float32
                    else torch.autocast(device_type=module.device_name, dtype=autocast_dtype))
    with autocast_ctx:
        handle = head.register_forward_pre_hook(lambda _mod, args: (args[0][sample, position].unsqueeze(0), *args[1:]))
        try:
            raw_output = engine.module(**model_inputs, use_cache=False)
        finally:
            handle.remove()
        logits = raw_output.logits.squeeze(0)  # (rows, vocab)
        if not output_args.get("temperature_is_one", False):
            temperature = output_args["temperature"][sample]  # one per sample in this layout
            logits = logits / temperature.clamp(min=1e-8).unsqueeze(-1).to(logits.dtype)
        labels = output_args["input_ids_rmpad_rolled"][rows]
        picked = module.logprobs_from_logits(logits=logits, labels=labels)
        log_probs = picked.new_zeros(int(offsets[-1])).index_put((rows,), picked)
        model_output = {"log_probs": torch.nested.nested_tensor_from_jagged(log_probs, offsets)}
        loss, metrics = loss_function(model_output=model_output, data=micro_batch, dp_group=engine.get_data_parallel_group())
    return loss, {"model_output": detach_tree(model_output), "loss": loss.detach().item(), "metrics": metrics}


def install(module: ModuleType) -> None:
    """Hook for ``verl.workers.engine.fsdp.transformer_impl``: wrap ``FSDPEngineWithLMHead.forward_step``."""
    engine_cls = module.FSDPEngineWithLMHead
    original = engine_cls.forward_step
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def forward_step(self, micro_batch, loss_function, forward_only):
        if enabled() and _covered(self, micro_batch, loss_function):
            return _forward_step_on_loss_rows(self, module, micro_batch, loss_function)
        return original(self, micro_batch, loss_function, forward_only)

    setattr(forward_step, _MARK, True)
    engine_cls.forward_step = forward_step
