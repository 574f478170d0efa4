"""Logits only at the rows a loss reads, for the CPU platform: SFT and PPO steps.

veRL 0.9.1's FSDP engine (``FSDPEngineWithLMHead.forward_step``) runs the output layer over every
token and takes a log-probability (and, when asked, an entropy) at each, although its consumers
read only some rows:

* ``sft_loss`` keeps the rows whose next token is under the loss mask: the assistant's response in
  stage 1, the confidence span in stage 2;
* ``ppo_loss`` and the trainers' old- and reference-log-probability passes (``loss_function=None``)
  keep the response rows alone, through ``verl.workers.utils.padding.no_padding_2_padding`` (the
  loss, the legacy trainer) or ``response_from_nested`` (the TransferQueue trainer ``main_ppo``
  runs): ``values[seq_end - response_len - 1 : seq_end - 1]`` of every sample.

With Qwen's 151,936-row output layer and a tiny body, that layer is the whole step: on a demo
stage-1 micro-batch (1,500 tokens, 400 under the loss) a forward and backward over all rows costs
3.6x one over the loss rows (``benchmarks/bench_loss_rows.py``); a demo stage-3 micro-batch has
428 response rows among 1,690 tokens, and a GRPO step fell from 52 s to 19 s (docs/measurements.md).

This wraps ``forward_step`` so that, in those cases only, a forward pre-hook hands the output layer
the hidden states of the read rows alone. In fp32 (the CPU profiles) the layer's call then
returns their log-probabilities and entropies tile by tile, without their logits matrix
(``linear_logprobs.py``: a further 2.7x on a demo stage-1 micro-batch); under bf16/fp16 autocast
it returns their logits, and veRL's own ``logprobs_from_logits`` and ``entropy_from_logits`` take
them (temperature applied as veRL does in both). The values are scattered into zero vectors of the
packed length and nested exactly as veRL nests its own, so every consumer sees the same values at
every row it reads. Rows nobody reads hold 0. Losses and gradients equal veRL's
(``tests/test_stage1_sft.py`` compares both paths step by step through the SFT trainer,
``tests/test_loss_rows.py`` the PPO loss with and without an entropy term, its gradients, and the
forward-only outputs in fp32 and under bf16 autocast, on veRL's own engine code). Only veRL's padded layout is covered, the one
the CPU profiles use (``use_remove_padding=False``: the packed layout needs flash-attn, so it cannot
run, nor be tested, on the CPU platform). Every other case (the packed layout, the value head,
other losses, fused kernels, sum-of-pi-squared, distillation, callers that keep the model
outputs, Ulysses sequence parallelism) takes veRL's path unchanged. ``EMOCALIBER_LOSS_ROWS=0``
turns it off.
"""

from __future__ import annotations

import functools
import os
from contextlib import nullcontext
from types import ModuleType

from emocaliber_rl.verl_plugins.linear_logprobs import linear_logprobs

ENV_VAR = "EMOCALIBER_LOSS_ROWS"
_MARK = "_emocaliber_loss_rows"
_FLAGS_OFF = ("use_fused_kernels", "calculate_sum_pi_squared", "distillation_use_topk", "distillation_only")
_PPO_KEYS = ("prompts", "responses")
_ANNOUNCED: set[str] = set()


def enabled() -> bool:
    return os.environ.get(ENV_VAR, "1") != "0"


def loss_rows(loss_mask):
    """Packed positions whose log-probability ``sft_loss`` reads: ``sft_loss`` rolls the mask left
    by one (position ``i`` predicts token ``i + 1``), so row ``i`` counts when ``mask[i + 1]`` is set."""
    import torch

    return torch.roll(loss_mask.to(torch.bool), shifts=-1, dims=0).nonzero().squeeze(-1)


def response_rows(prompt_lens, response_lens):
    """Packed positions ``no_padding_2_padding`` slices out of a forward's output: for a sample that
    ends at packed offset ``e``, rows ``e - r - 1 .. e - 2`` (the ``r`` response tokens, each
    predicted by the position before it)."""
    import torch

    ends = (prompt_lens + response_lens).cumsum(0)
    return torch.cat([torch.arange(int(e - r - 1), int(e - 1)) for e, r in zip(ends, response_lens, strict=True)])


