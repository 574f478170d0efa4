"""The CPU plug-in that runs the output layer on the rows a loss reads (verl_plugins/loss_rows.py),
on the PPO side: veRL 0.9.1's own engine code (``FSDPEngineWithLMHead.prepare_model_inputs``,
``forward_step``, ``ppo_loss``, ``left_right_2_no_padding``, ``no_padding_2_padding``) on the tiny
Qwen2.5-VL and Qwen's real token ids, the plug-in against veRL's forward over every row, and both
against log-probabilities computed by hand from a plain transformers forward of each sequence.

The engine object is veRL's class with the attributes its padded-layout methods read, around the
plain (unsharded) module: FSDP does not change what the output layer is given, and the stage-1 and
stage-3 recipe tests run the plug-in inside veRL's real FSDP workers.
"""

from __future__ import annotations

import functools
import socket
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
transformer_impl = pytest.importorskip("verl.workers.engine.fsdp.transformer_impl")

from emocaliber_rl.verl_plugins import loss_rows

TEMPERATURE = 0.7
# (prompt, response) texts of three rollouts: different prompt and response lengths, so the left
# padding of the prompts and the right padding of the responses both matter
ROLLOUTS = (
    ("Which emotion does the picture evoke? Candidates: amusement, awe, anger.", "<answer>awe</answer>"),
    ("Emotion?", "<think><analysis>a bright sky</analysis></think><answer>contentment</answer><confidence>0.8"),
    ("Name the emotion of the image, one of: fear, sadness.", "<answer>fear</answer><confidence>0.35</confidence>"),
)


@pytest.fixture(scope="module")
def cpu_platform():
    """The plug-in's CPU platform as veRL's platform singleton (what ``VERL_PLATFORM=cpu`` selects in
    a worker), through veRL's own ``set_platform``; the previous singleton is put back."""
    from verl.plugin.platform import platform_manager

    from emocaliber_rl.verl_plugins.cpu_platform import PlatformCPU

    before = platform_manager._current_platform
    platform_manager.set_platform(PlatformCPU())
    yield
    platform_manager._current_platform = before


