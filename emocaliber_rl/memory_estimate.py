"""Per-GPU memory of a stage run, estimated from a Qwen2.5-VL ``config.json`` before any GPU is used.

The dry run of the stage recipes (``--dry-run``, :mod:`emocaliber_rl.recipe_dry_run`) prints it so
that a user sees whether a run fits before a cluster starts. It is arithmetic on the checkpoint's
shapes and the run's settings, under the assumptions of veRL 0.9.1's FSDP engine as the recipes
configure it:

- the training model is built in ``engine.model_dtype`` (veRL's default fp32: master weights,
  ``verl/workers/engine/fsdp/transformer_impl.py``), gradients and Adam's two moments in fp32,
  all fully sharded over every GPU of the run (FSDP2); ``param_offload`` moves weights and
  gradients to host memory, ``optimizer_offload`` the moments;
- stage 3's reference model (KL loss) is a second copy in its own ``model_dtype`` (fp32 default);
- with gradient checkpointing each decoder layer keeps its bf16 input for the backward pass;
  the logits of one micro-batch are kept in bf16 and once more in fp32 (the log-softmax);
- vLLM takes ``gpu_memory_utilization`` of the card while it rolls out (stage 3). veRL frees its
  cache while the actor trains (``free_cache_engine``), so the two phases peak separately: rollout
  is the resident actor state (weights, optimizer) plus vLLM's share; training adds gradients,
  the reference model and activations to it.

It leaves out the CUDA context, NCCL buffers, the allocator's fragmentation and FSDP's gathered
layer (a few GB together), so a run needs head room above the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

GIB = 1024**3

# Qwen/Qwen2.5-VL-7B-Instruct's published config.json, the fields the estimate reads
# (https://huggingface.co/Qwen/Qwen2.5-VL-7B-Instruct/blob/main/config.json; the module shapes it
# implies, e.g. k_proj 3584->512 and the merger's 5120->5120->3584, match the printed model in
# github.com/acproject/duorou docs/qwen2.5vl_graph.md). Its parameter count by these shapes,
# 8,292,166,656, is the "8.29B params" the model page lists. Used when the model is a hub id and
# no config.json can be read locally (the dry run downloads nothing).
QWEN2_5_VL_7B_INSTRUCT: dict = {
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "tie_word_embeddings": False,
    "vision_config": {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "in_chans": 3,
        "out_hidden_size": 3584,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
}
KNOWN_CONFIGS: dict[str, dict] = {"Qwen/Qwen2.5-VL-7B-Instruct": QWEN2_5_VL_7B_INSTRUCT}

DTYPE_BYTES: dict[str, int] = {"fp32": 4, "float32": 4, "bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2}


def _text_config(config: dict) -> dict:
    # transformers 5 writes the language model's sizes under text_config; 4.x at the top level
    return {**config, **config.get("text_config", {})}


def parameter_counts(config: dict) -> tuple[int, int]:
    """``(language_model, vision_tower)`` parameter counts of a Qwen2.5-VL checkpoint, from its
    config.json: decoder layers (q/k/v with bias, o without, SwiGLU MLP, two RMSNorms), embedding,
    LM head unless tied, final norm; the vision tower's Conv3d patch embedding (no bias), its
    blocks (qkv and proj with bias, SwiGLU MLP with bias, two RMSNorms) and the patch merger."""
    t = _text_config(config)
    h, inter, layers, vocab = t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"], t["vocab_size"]
    kv = t["num_key_value_heads"] * (h // t["num_attention_heads"])
    layer = (h * h + h) + 2 * (h * kv + kv) + h * h + 3 * h * inter + 2 * h
    lm = vocab * h * (1 if t.get("tie_word_embeddings", False) else 2) + layers * layer + h

    v = config["vision_config"]
    vh, vi = v["hidden_size"], v["intermediate_size"]
    block = (vh * 3 * vh + 3 * vh) + (vh * vh + vh) + 2 * (vh * vi + vi) + (vi * vh + vh) + 2 * vh
    patch = v.get("in_chans", 3) * v["temporal_patch_size"] * v["patch_size"] ** 2 * vh
    merged = vh * v["spatial_merge_size"] ** 2
    merger = vh + (merged * merged + merged) + (merged * v["out_hidden_size"] + v["out_hidden_size"])
    return lm, patch + v["depth"] * block + merger


@dataclass(frozen=True)
class RunShape:
    """What the estimate needs from a composed stage config."""

    world_size: int  # GPUs the model is sharded over (nodes x GPUs per node)
    tokens_per_micro_batch: int  # tokens one GPU forwards at once (dynamic batch: its token cap)
    train_vision: bool  # stage 3 trains the vision tower; stages 1-2 freeze it
    model_dtype: str = "fp32"
    ref_dtype: str | None = None  # stage 3: the reference model's dtype; None: no reference model
    vllm_fraction: float = 0.0  # vLLM's gpu_memory_utilization; 0: no rollout
    gpu_memory_gib: float = 80.0
    # FSDP's CPU offload: parameters (and with them gradients) or optimizer states live in host memory
    param_offload: bool = False
    optimizer_offload: bool = False
    ref_offload: bool = False  # the reference model's parameters in host memory


def estimate(config: dict, run: RunShape) -> dict[str, float]:
    """Bytes per GPU, by part, and the two phases' peaks (keys ``weights``, ``gradients``,
    ``optimizer``, ``reference``, ``activations``, ``vllm``, ``training_peak``, ``rollout_peak``)."""
    lm, vision = parameter_counts(config)
    total = lm + vision
    trainable = total if run.train_vision else lm
    w = run.world_size
    t = _text_config(config)
    tokens = run.tokens_per_micro_batch
    parts = {
        "weights": 0.0 if run.param_offload else total * DTYPE_BYTES[run.model_dtype] / w,
        "gradients": 0.0 if run.param_offload else trainable * 4 / w,
        # Adam: exp_avg and exp_avg_sq in fp32
        "optimizer": 0.0 if run.optimizer_offload else trainable * 8 / w,
        "reference": total * DTYPE_BYTES[run.ref_dtype] / w if run.ref_dtype and not run.ref_offload else 0.0,
        # checkpointed bf16 layer inputs + the micro-batch's logits in bf16 and fp32
        "activations": t["num_hidden_layers"] * tokens * t["hidden_size"] * 2 + tokens * t["vocab_size"] * (2 + 4),
        "vllm": run.vllm_fraction * run.gpu_memory_gib * GIB,
    }
    resident = parts["weights"] + parts["optimizer"]
    parts["training_peak"] = resident + parts["gradients"] + parts["reference"] + parts["activations"]
    parts["rollout_peak"] = resident + parts["vllm"]
    return parts


def report(config: dict, run: RunShape) -> list[str]:
    """The estimate as lines for a terminal, in GiB, with whether each phase fits the card."""
    lm, vision = parameter_counts(config)
    parts = estimate(config, run)
    lines = [(f"parameters: {lm + vision:,} ({lm:,} language model, {vision:,} vision tower); "
              f"sharded over {run.world_size} GPU(s), {run.gpu_memory_gib:g} GiB each")]
    offloaded = " offloaded to host"
    labels = {"weights": f"weights ({run.model_dtype}{offloaded if run.param_offload else ''})",
              "gradients": f"gradients (fp32, trainable{offloaded if run.param_offload else ''})",
              "optimizer": f"Adam moments (fp32, trainable{offloaded if run.optimizer_offload else ''})",
              "activations": f"activations ({run.tokens_per_micro_batch} tokens per micro-batch)"}
    if run.ref_dtype:
        labels["reference"] = f"reference model ({run.ref_dtype}{offloaded if run.ref_offload else ''})"
    if run.vllm_fraction:
        labels["vllm"] = f"vLLM share (gpu_memory_utilization {run.vllm_fraction:g})"
    for key, label in labels.items():
        lines.append(f"  {label:<52} {parts[key] / GIB:7.1f} GiB")
    for key, label in (("training_peak", "training phase"), ("rollout_peak", "rollout phase")):
        if key == "rollout_peak" and not run.vllm_fraction:
            continue
        gib = parts[key] / GIB
        verdict = "fits" if gib <= run.gpu_memory_gib else "DOES NOT FIT: offload or more GPUs"
        lines.append(f"  {label + ' peak':<52} {gib:7.1f} GiB  ({verdict})")
    return lines


def checkpoint_bytes(config: dict, run: RunShape, hf_dtype: str | None) -> dict[str, float]:
    """Disk of one veRL checkpoint, by part: the model shards in ``model_dtype`` (every parameter),
    Adam's two fp32 moments of the trainable parameters, and the HF copy in ``hf_dtype`` (None: no
    ``hf_model`` in save_contents). veRL's small ``extra`` state (RNG, scheduler) is left out."""
    lm, vision = parameter_counts(config)
    total = lm + vision
    trainable = total if run.train_vision else lm
    parts = {"model": total * DTYPE_BYTES[run.model_dtype], "optimizer": trainable * 8.0,
             "hf_model": total * DTYPE_BYTES[hf_dtype] if hf_dtype else 0.0}
    parts["total"] = sum(parts.values())
    return parts


