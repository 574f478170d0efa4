"""vLLM backend: the offline ``vllm.LLM`` (GPU; CPU through vLLM's CPU build).

The prompt is the model processor's chat template (the same string the HF backend feeds), with
the PIL images as ``multi_modal_data``; vLLM expands the image placeholder itself. Each request
gets its own ``SamplingParams`` (its seed is per request), all requests go to one
``LLM.generate`` call so vLLM's scheduler batches them continuously. ``logprobs=0`` asks for
the log-probability of the sampled token only (raw logits, vLLM's default ``logprobs_mode``).

On CPU (no CUDA device) the defaults are those that work with vLLM's CPU build
(see docs/install.md): ``enforce_eager=True`` (torch.compile costs ~30 s of start
for nothing on small batches), an explicit KV-cache size (``kv_cache_memory_bytes``, 64 MiB),
without which the CPU build refuses to start on a box with little free memory, and chunked
prefill off (seeded requests crash the CPU build when a prefill is split; see ``__init__``), and
``dtype="auto"`` computing in float32: the CPUs this runs on have no bf16 matrix units (no
AVX512-BF16/AMX), where a bf16 GEMM is ~2.8x slower than fp32 (the tiny model's 151,936-row output
layer, 57 vs 21 ms a step; 64 greedy answers 120 vs 39 s, the same tokens; docs/measurements.md),
and stage 3's CPU profile rolls out in fp32 too. Scripts that use this backend need
``if __name__ == "__main__":``: the engine core is started with the multiprocessing *spawn*
method, which re-imports the main module; ``in_process=True`` (what the CLI asks for on CPU, where
it owns its process) runs the engine core and its worker in the calling process instead, ~40 s less
start on 2 cores (two fewer processes importing torch, vLLM and the tokenizer).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from emocaliber_rl.inference.engine import (
    Engine,
    Generation,
    GenerationRequest,
    RequestError,
    failed_generations,
    prompt_text,
)
from emocaliber_rl.limits import OFFICIAL_PIXEL_BOUNDS

CPU_KV_CACHE_BYTES = 64 << 20
# vLLM's default step token budget; without chunked prefill it must hold a whole prompt
CPU_MAX_NUM_BATCHED_TOKENS = 4096


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


class VLLMEngine(Engine):
    """Args:
    model_path: a local HF model directory.
    dtype: vLLM's ``dtype`` (``"auto"``, ``"float32"``, ``"bfloat16"``...).
    max_model_len: prompt + completion tokens per sequence (default: the model's).
    max_images_per_prompt: ``limit_mm_per_prompt["image"]`` (video is disabled).
    seed: engine seed (requests without their own seed draw from it).
    enforce_eager, kv_cache_memory_bytes: default ``True`` / 64 MiB on CPU, vLLM's defaults on GPU.
    in_process: run vLLM's engine core and worker in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``,
        executor ``uni``; one GPU or CPU only). vLLM's CPU worker then pins this process's torch
        threads (it replaces ``torch.set_num_threads``) and seeds the global RNGs, so only a process
        that does nothing else afterwards should ask for it: the CLI does, on CPU.
    **llm_kwargs override everything, e.g. ``enable_chunked_prefill=True`` on CPU.
    gpu_memory_utilization, tensor_parallel_size: vLLM's, for GPU runs.
    **llm_kwargs: anything else ``vllm.LLM`` accepts.
    """

    backend = "vllm"

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "auto",
        max_model_len: int | None = None,
        max_images_per_prompt: int = 1,
        seed: int = 0,
        enforce_eager: bool | None = None,
        kv_cache_memory_bytes: int | None = None,
        gpu_memory_utilization: float | None = None,
        tensor_parallel_size: int = 1,
        pixel_bounds: tuple[int, int] | None = OFFICIAL_PIXEL_BOUNDS,
        in_process: bool = False,
        **llm_kwargs: Any,
    ) -> None:
        from transformers import AutoProcessor
        from vllm import LLM

        self.model_path = model_path
        self.dtype = dtype
        self.pixel_bounds = pixel_bounds
        gpu = on_gpu()
        kwargs: dict[str, Any] = {
            "model": model_path,
            # self.dtype stays as asked: run manifests compare the flag, not its resolution
            "dtype": "float32" if dtype == "auto" and not gpu else dtype,
            "seed": seed,
            "limit_mm_per_prompt": {"image": max_images_per_prompt, "video": 0},
            "enforce_eager": (not gpu) if enforce_eager is None else enforce_eager,
            "tensor_parallel_size": tensor_parallel_size,
        }
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if not gpu:
            if kv_cache_memory_bytes is None:
                kv_cache_memory_bytes = CPU_KV_CACHE_BYTES
            # vLLM rewinds a seeded request's torch generator when it drops the token sampled at
            # the end of a partial (chunked) prefill; CPU generators cannot rewind ("CPU
            # Generator does not use offset") and the engine dies as soon as the prompts of one
            # batch exceed a step's token budget. Without chunked prefill no prefill is partial.
            kwargs["enable_chunked_prefill"] = False
            if max_model_len is not None and max_model_len > CPU_MAX_NUM_BATCHED_TOKENS:
                kwargs["max_num_batched_tokens"] = max_model_len
        if kv_cache_memory_bytes is not None:
            kwargs["kv_cache_memory_bytes"] = kv_cache_memory_bytes
        if gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        if in_process:
            if tensor_parallel_size != 1:
                raise ValueError("in_process=True runs one worker: tensor_parallel_size must be 1")
            # read by vLLM when the engine is built (vLLM sets it itself for external launchers)
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
            kwargs["distributed_executor_backend"] = "uni"
        kwargs.update(llm_kwargs)
        self.llm = LLM(**kwargs)
        self.processor = AutoProcessor.from_pretrained(model_path)

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        from vllm import SamplingParams

        if not requests:
            return []
        prompts: list[dict[str, Any]] = []
        params: list[Any] = []
        failed: dict[int, list[Generation]] = {}
        run: list[int] = []
        for i, req in enumerate(requests):
            try:
                text, images = prompt_text(self.processor, req, self.pixel_bounds)
            except RequestError as e:  # this request is skipped, the batch goes on
                failed[i] = failed_generations(i, req.sampling.n, str(e))
                continue
            run.append(i)
            prompt: dict[str, Any] = {"prompt": text}
            if images:
                prompt["multi_modal_data"] = {"image": images[0] if len(images) == 1 else images}
            prompts.append(prompt)
            s = req.sampling
            params.append(
                SamplingParams(
                    # vLLM refuses n > 1 for greedy decoding; the samples would be identical,
                    # so one is drawn and copied below
                    n=1 if s.greedy else s.n,
                    temperature=s.temperature,
                    top_p=1.0 if s.greedy else s.top_p,
                    max_tokens=s.max_new_tokens,
                    seed=s.seed,
                    logprobs=0,
                    # vLLM would detokenize every request (and its logprob token) at every step
                    # in the front-end process; one decode per finished completion below is
                    # 20-30% faster on CPU batches and gives the HF backend's exact text.
                    detokenize=False,
                )
            )
        outputs = self.llm.generate(prompts, params, use_tqdm=False) if prompts else []
        by_index = dict(zip(run, outputs))
        result: list[Generation] = []
        for i, req in enumerate(requests):
            if i in failed:
                result.extend(failed[i])
                continue
            out = by_index[i]
            comps = sorted(out.outputs, key=lambda c: c.index)
            if req.sampling.greedy:
                comps = comps[:1] * req.sampling.n
            for j, comp in enumerate(comps):
                ids = list(comp.token_ids)
                if comp.logprobs is None or len(comp.logprobs) != len(ids):
                    raise RuntimeError("vLLM returned no per-token log-probabilities")
                lps = [float(step[t].logprob) for step, t in zip(comp.logprobs, ids)]
                finish = "length" if comp.finish_reason == "length" else "stop"
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                result.append(Generation(text, ids, lps, finish, i, j))
        return result

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        # Stop the engine-core process now rather than at interpreter exit.
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        self.llm = None