@pytest.fixture(scope="module")
def process_group(cpu_platform):
    import torch.distributed as dist

    if dist.is_initialized():  # pragma: no cover - another test left one
        yield
        return
    with socket.socket() as s:  # a free port on loopback for the one-process group
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def hand(tiny_model_dir, rollouts):
    """log softmax(logits / T)[next token] and the entropy at each response token, from a plain
    transformers forward (no veRL patch; its own rope index) of each unpadded sequence and its image."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir, dtype=torch.float32)
    _, mm, prompts, responses, _ = rollouts
    logps, ents = [], []
    with torch.no_grad():
        for inputs, p, r in zip(mm, prompts, responses, strict=True):
            logits = model(input_ids=torch.tensor([p + r]), **inputs).logits[0, len(p) - 1: len(p) + len(r) - 1]
            logits = logits / TEMPERATURE
            logp = torch.log_softmax(logits, -1)
            logps.append(logp.gather(-1, torch.tensor(r).unsqueeze(-1)).squeeze(-1))
            ents.append(-(logp.exp() * logp).sum(-1))
    return logps, ents


@pytest.fixture(scope="module")
def engine(tiny_model_dir, process_group, hand):
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as q25
    from transformers.models.qwen2_vl import modeling_qwen2_vl as q2
    from verl.models.transformers.monkey_patch import apply_monkey_patch

    # veRL patches the classes, not the instance: put transformers' own forwards back afterwards,
    # or every later test in this process would run veRL's
    patched = [(cls, cls.forward) for cls in (q25.Qwen2_5_VLModel, q25.Qwen2_5_VLForConditionalGeneration,
                                               q2.Qwen2VLModel, q2.Qwen2VLForConditionalGeneration)]
    model = q25.Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir, dtype=torch.float32)
    apply_monkey_patch(model=model, use_remove_padding=False, ulysses_sp_size=1)  # as veRL's _build_module
    eng = transformer_impl.FSDPEngineWithLMHead.__new__(transformer_impl.FSDPEngineWithLMHead)
    eng.module = model
    eng.pad_to_length = False
    eng.use_ulysses_sp = False
    eng.ulysses_device_mesh = None
    eng.ulysses_sequence_parallel_size = 1
    eng.engine_config = SimpleNamespace(entropy_checkpointing=False)
    eng._autocast_dtype = torch.float32
    yield eng
    for cls, forward in patched:
        cls.forward = forward


@pytest.fixture(scope="module")
def rollouts(tiny_model_dir):
    """veRL's rollout batch layout (``AgentLoopWorker``): left-padded prompts with one image each,
    right-padded responses, one attention mask, (text, t, h, w) position ids computed as veRL's
    ``_compute_position_ids`` does, and the processor's ``multi_modal_inputs`` per sample."""
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from .conftest import draw_image

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    rope = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir, dtype=torch.float32).model.get_rope_index
    pad = processor.tokenizer.pad_token_id
    samples = []
    for i, (question, answer) in enumerate(ROLLOUTS):
        chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        enc = processor(text=[processor.apply_chat_template(chat, add_generation_prompt=True)],
                        images=[draw_image(i, (56 + 28 * i, 56))], return_tensors="pt")
        prompt = enc["input_ids"][0].tolist()
        response = processor.tokenizer(answer, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + response])
        kinds = torch.cat([enc["mm_token_type_ids"], torch.zeros(1, len(response), dtype=enc["mm_token_type_ids"].dtype)], 1)
        vision, _ = rope(input_ids=ids, mm_token_type_ids=kinds, image_grid_thw=enc["image_grid_thw"],
                         attention_mask=torch.ones_like(ids))
        position = torch.cat([torch.arange(ids.shape[1]).view(1, 1, -1), vision.transpose(0, 1)], 1)[0]  # (4, L)
        mm = {"pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"]}
        samples.append((prompt, response, position, mm))
    width_p = max(len(p) for p, *_ in samples)
    width_r = max(len(r) for _, r, *_ in samples)
    prompts, responses, masks, positions = [], [], [], []
    for prompt, response, position, _ in samples:
        left, right = width_p - len(prompt), width_r - len(response)
        prompts.append([pad] * left + prompt)
        responses.append(response + [pad] * right)
        masks.append([0] * left + [1] * (len(prompt) + len(response)) + [0] * right)
        positions.append(torch.nn.functional.pad(position, (left, right)))
    prompt_ids, response_ids, mask = torch.tensor(prompts), torch.tensor(responses), torch.tensor(masks)
    torch.manual_seed(0)
    n = len(samples)
    batch = {
        "prompts": prompt_ids, "responses": response_ids, "input_ids": torch.cat([prompt_ids, response_ids], 1),
        "attention_mask": mask, "position_ids": torch.stack(positions), "response_mask": mask[:, width_p:],
        "old_log_probs": -torch.rand(n, width_r) * 3, "ref_log_prob": -torch.rand(n, width_r) * 3,
        "advantages": torch.randn(n, 1).expand(-1, width_r).clone(),
    }
    unpadded = [{"position_ids": s[2], "old_log_probs": batch["old_log_probs"][i, : len(s[1])],
                 "ref_log_prob": batch["ref_log_prob"][i, : len(s[1])], "advantages": batch["advantages"][i, : len(s[1])]}
                for i, s in enumerate(samples)]
    return batch, [s[3] for s in samples], [s[0] for s in samples], [s[1] for s in samples], unpadded


def _micro_batch(rollouts, layout="legacy", **flags):
    """One micro-batch as veRL's engine receives it, from either PPO trainer:

    * ``legacy`` (``RayPPOTrainer``): the padded DataProto batch through ``left_right_2_no_padding``;
    * ``v1`` (the TransferQueue trainer ``main_ppo`` runs, the demo's): each sample stored unpadded
      as ``AgentLoopWorkerTQ._agent_loop_postprocess`` stores it, stacked by ``list_of_dict_to_tensordict``
      (prompts, responses and the per-token fields nested, no attention mask).
    """
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import left_right_2_no_padding

    batch, mm, prompts, responses, unpadded = rollouts
    if layout == "legacy":
        td = tu.get_tensordict({**{k: v.clone() for k, v in batch.items()}, "multi_modal_inputs": list(mm)})
        td = left_right_2_no_padding(td)
    else:
        fields = []
        for p, r, inputs, extra in zip(prompts, responses, mm, unpadded, strict=True):
            mask = torch.ones(len(r), dtype=torch.int64)
            fields.append({"prompts": torch.tensor(p), "responses": torch.tensor(r), "input_ids": torch.tensor(p + r),
                           "response_mask": mask, "loss_mask": mask, "multi_modal_inputs": inputs,
                           **{k: v.clone() for k, v in extra.items()}})
        td = tu.list_of_dict_to_tensordict(fields)
        tu.maybe_fix_3d_position_ids(td)
    meta = {"use_remove_padding": False, "temperature": TEMPERATURE, "dp_size": 1,
            "batch_num_tokens": int(batch["response_mask"].sum()), "global_batch_size": len(ROLLOUTS)}
    tu.assign_non_tensor(td, **{**meta, **flags})
    return td


