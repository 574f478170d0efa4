"""Token length of an exported row, so that rows over the trainer's limit are reported at export
instead of stopping stage 1 mid-run (veRL's SFT ``truncation: error``) or vanishing from stage 3
(veRL's RL ``filter_overlong_prompts``, which drops them with only a dataset-size log line).

Image tokens are exact for Qwen2-VL/2.5-VL: veRL hands each image dict to qwen-vl-utils'
``fetch_image``, which resizes it with ``smart_resize(h, w, factor=28, min_pixels, max_pixels)``
(28 = patch 14 x spatial merge 2; without bounds qwen-vl-utils' own 4..16384 tokens apply), and the
processor turns the resized image into ``h/28 * w/28`` ``<|image_pad|>`` tokens. Text tokens need
the model's tokenizer: with one, the row's chat template is tokenized as veRL does (image
placeholder as ``<|vision_start|><|image_pad|><|vision_end|>``); without one only the image tokens
are counted, a lower bound of the row's length.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

# qwen-vl-utils 0.0.14 (vision_process.py): IMAGE_MIN_TOKEN_NUM, IMAGE_MAX_TOKEN_NUM, patch factor.
_FACTOR = 28
_DEFAULT_BOUNDS = (4 * _FACTOR ** 2, 16384 * _FACTOR ** 2)
_IMAGE_SPAN = "<|vision_start|><|image_pad|><|vision_end|>"


def image_tokens(width: int, height: int, pixel_bounds: tuple[int, int] | None) -> int:
    """``<|image_pad|>`` tokens of a ``width`` x ``height`` image after qwen-vl-utils' resize."""
    from qwen_vl_utils import smart_resize

    lo, hi = pixel_bounds if pixel_bounds is not None else _DEFAULT_BOUNDS
    h, w = smart_resize(height, width, factor=_FACTOR, min_pixels=lo, max_pixels=hi)
    return (h // _FACTOR) * (w // _FACTOR)


def image_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:  # reads the header only
        return img.size


@dataclass
class LengthCheck:
    """Counts rows against ``max_length``; ``tokenizer`` (a path or hub id) adds the text tokens."""

    max_length: int
    tokenizer: str | None = None

    def __post_init__(self) -> None:
        if self.max_length <= 0:
            raise ValueError(f"max_length must be positive, got {self.max_length}")
        self._tok: Any = None
        if self.tokenizer is not None:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(self.tokenizer)

    @property
    def exact(self) -> bool:
        return self._tok is not None

    def tokens(self, messages: list[dict[str, str]], image_data: bytes, pixel_bounds: tuple[int, int] | None,
               *, add_generation_prompt: bool) -> int:
        n_image = image_tokens(*image_size(image_data), pixel_bounds)
        if self._tok is None:
            return n_image
        msgs = [{"role": m["role"], "content": m["content"].replace("<image>", _IMAGE_SPAN)} for m in messages]
        ids = self._tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=add_generation_prompt)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return len(ids) - 1 + n_image  # the one <|image_pad|> placeholder becomes n_image tokens

    def problem(self, n_tokens: int) -> str | None:
        """The report detail when ``n_tokens`` exceed the limit, else ``None``."""
        if n_tokens <= self.max_length:
            return None
        what = "tokens" if self.exact else "image tokens alone (text not counted: no --tokenizer)"
        return (f"{n_tokens} {what} > max length {self.max_length}: the trainer would stop (SFT) or drop "
                "the row (RL); left out of the export (raise the limit, bound the pixels or shorten the row)")
