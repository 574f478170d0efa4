"""HF transformers backend: ``AutoModelForImageTextToText`` + ``AutoProcessor``, batched
``generate`` with left padding.

Every request of one ``generate`` call that shares a :class:`SamplingConfig` (seed aside) is run as
one padded batch (``num_return_sequences = n``); requests with different settings form separate
batches.
Per-token log-probabilities come from the raw logits (``output_logits=True``), so they match
vLLM's default raw log-probabilities instead of the temperature/top-p-warped scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from emocaliber_rl.inference.engine import (
    Engine,
    Generation,
    GenerationRequest,
    RequestError,
    SamplingConfig,
    failed_generations,
    prompt_text,
)
from emocaliber_rl.limits import OFFICIAL_PIXEL_BOUNDS


class HFEngine(Engine):
    """Args:
    model_path: a local HF model directory (or hub name when online).
    dtype: ``"auto"`` (the stored dtype), ``"float32"``, ``"bfloat16"``, ``"float16"``.
    device: ``"cpu"``, ``"cuda"``, ...; default cuda when available.
    attn_implementation: passed to ``from_pretrained`` (e.g. ``"sdpa"``, ``"flash_attention_2"``).
    """

    backend = "hf"

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "auto",
        device: str | None = None,
        attn_implementation: str | None = None,
        pixel_bounds: tuple[int, int] | None = OFFICIAL_PIXEL_BOUNDS,
    ) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.model_path = model_path
        self.dtype = dtype
        self.pixel_bounds = pixel_bounds
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        kwargs: dict[str, Any] = {"dtype": dtype if dtype == "auto" else getattr(torch, dtype)}
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        self.model = AutoModelForImageTextToText.from_pretrained(model_path, **kwargs).to(self.device)
        self.model.eval()
        self.processor = AutoProcessor.from_pretrained(model_path)
        tok = self.processor.tokenizer
        # Decoder-only batching: pad on the left so every prompt ends where generation starts.
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        gen_eos = self.model.generation_config.eos_token_id
        eos = gen_eos if gen_eos is not None else tok.eos_token_id
        self._eos: set[int] = set(eos if isinstance(eos, (list, tuple)) else [eos])

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        results: dict[int, list[Generation]] = {}
        prepared: dict[int, tuple[str, list[Any]]] = {}
        # Seeds do not split a batch (one padded batch has one torch RNG): the batch is seeded
        # with its first request's seed, so results are reproducible per batch composition.
        groups: dict[SamplingConfig, list[int]] = {}
        for i, req in enumerate(requests):
            try:
                prepared[i] = prompt_text(self.processor, req, self.pixel_bounds)
            except RequestError as e:  # this request is skipped, the batch goes on
                results[i] = failed_generations(i, req.sampling.n, str(e))
                continue
            groups.setdefault(replace(req.sampling, seed=None), []).append(i)
        for key, idx in groups.items():
            sampling = replace(key, seed=requests[idx[0]].sampling.seed)
            for i, gens in zip(idx, self._generate_batch([prepared[i] for i in idx], sampling)):
                for g in gens:
                    g.request_index = i
                results[i] = gens
        return [g for i in range(len(requests)) for g in results[i]]

    def _generate_batch(
        self, prompts: Sequence[tuple[str, list[Any]]], sampling: SamplingConfig
    ) -> list[list[Generation]]:
        import torch

        texts: list[str] = []
        images: list[Any] = []
        for text, imgs in prompts:
            texts.append(text)
            images.extend(imgs)
        inputs = self.processor(
            text=texts, images=images or None, padding=True, return_tensors="pt"
        ).to(self.device)
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            # transformers refuses n > 1 for greedy search; greedy samples are identical anyway,
            # so it runs once and the completion is copied below
            "num_return_sequences": 1 if sampling.greedy else sampling.n,
            "return_dict_in_generate": True,
            "output_logits": True,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sampling.greedy:
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            gen_kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
                              top_k=None)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **gen_kwargs)
        prompt_len = inputs["input_ids"].shape[1]
        new_tokens = out.sequences[:, prompt_len:]
        # log_softmax of the raw logits, gathered at the sampled ids: (rows, steps).
        logits = torch.stack(out.logits, dim=1).float()
        chosen = torch.log_softmax(logits, dim=-1).gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
        rows: list[list[Generation]] = [[] for _ in prompts]
        for r in range(new_tokens.shape[0]):
            ids = new_tokens[r].tolist()
            lps = chosen[r].tolist()
            end = next((k + 1 for k, t in enumerate(ids) if t in self._eos), None)
            finish = "stop" if end is not None else "length"
            ids, lps = ids[: end or len(ids)], lps[: end or len(ids)]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if sampling.greedy:
                rows[r] = [Generation(text, list(ids), list(lps), finish, r, j) for j in range(sampling.n)]
            else:
                req_i, sample_i = divmod(r, sampling.n)
                rows[req_i].append(Generation(text, ids, lps, finish, req_i, sample_i))
        return rows

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