def _verl_forward_step():
    step = transformer_impl.FSDPEngineWithLMHead.forward_step
    return getattr(step, "__wrapped__", step)  # veRL's own, also where the plug-in is installed


def _plugin_forward_step(eng, micro_batch, loss_function, forward_only):
    covered = loss_rows._rows_read(eng, transformer_impl, micro_batch, loss_function, forward_only)
    assert covered is not None, "the plug-in did not take a PPO micro-batch of the CPU profile"
    return loss_rows._forward_step_on_rows(eng, transformer_impl, micro_batch, loss_function, *covered)


def test_response_rows_are_what_verl_slices():
    """By hand: samples of 3+2 and 4+1 tokens packed end to end (offsets 0, 5, 10)."""
    rows = loss_rows.response_rows(torch.tensor([3, 4]), torch.tensor([2, 1]))
    assert rows.tolist() == [2, 3, 8]


@pytest.mark.parametrize("layout", ["legacy", "v1"])
def test_forward_only_log_probs_and_entropy_match_verl_and_hand(engine, rollouts, hand, layout):
    """The old- and reference-log-probability passes (``loss_function=None``, entropy on)."""
    from verl.workers.utils.padding import no_padding_2_padding, response_from_nested

    outputs = {}
    for name, step in (("verl", functools.partial(_verl_forward_step(), engine)),
                       ("plug-in", functools.partial(_plugin_forward_step, engine))):
        mb = _micro_batch(rollouts, layout, calculate_entropy=True, compute_loss=False)
        with torch.no_grad():
            _, out = step(mb, loss_function=None, forward_only=True)
        # each trainer's own read of the response rows
        if layout == "legacy":
            outputs[name] = {k: no_padding_2_padding(v, mb) for k, v in out["model_output"].items()}
        else:
            outputs[name] = {k: response_from_nested(v, mb["response_mask"]).to_padded_tensor(0.0)
                             for k, v in out["model_output"].items()}
    assert set(outputs["plug-in"]) == {"log_probs", "entropy"}
    for key in ("log_probs", "entropy"):
        torch.testing.assert_close(outputs["plug-in"][key], outputs["verl"][key], rtol=1e-5, atol=1e-5)
    # a batched, padded forward against one sequence at a time: fp32 rounding differs by up to
    # ~1e-3 nats on log-probabilities near -12; a shifted or prompt row is off by nats
    logps, ents = hand
    for i, (lp, en) in enumerate(zip(logps, ents, strict=True)):
        torch.testing.assert_close(outputs["plug-in"]["log_probs"][i, : len(lp)], lp, rtol=1e-3, atol=5e-3)
        torch.testing.assert_close(outputs["plug-in"]["entropy"][i, : len(en)], en, rtol=1e-3, atol=5e-3)


@pytest.mark.parametrize("entropy_coeff", [None, 0.01], ids=["no-entropy", "entropy-loss"])
@pytest.mark.parametrize("layout", ["legacy", "v1"])
def test_ppo_loss_and_gradients_match_verl(engine, rollouts, layout, entropy_coeff):
    """``ppo_loss`` as the actor worker binds it (the stage-3 recipe's clip, KL loss and token-mean
    aggregation): the same loss, metrics and gradient of every parameter on both paths; with the
    entropy computed too and weighted into the loss, so that its gradient counts."""
    from verl.workers.config import FSDPActorConfig
    from verl.workers.config.optimizer import FSDPOptimizerConfig
    from verl.workers.utils.losses import ppo_loss

    config = FSDPActorConfig(strategy="fsdp2", ppo_mini_batch_size=len(ROLLOUTS), ppo_micro_batch_size_per_gpu=8,
                             use_dynamic_bsz=False, optim=FSDPOptimizerConfig(lr=1e-6), rollout_n=1,
                             use_kl_loss=True, kl_loss_coef=0.01, kl_loss_type="low_var_kl",
                             entropy_coeff=entropy_coeff or 0.0)
    loss_fn = functools.partial(ppo_loss, config=config)
    results = {}
    for name, step in (("verl", functools.partial(_verl_forward_step(), engine)),
                       ("plug-in", functools.partial(_plugin_forward_step, engine))):
        engine.module.zero_grad(set_to_none=True)
        loss, out = step(_micro_batch(rollouts, layout, calculate_entropy=entropy_coeff is not None),
                         loss_function=loss_fn, forward_only=False)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in engine.module.named_parameters() if p.grad is not None}
        metrics = {k: float(v.aggregate() if hasattr(v, "aggregate") else v) for k, v in out["metrics"].items()}
        results[name] = (float(loss.detach()), grads, metrics)
    (loss_v, grads_v, metrics_v), (loss_p, grads_p, metrics_p) = results["verl"], results["plug-in"]
    assert loss_p == pytest.approx(loss_v, rel=1e-5, abs=1e-7)
    assert metrics_p == pytest.approx(metrics_v, rel=1e-4, abs=1e-7)
    assert grads_p.keys() == grads_v.keys() and grads_v
    for n in grads_v:
        torch.testing.assert_close(grads_p[n], grads_v[n], rtol=1e-4, atol=1e-7, msg=n)