def sequence_lengths(data):
    """Prompt and response lengths of each sample of a PPO micro-batch, as ``no_padding_2_padding``
    derives them: from the nested prompts and responses (the TransferQueue trainer stores each
    sample unpadded), or from the attention mask over left-padded prompts and right-padded
    responses (the legacy trainer's DataProto)."""
    prompts, responses = data["prompts"], data["responses"]
    if prompts.is_nested:
        return prompts.offsets().diff(), responses.offsets().diff()
    mask = data["attention_mask"]
    return mask[:, : prompts.shape[1]].sum(dim=1), mask[:, prompts.shape[1]:].sum(dim=1)


def packed_to_padded(rows, offsets):
    """(sample, position) in the padded ``(batch, max_len)`` layout of each packed row index."""
    import torch

    sample = torch.searchsorted(offsets, rows, right=True) - 1
    return sample, rows - offsets[sample]


def _loss_is(loss_function, name: str) -> bool:
    from verl.workers.utils import losses

    return getattr(loss_function, "func", loss_function) is getattr(losses, name)


def _rows_read(engine, module: ModuleType, micro_batch, loss_function, forward_only: bool):
    """The packed rows the step's consumers read and whether entropy is asked for, or ``None``
    where the plug-in does not cover the step (veRL's own path runs)."""
    from verl.utils import tensordict_utils as tu
    from verl.utils.dataset.dataset_utils import DatasetPadMode

    def flag(key, default=False):
        return tu.get_non_tensor_data(data=micro_batch, key=key, default=default)

    # the value head (critic) inherits forward_step with outputs of its own
    if type(engine).prepare_model_outputs is not module.FSDPEngineWithLMHead.prepare_model_outputs:
        return None
    if engine.use_ulysses_sp or flag("use_remove_padding", True) or any(flag(k) for k in _FLAGS_OFF):
        return None
    if flag("pad_mode", DatasetPadMode.NO_PADDING) != DatasetPadMode.NO_PADDING:
        return None
    if flag("return_model_output"):  # a caller that keeps the outputs may read every row
        return None
    keys = set(micro_batch.keys())
    entropy = bool(flag("calculate_entropy"))
    if loss_function is not None and _loss_is(loss_function, "sft_loss"):
        if "loss_mask" not in keys or entropy or not micro_batch["loss_mask"].is_nested:
            return None
        return loss_rows(micro_batch["loss_mask"].values()), False
    ppo = _loss_is(loss_function, "ppo_loss") if loss_function is not None else forward_only
    if not ppo or not keys.issuperset(_PPO_KEYS):
        return None
    # the legacy trainer's padded DataProto needs the mask to find the lengths; the TransferQueue
    # trainer (v1) stores each sample unpadded, so its prompts and responses are nested
    if not micro_batch["prompts"].is_nested and "attention_mask" not in keys:
        return None
    prompt_lens, response_lens = sequence_lengths(micro_batch)
    if int(micro_batch["input_ids"].offsets()[-1]) != int((prompt_lens + response_lens).sum()):
        return None  # not veRL's prompt + response packing: leave it to veRL
    return response_rows(prompt_lens, response_lens), entropy


def _announce(loss_function, rows, total: int) -> None:
    """One line per process and kind of step in the worker's log, so a run shows the plug-in took it."""
    kind = getattr(getattr(loss_function, "func", loss_function), "__name__", "forward-only log-probabilities")
    if kind not in _ANNOUNCED:
        _ANNOUNCED.add(kind)
        print(f"[emocaliber loss_rows] {kind}: output layer on {len(rows)} of {total} rows "
              f"({ENV_VAR}=0 runs veRL's forward over every row)", flush=True)


def _logits_outputs(engine, module: ModuleType, logits, labels, temperature, entropy: bool, nested) -> dict:
    """Log-probabilities and entropies from the read rows' logits, as veRL computes them (veRL's
    ``logprobs_from_logits`` and ``entropy_from_logits``): the path of bf16/fp16 autocast."""
    import torch

    if temperature is not None:
        logits = logits / temperature.unsqueeze(-1).to(logits.dtype)
    out = {}
    if entropy:  # before the log-probabilities, in veRL's order
        entropy_fn = module.verl_F.entropy_from_logits
        if engine.engine_config.entropy_checkpointing:
            picked = torch.utils.checkpoint.checkpoint(entropy_fn, logits, use_reentrant=False)
        else:
            picked = entropy_fn(logits)
        out["entropy"] = nested(picked)
    out["log_probs"] = nested(module.logprobs_from_logits(logits=logits, labels=labels))
    return out