def host_bytes(config: dict, run: RunShape) -> float:
    """Host memory one GPU's offloaded state takes (what ``estimate`` leaves off the GPU)."""
    on_gpu = estimate(config, run)
    kept = estimate(config, replace(run, param_offload=False, optimizer_offload=False, ref_offload=False))
    return sum(kept[k] - on_gpu[k] for k in ("weights", "gradients", "optimizer", "reference"))


def smoke_plan(config: dict, run: RunShape, gpus_per_node: int, host_memory_gib: float) -> tuple[str, list[str]]:
    """How recipes/gpu_smoke.sh runs its 7B step on the GPUs it found: ``full`` (no offload) when
    both phases fit the card, else ``offload`` (actor parameters and optimizer, reference model)
    when they fit that way and the node's host memory holds what is offloaded, else ``skip``.
    Returns the plan and the lines saying why."""
    full = estimate(config, run)
    peak = max(full["training_peak"], full["rollout_peak"]) / GIB
    lines = [f"without offload: {peak:.1f} GiB per GPU of {run.gpu_memory_gib:.1f}"]
    if peak <= run.gpu_memory_gib:
        return "full", lines
    off = replace(run, param_offload=True, optimizer_offload=True, ref_offload=bool(run.ref_dtype))
    parts = estimate(config, off)
    peak = max(parts["training_peak"], parts["rollout_peak"]) / GIB
    host = host_bytes(config, off) * gpus_per_node / GIB
    lines.append(f"with parameter, optimizer and reference offload: {peak:.1f} GiB per GPU, "
                 f"{host:.1f} GiB of host memory for {gpus_per_node} GPU(s) of {host_memory_gib:.1f} GiB available")
    if peak <= run.gpu_memory_gib and host <= host_memory_gib:
        return "offload", lines
    return "skip", lines


def smoke_report(gpus: int, gpu_memory_mib: float, host_memory_kib: float, tokens: int = 16384,
                 vllm: float = 0.6) -> list[str]:
    """recipes/gpu_smoke.sh's plan for its stage-3 step with Qwen2.5-VL-7B-Instruct's shapes on one
    node of ``gpus`` cards (the smallest card's memory, /proc/meminfo's MemAvailable): the reasons,
    then ``plan: full|offload|skip`` as the last line."""
    run = RunShape(world_size=gpus, tokens_per_micro_batch=tokens, train_vision=True, ref_dtype="fp32",
                   vllm_fraction=vllm, gpu_memory_gib=gpu_memory_mib / 1024)
    plan, lines = smoke_plan(QWEN2_5_VL_7B_INSTRUCT, run, gpus, host_memory_kib / 1024**2)
    return [*lines, f"plan: {plan}"]