def test_steps_it_does_not_cover_take_verls_path(engine, rollouts):
    """The packed layout, sum-of-pi-squared, a caller keeping the outputs, another loss and the value
    head are left to veRL."""
    from verl.workers.utils.losses import value_loss

    def rows(mb, loss_function=None, eng=engine):
        return loss_rows._rows_read(eng, transformer_impl, mb, loss_function, forward_only=loss_function is None)

    assert rows(_micro_batch(rollouts)) is not None and rows(_micro_batch(rollouts, "v1")) is not None
    assert rows(_micro_batch(rollouts, use_remove_padding=True)) is None
    assert rows(_micro_batch(rollouts, calculate_sum_pi_squared=True)) is None
    assert rows(_micro_batch(rollouts, return_model_output=True)) is None
    assert rows(_micro_batch(rollouts), loss_function=functools.partial(value_loss, config=None)) is None
    critic = transformer_impl.FSDPEngineWithValueHead.__new__(transformer_impl.FSDPEngineWithValueHead)
    critic.__dict__.update(engine.__dict__)
    assert rows(_micro_batch(rollouts), eng=critic) is None


def _forward_only_outputs(engine, rollouts) -> dict[str, dict[str, torch.Tensor]]:
    """veRL's and the plug-in's forward-only log-probabilities and entropies of one legacy
    micro-batch, padded back to (batch, response)."""
    from verl.workers.utils.padding import no_padding_2_padding

    outputs = {}
    for name, step in (("verl", functools.partial(_verl_forward_step(), engine)),
                       ("plug-in", functools.partial(_plugin_forward_step, engine))):
        mb = _micro_batch(rollouts, "legacy", calculate_entropy=True, compute_loss=False)
        with torch.no_grad():
            _, out = step(mb, loss_function=None, forward_only=True)
        outputs[name] = {k: no_padding_2_padding(v, mb) for k, v in out["model_output"].items()}
    return outputs


def test_bf16_autocast_takes_the_logits_path_and_matches_verl(engine, rollouts):
    """Under bf16 autocast the plug-in hands the read rows' logits to veRL's own log-probability
    and entropy functions (the tiled fp32 path is not used): the same values as veRL's forward over
    every row, to bf16 rounding."""
    engine._autocast_dtype = torch.bfloat16
    try:
        outputs = _forward_only_outputs(engine, rollouts)
    finally:
        engine._autocast_dtype = torch.float32
    for key in ("log_probs", "entropy"):
        torch.testing.assert_close(outputs["plug-in"][key], outputs["verl"][key], rtol=2e-2, atol=2e-2)


def test_head_with_bias_takes_the_logits_path_and_matches_verl(engine, rollouts):
    """The tiled fp32 path computes ``h . w`` alone, so an output layer with a bias (Qwen's has
    none) must take the logits path: with a bias large enough to move every log-probability, the
    plug-in still gives veRL's values."""
    head = engine.module.get_output_embeddings()
    gen = torch.Generator().manual_seed(0)
    head.bias = torch.nn.Parameter(torch.randn(head.weight.shape[0], generator=gen) * 2.0)
    try:
        outputs = _forward_only_outputs(engine, rollouts)
    finally:
        head.register_parameter("bias", None)
    for key in ("log_probs", "entropy"):
        torch.testing.assert_close(outputs["plug-in"][key], outputs["verl"][key], rtol=1e-5, atol=1e-5)