def _forward_step_on_rows(engine, module: ModuleType, micro_batch, loss_function, rows, entropy: bool):
    """veRL's ``forward_step`` (same inputs, autocast, loss call and return) in the padded layout,
    with the output layer run on ``rows`` only."""
    import torch
    from verl.workers.engine.utils import detach_tree

    model_inputs, output_args = engine.prepare_model_inputs(micro_batch=micro_batch)
    offsets = micro_batch["input_ids"].offsets()
    total = int(offsets[-1])
    _announce(loss_function, rows, total)
    sample, position = packed_to_padded(rows, offsets)  # hidden states are (batch, max_len, H)

    head = engine.module.get_output_embeddings()
    autocast_dtype = getattr(engine, "_autocast_dtype", torch.bfloat16)
    # the tiled path computes h . w alone: a head with a bias (none in Qwen's) takes the logits path
    fp32 = autocast_dtype == torch.float32
    tiled = fp32 and getattr(head, "bias", None) is None
    autocast_ctx = (nullcontext() if fp32
                    else torch.autocast(device_type=module.get_device_name(), dtype=autocast_dtype))
    labels = output_args["input_ids_rmpad_rolled"][rows]
    temperature = None
    if not output_args.get("temperature_is_one", False):
        temperature = output_args["temperature"][sample].clamp(min=1e-8)  # one per sample in this layout

    def nested(picked):
        full = picked.new_zeros(total).index_put((rows,), picked)
        return torch.nested.nested_tensor_from_jagged(full, offsets)

    def head_on_rows(hidden):
        # inside the model's forward, where FSDP has gathered the output layer's weight: the
        # log-probabilities (and entropies) of the read rows without their logits matrix
        h = hidden.squeeze(0)
        if temperature is not None:  # (h / T) . w = (h . w) / T, veRL's logits / temperature
            h = h / temperature.unsqueeze(-1).to(h.dtype)
        return linear_logprobs(h, head.weight, labels, with_entropy=entropy)

    model_output = {}
    with autocast_ctx:
        handle = head.register_forward_pre_hook(lambda _mod, args: (args[0][sample, position].unsqueeze(0), *args[1:]))
        if tiled:
            head.forward = head_on_rows  # this call only: removed below
        try:
            raw_output = engine.module(**model_inputs, use_cache=False)
        finally:
            handle.remove()
            head.__dict__.pop("forward", None)
        if tiled:
            log_probs, entropies = raw_output.logits
            if entropy:  # the keys in veRL's order
                model_output["entropy"] = nested(entropies)
            model_output["log_probs"] = nested(log_probs)
        else:
            model_output.update(_logits_outputs(engine, module, raw_output.logits.squeeze(0), labels, temperature,
                                                entropy, nested))
        if loss_function is not None:
            loss, metrics = loss_function(model_output=model_output, data=micro_batch,
                                          dp_group=engine.get_data_parallel_group())
        else:
            loss, metrics = torch.tensor(1.0, device=module.get_device_name()), {}
    return loss, {"model_output": detach_tree(model_output), "loss": loss.detach().item(), "metrics": metrics}


def install(module: ModuleType) -> None:
    """Hook for ``verl.workers.engine.fsdp.transformer_impl``: wrap ``FSDPEngineWithLMHead.forward_step``."""
    engine_cls = module.FSDPEngineWithLMHead
    original = engine_cls.forward_step
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def forward_step(self, micro_batch, loss_function, forward_only):
        if enabled():
            micro_batch = micro_batch.to(module.get_device_id())
            covered = _rows_read(self, module, micro_batch, loss_function, forward_only)
            if covered is not None:
                return _forward_step_on_rows(self, module, micro_batch, loss_function, *covered)
        return original(self, micro_batch, loss_function, forward_only)

    setattr(forward_step, _MARK, True)
    engine_cls.forward_step = forward_step
