"""One engine interface for every place that samples from a model (stage-2 generation, `eval run`,
benchmarks): a request is a chat with images plus sampling settings; a result is the sampled text,
its token ids and the log-probability of every sampled token.

Backends (``backends.make_engine``, by name from ``backends.BACKENDS``): ``"vllm"`` (vLLM's offline ``LLM``; on GPU, or on CPU through vLLM's
CPU build) and ``"hf"`` (any model transformers loads with ``AutoModelForImageTextToText``).

Log-probabilities are those of the *raw* model distribution (softmax of the logits before
temperature / top-p), for both backends: that is vLLM's default ``logprobs_mode`` and what the
paper's "predicted token probabilities derived from the model logits" (Eq. 2) and Table 5's
Ans/Avg confidences read. Sampling itself uses the temperature.
"""

from __future__ import annotations

import abc
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

IMAGE_PLACEHOLDER = "<image>"


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample. ``temperature == 0`` is greedy decoding.

    Defaults follow the official release's inference script (vLLM, temperature 0.7,
    max_new_tokens 1024). ``seed`` makes a request reproducible on vLLM (per request); on the HF
    backend one batch shares one torch generator seeded with the first request's seed.
    """

    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 1024
    seed: int | None = None
    n: int = 1

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


GREEDY = SamplingConfig(temperature=0.0)


@dataclass
class GenerationRequest:
    """One chat to complete.

    ``messages``: ``[{"role", "content"}]`` where ``content`` is a string (``<image>`` marks where
    an image goes, the convention of our parquet files and veRL's datasets) or a list of parts
    (``{"type": "text", "text"}``, ``{"type": "image"}`` or ``{"type": "image", "image": X}``).
    ``images``: PIL images or file paths, in placeholder order (parts that carry their own
    ``image`` need no entry here).
    """

    messages: list[dict[str, Any]]
    images: list[Any] = field(default_factory=list)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


@dataclass
class Generation:
    """One sampled completion of request ``request_index`` (sample ``sample_index`` of its ``n``).

    ``token_ids`` and ``logprobs`` have equal length and include the end-of-sequence token when
    the model emitted one (``finish_reason == "stop"``); ``text`` is the decoded completion
    without special tokens (our response tags are ordinary tokens and stay).
    """

    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "stop" (end of sequence), "length" (max_new_tokens reached), "error"
    request_index: int = 0
    sample_index: int = 0
    # why the request could not run (its image is missing or unreadable); text and token lists
    # are then empty, and callers report the request as skipped instead of writing a row
    error: str | None = None

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


class RequestError(ValueError):
    """One request cannot run (a missing or undecodable image, images not matching the
    placeholders); engines return an error :class:`Generation` for it and run the rest."""


def failed_generations(request_index: int, n: int, error: str) -> list[Generation]:
    """The ``n`` error generations that stand for a request that could not run."""
    return [Generation("", [], [], "error", request_index, j, error=error) for j in range(n)]


class Engine(abc.ABC):
    """A loaded model that completes batches of :class:`GenerationRequest`."""

    backend: str = ""
    model_path: str = ""

    @abc.abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Complete every request; returns ``sum(r.sampling.n)`` generations, in request order
        and, within a request, in sample order."""

    @property
    @abc.abstractmethod
    def tokenizer(self) -> Any:
        """The tokenizer whose ids ``Generation.token_ids`` are (for the probability helpers)."""

    def close(self) -> None:
        """Free the model (a vLLM engine also stops its engine-core processes)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------
# Shared message handling


def load_image(image: Any) -> Any:
    """A PIL RGB image from a PIL image or a path (``RGB`` because processors expect 3 channels)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    try:
        if isinstance(image, (str, os.PathLike)):
            with Image.open(image) as img:
                return img.convert("RGB")
        if isinstance(image, Mapping) and image.get("bytes") is not None:  # parquet image cell
            import io

            with Image.open(io.BytesIO(image["bytes"])) as img:
                return img.convert("RGB")
    except FileNotFoundError:
        raise RequestError(f"image {image}: no such file") from None
    except (OSError, Image.DecompressionBombError) as e:  # undecodable or truncated
        where = image if isinstance(image, (str, os.PathLike)) else "(bytes)"
        raise RequestError(f"image {where}: cannot decode ({e})") from None
    raise TypeError(f"cannot read an image from {type(image).__name__}")


def chat_parts(request: GenerationRequest) -> tuple[list[dict[str, Any]], list[Any]]:
    """``(messages with content-part lists, PIL images in order)`` for a chat template.

    ``<image>`` placeholders in string contents become ``{"type": "image"}`` parts; the images
    come from the parts themselves or, in order, from ``request.images``. Raises ValueError when
    the counts disagree: a silently dropped image would make the model answer blind. Raises
    :class:`RequestError` (a ValueError) for a missing or unreadable image or a count mismatch.
    """
    supplied = list(request.images)
    used = 0
    images: list[Any] = []
    out: list[dict[str, Any]] = []
    for msg in request.messages:
        content = msg["content"]
        parts: list[dict[str, Any]] = []
        if isinstance(content, str):
            pieces = content.split(IMAGE_PLACEHOLDER)
            for i, piece in enumerate(pieces):
                if i > 0:
                    parts.append({"type": "image"})
                    if used >= len(supplied):
                        raise RequestError("more <image> placeholders than images in the request")
                    images.append(load_image(supplied[used]))
                    used += 1
                if piece:
                    parts.append({"type": "text", "text": piece})
        else:
            for part in content:
                if part.get("type") == "image" or "image" in part:
                    if part.get("image") is not None:
                        images.append(load_image(part["image"]))
                    else:
                        if used >= len(supplied):
                            raise RequestError("more image parts than images in the request")
                        images.append(load_image(supplied[used]))
                        used += 1
                    parts.append({"type": "image"})
                else:
                    parts.append({"type": "text", "text": part.get("text", "")})
        # A system turn that is pure text stays a string: some chat templates only accept that.
        if msg["role"] == "system" and all(p["type"] == "text" for p in parts):
            out.append({"role": "system", "content": "".join(p["text"] for p in parts)})
        else:
            out.append({"role": msg["role"], "content": parts})
    if used != len(supplied):
        raise RequestError(f"request has {len(supplied)} images but uses {used}")
    return out, images


def bound_images(images: list[Any], pixel_bounds: tuple[int, int] | None) -> list[Any]:
    """Resize images into ``[min_pixels, max_pixels]`` as qwen-vl-utils does for veRL's training
    data, so a model sees images at the resolution it was trained at (the official release uses
    200,704..451,584 at training and inference); ``None`` leaves them to the model's processor."""
    if pixel_bounds is None:
        return images
    from qwen_vl_utils import fetch_image

    lo, hi = pixel_bounds
    return [fetch_image({"image": img, "min_pixels": lo, "max_pixels": hi}) for img in images]


def prompt_text(processor: Any, request: GenerationRequest,
                pixel_bounds: tuple[int, int] | None = None) -> tuple[str, list[Any]]:
    """The templated prompt string (with the model's image tokens) and the PIL images."""
    messages, images = chat_parts(request)
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text, bound_images(images, pixel_bounds)


def request_seed(base_seed: int | None, item_id: str) -> int | None:
    """Per-item seed derived from a run seed and the item id. vLLM seeds each request, so the
    same id draws the same sample in a resumed run as in an unbroken one, whatever batch it lands
    in (up to batch-dependent floating-point differences); the HF backend seeds a whole batch with
    its first request's seed."""
    if base_seed is None:
        return None
    return (base_seed * 1_000_003 + zlib.crc32(item_id.encode("utf-8"))) % (2**31)
