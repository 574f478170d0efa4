"""Stage-2 SFT dataset for veRL: the loss covers only the verbalised confidence (paper Eq. 3).

Plugged into veRL 0.9.1's SFT trainer by path, with no registration::

    data.custom_cls.path=pkg://emocaliber_rl.verl_plugins.confidence_sft_dataset
    data.custom_cls.name=ConfidenceOnlySFTDataset

It is veRL's ``MultiTurnSFTDataset`` (same parquet schema, chat templating, images, Qwen2-VL mrope
position ids, ``no_padding``/``right`` pad modes, truncation) with one change: the loss mask. veRL
trains every token of every assistant turn; Eq. 3 trains
``-log pi(c*_t | x, y, c*_<t)`` only, where ``y`` (the scaffold's reasoning and answer) is context.

Which tokens carry loss (``loss_mask == 1``; veRL's SFT loss shifts the mask by one, so a 1 at
position t trains the prediction of token t). The target is a character span of the **last**
assistant turn, made of pieces around its **last** ``</confidence>`` and the nearest ``<confidence>``
before it (the block the reward reads); the Hydra keys choose the pieces (all default false)::

      data.confidence_mask.include_open_tag=true    # the characters of <confidence>
      data.confidence_mask.include_close_tag=true   # the characters of </confidence>
      data.confidence_mask.include_end_of_turn=true # the end-of-turn token (eos, <|im_end|>) right after </confidence>
      data.confidence_mask.include_response=true    # the response before <confidence> too: NOT Eq. 3
      data.confidence_mask.exclude_answer=true      # with include_response: but not the <answer> content

* **value only** (all three false, the class default): exactly the tokens that lie entirely inside the
  value, e.g. ``0 . 8 3``. Nothing else: not the reasoning, not the answer, not earlier assistant
  turns, not the tags, not ``<|im_end|>``. A token that straddles a value edge (a BPE merge of the
  value with a tag character, e.g. ``>.`` before a value written ``.5``) carries no loss, so a tag
  character never leaks into the target; a warning reports it once.
* **with tags** (any key true): every token that overlaps a chosen piece or the value carries loss,
  boundary-straddling tokens included. On Qwen's vocabulary ``</answer><confidence>0.83</confidence>``
  is ``</ answer >< confidence > 0 . 8 3 </ confidence >``: with the open tag chosen, ``><`` (whose
  ``<`` opens ``<confidence>``) carries loss - it is *the* prediction that writes a confidence after
  ``</answer>`` instead of ending the turn, the stage-1 habit stage 2 must retrain.

  ``recipes/config/stage2_sft.yaml`` turns all three on (the "encapsulated confidence" of the
  paper, plus stopping after it: a model trained on the close tag but not on ``<|im_end|>`` learns
  to repeat ``</confidence>``). Value only is the class default because Eq. 3 is written over the
  confidence c; such a run never trains the model to *emit* ``<confidence>`` (the tag is context).

* **with the response** (``include_response``, off in every recipe but the CPU demo's): the scaffold's
  own reasoning and answer before ``<confidence>`` carry loss as well, so ``y`` is a target, not
  context: this is *not* Eq. 3. It exists for a small model trained from random at a high learning
  rate, where confidence-only SFT has nothing anchoring the other positions and the model starts
  writing confidence tokens everywhere (docs/demo-world.md measures it: the tiny cold-start model's
  answers became confidence fragments); SFT on the scaffold's own samples holds them in place.

* **the response without the answer** (``exclude_answer``, with ``include_response``; default false):
  the anchor as above, but the tokens of the content of every ``<answer>..</answer>`` block of the
  response (the label text, e.g. ``am usement``) carry no loss, so the tokens that decide the emotion
  stay out of stage 2's loss (paper section 4.7) while the rest of the response and the confidence
  are trained. A token that shares any character with the content is left out, tag characters merged
  into it included: on Qwen's vocabulary ``<answer>sadness`` is ``< answer >s ad ness``, and ``>s``
  (the decisive first answer token) carries no loss. The tags' other tokens (``<``, ``answer``,
  ``</``...) stay trained. ``exclude_answer`` changes nothing without ``include_response`` (the answer
  is context then anyway). A response with no complete answer block before ``<confidence>`` has
  nothing to leave out; a warning reports it once.

How the span is mapped to tokens (``data.confidence_mask.locate``, default ``auto``):

* ``char_offsets`` - the turn is re-rendered with the chat template, re-tokenized with offsets
  (checked to give the very same ids as veRL) and each token's characters are compared with the
  pieces above. This is the general path (every stock Qwen tokenizer, and our tiny model).
* ``token_ids`` - only when both tags are whole added tokens (a tokenizer extended with the tags):
  no token can straddle a tag, so the pieces are whole ids, found by id without a text round trip.
  Gives the same mask as ``char_offsets`` on such a tokenizer.
* ``auto`` - ``token_ids`` when possible, else ``char_offsets``.

Rows that cannot be trained are an **error naming the rows** (parquet row index and ``id`` column),
raised when the dataset is built, before any training step: no assistant turn, no
``<confidence>...</confidence>`` in the last assistant turn, an unclosed tag, or a value that is
not a number in [0, 1] by the reward's rule (``reward_fns.emocaliber.parse_confidence``:
``0.83``, ``.83``, ``83%``, ``{0.83}``). Skipping them silently would change the data the run claims to train on;
fix the parquet (``emocaliber stage2 label`` writes one confidence per row) instead. A row whose
confidence tokens are cut by truncation (``truncation=left/right``) is also an error, when read.
Several confidence pairs in one turn are allowed - only the last is the target (the appended
label of Eq. 2; earlier ones are part of the response ``y``) - and reported by a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset
from verl.utils.tokenizer.chat_template import apply_chat_template

from reward_fns.emocaliber import (
    block_content_spans,
    close_tag,
    last_block_span,
    open_tag,
    parse_confidence,
    parse_confidence_number,
)

logger = logging.getLogger(__name__)

OPEN_TAG = open_tag("confidence")
CLOSE_TAG = close_tag("confidence")
LOCATE_MODES = ("auto", "token_ids", "char_offsets")
# How many offending rows an error message lists before "... and N more".
_MAX_LISTED = 20


class ConfidenceSpanError(ValueError):
    """A row has no trainable confidence span (see the module docstring)."""


def _message_text(content: Any) -> str:
    """The text of a message whose content is a string or veRL's list of typed parts."""
    if isinstance(content, str):
        return content
    parts = []
    for part in content or []:
        if isinstance(part, dict) and part.get("type", "text") == "text" and "text" in part:
            parts.append(part["text"])
        elif isinstance(part, str):
            parts.append(part)
    return "".join(parts)


def last_confidence_span(text: str) -> tuple[int, int, int, int] | None:
    """Character offsets ``(open_start, value_start, value_end, close_end)`` of the target span.

    The confidence block the reward reads (``reward_fns.emocaliber.last_block_span``: the last
    ``</confidence>`` and the nearest ``<confidence>`` before it); ``None`` if there is none. One
    definition shared by the row check and both locate modes, so they cannot disagree about which
    pair is the target.
    """
    return last_block_span(text, "confidence")


def answer_content_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Character ranges ``(content_start, content_end)`` of the answer blocks in ``text[start:end]``
    (``reward_fns.emocaliber.block_content_spans``)."""
    return block_content_spans(text, "answer", start, end)


def row_problem(messages: Sequence[dict[str, Any]]) -> str | None:
    """Why a conversation cannot be trained on its confidence, or ``None`` when it can."""
    assistant = [m for m in messages if m.get("role") == "assistant"]
    if not assistant:
        return "no assistant message"
    text = _message_text(assistant[-1].get("content"))
    if OPEN_TAG not in text:
        return f"the last assistant message has no {OPEN_TAG}"
    span = last_confidence_span(text)
    if span is None:
        return f"the last {OPEN_TAG} of the last assistant message is not closed by {CLOSE_TAG}"
    # The reward's rule for a valid confidence (0.83, .83, 83%, {0.83}): a row the reward would
    # score as confidence-less must not become a training target.
    value = text[span[1] : span[2]]
    if parse_confidence_number(value) is None:
        return f"the confidence {value!r} is not a number"
    if parse_confidence(value) is None:
        return f"the confidence {value!r} is outside [0, 1]"
    return None


class ConfidenceOnlySFTDataset(MultiTurnSFTDataset):
    """veRL's ``MultiTurnSFTDataset`` whose loss mask is the last confidence value (Eq. 3)."""

    def __init__(self, parquet_files: str | list[str], tokenizer: Any, config: Any,
                 processor: Any = None, max_samples: int = -1) -> None:
        cfg = (config.get("confidence_mask", None) if config is not None else None) or {}
        self.include_open_tag = bool(cfg.get("include_open_tag", False))
        self.include_close_tag = bool(cfg.get("include_close_tag", False))
        # The end-of-turn token right after </confidence>: without it nothing teaches the model to
        # stop after the confidence, and a model trained on the close tag alone repeats it.
        self.include_end_of_turn = bool(cfg.get("include_end_of_turn", False))
        self._eot_reported = False
        self.include_response = bool(cfg.get("include_response", False))
        # with include_response: the <answer> content (the tokens that decide the emotion) stays out
        self.exclude_answer = bool(cfg.get("exclude_answer", False))
        self._no_answer_reported = False
        self.locate = str(cfg.get("locate", "auto"))
        if self.locate not in LOCATE_MODES:
            raise ValueError(f"data.confidence_mask.locate must be one of {LOCATE_MODES}, got {self.locate!r}")
        # Per-item state for error messages and the post-truncation check (each DataLoader worker
        # has its own copy of the dataset, so this is not shared between concurrent reads).
        self._current_item: int | None = None
        self._expected_loss_tokens: int | None = None
        self._straddle_reported = False
        super().__init__(parquet_files, tokenizer, config, processor=processor, max_samples=max_samples)

        tags_are_tokens = self._tags_are_single_tokens()
        if self.locate == "token_ids" and not tags_are_tokens:
            raise ValueError(
                f"data.confidence_mask.locate=token_ids needs {OPEN_TAG} and {CLOSE_TAG} to be whole added "
                "tokens of the tokenizer; use auto or char_offsets"
            )
        if self.locate == "token_ids" and self.include_response:
            raise ValueError("data.confidence_mask.include_response needs locate=char_offsets or auto "
                             "(the response is a character span, found by offsets)")
        self.use_token_ids = (tags_are_tokens and not self.include_response if self.locate == "auto"
                              else self.locate == "token_ids")
        if self.use_token_ids:
            self.open_id = int(self.tokenizer.convert_tokens_to_ids(OPEN_TAG))
            self.close_id = int(self.tokenizer.convert_tokens_to_ids(CLOSE_TAG))
        elif not getattr(self.tokenizer, "is_fast", False):
            raise ValueError("locating the confidence by character offsets needs a fast tokenizer (offset mapping)")
        self._check_rows()

    # ------------------------------------------------------------------------------------------
    # Set-up checks

    def _tags_are_single_tokens(self) -> bool:
        # Only an *added* token is guaranteed to come out as one id in every context; a plain
        # vocabulary entry can still be merged with its neighbours by BPE ("><").
        added = self.tokenizer.get_added_vocab()
        return OPEN_TAG in added and CLOSE_TAG in added

    def row_name(self, item: int) -> str:
        """``row N (id 'X')`` for error messages: the position in the (concatenated) parquet and its id."""
        name = f"row {item}"
        if "id" in self.dataframe.columns:
            name += f" (id {str(self.dataframe['id'].iloc[item])!r})"
        return name

    def _check_rows(self) -> None:
        problems: list[str] = []
        several = 0
        for item, messages in enumerate(self.messages):
            why = row_problem(messages)
            if why is not None:
                problems.append(f"{self.row_name(item)}: {why}")
                continue
            last = [m for m in messages if m.get("role") == "assistant"][-1]
            several += _message_text(last.get("content")).count(OPEN_TAG) > 1
        if problems:
            listed = "\n  ".join(problems[:_MAX_LISTED])
            more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
            raise ConfidenceSpanError(
                f"{len(problems)} of {len(self.messages)} rows in {list(self.parquet_files)} have no trainable "
                f"confidence (stage 2 trains only <confidence>VALUE</confidence> of the last assistant message):"
                f"\n  {listed}{more}"
            )
        if several:
            logger.warning(
                "%d of %d rows have several %s tags in the last assistant message; only the last one carries loss",
                several, len(self.messages), OPEN_TAG,
            )

    # ------------------------------------------------------------------------------------------
    # Masking

    def __getitem__(self, item: int) -> dict[str, Any]:
        self._current_item = item
        self._expected_loss_tokens = None
        res = super().__getitem__(item)
        # After veRL's truncation and padding: the target must have survived whole. A silent
        # all-zero (or partial) mask would train on nothing and still count as a sample.
        kept = int(res["loss_mask"].sum())
        if self._expected_loss_tokens is None or kept != self._expected_loss_tokens:
            raise ConfidenceSpanError(
                f"{self.row_name(item)}: {kept} of {self._expected_loss_tokens} confidence tokens left after "
                f"truncation to max_length={self.max_length} (truncation={self.truncation})"
            )
        return res

    def _process_single_message(self, index: int, message: dict[str, Any], full_message: list,
                                tools: list[dict[str, Any]] | None = None,
                                enable_thinking: bool | None = None):
        input_ids, loss_mask, attention_mask, inputs = super()._process_single_message(
            index, message, full_message, tools=tools, enable_thinking=enable_thinking
        )
        if message["role"] != "assistant":
            return input_ids, loss_mask, attention_mask, inputs
        last_assistant = max(i for i, m in enumerate(full_message) if m["role"] == "assistant")
        new_mask = torch.zeros_like(loss_mask)
        if index == last_assistant:
            positions = (
                self._positions_by_token_ids(input_ids)
                if self.use_token_ids
                else self._positions_by_offsets(input_ids, message, index, tools, enable_thinking)
            )
            if not positions:
                raise ConfidenceSpanError(f"{self._row()}: the confidence span holds no whole token")
            # veRL's own mask is 0 on the generation prompt; the target must lie inside the turn body.
            if not all(int(loss_mask[p]) == 1 for p in positions):
                raise ConfidenceSpanError(f"{self._row()}: the confidence span overlaps the generation prompt")
            new_mask[positions] = 1
            self._expected_loss_tokens = len(positions)
        return input_ids, new_mask, attention_mask, inputs

    @property
    def value_only(self) -> bool:
        return not (self.include_open_tag or self.include_close_tag or self.include_end_of_turn
                    or self.include_response)

    def _report_missing_end_of_turn(self) -> None:
        if not self._eot_reported:
            self._eot_reported = True
            logger.warning("%s: the confidence is not followed by the end-of-turn token %r; it carries no loss",
                           self._row(), self.tokenizer.eos_token)

    def _row(self) -> str:
        return self.row_name(self._current_item) if self._current_item is not None else "a row"

    def _positions_by_token_ids(self, input_ids: torch.Tensor) -> list[int]:
        # the reward's pairing (last_block_span), on token ids: the last close, the nearest open before it
        ids = input_ids.tolist()
        closes = [i for i, t in enumerate(ids) if t == self.close_id]
        if not closes:
            raise ConfidenceSpanError(f"{self._row()}: no {CLOSE_TAG} token in the last assistant message")
        close = closes[-1]
        start = next((i for i in range(close - 1, -1, -1) if ids[i] == self.open_id), None)
        if start is None:
            raise ConfidenceSpanError(f"{self._row()}: no {OPEN_TAG} token before the last {CLOSE_TAG}")
        positions = [start] * self.include_open_tag + list(range(start + 1, close)) + [close] * self.include_close_tag
        if self.include_end_of_turn:
            eot = self.tokenizer.eos_token_id
            if eot is not None and close + 1 < len(ids) and ids[close + 1] == eot:
                positions.append(close + 1)
            else:
                self._report_missing_end_of_turn()
        return positions

    def _trained_pieces(self, text: str, span: tuple[int, int, int, int],
                        content_start: int = 0) -> list[tuple[int, int]]:
        """The character ranges of ``text`` whose tokens carry loss, as configured."""
        open_start, value_start, value_end, close_end = span
        pieces = [(value_start, value_end)]
        if self.include_response:
            pieces.append((content_start, open_start))
        if self.include_open_tag:
            pieces.append((open_start, value_start))
        if self.include_close_tag:
            pieces.append((value_end, close_end))
        if self.include_end_of_turn:
            eos = self.tokenizer.eos_token
            if eos and text.startswith(eos, close_end):
                pieces.append((close_end, close_end + len(eos)))
            else:
                self._report_missing_end_of_turn()
        return pieces

    def _positions_by_offsets(self, input_ids: torch.Tensor, message: dict[str, Any], index: int,
                              tools: list[dict[str, Any]] | None, enable_thinking: bool | None) -> list[int]:
        # Re-render this one turn exactly as veRL tokenized it, then tokenize the text with offsets.
        kwargs = dict(self.apply_chat_template_kwargs)
        if enable_thinking is not None:
            kwargs["enable_thinking"] = enable_thinking
        processor = self.processor if self.processor is not None else self.tokenizer
        text = apply_chat_template(processor, [message], tools=tools, add_generation_prompt=False,
                                   tokenize=False, **kwargs)
        if isinstance(text, list):
            text = text[0]
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        offsets = list(enc["offset_mapping"])
        n = len(input_ids)
        # veRL drops the template's system-prompt prefix from later turns: compare the suffix.
        if len(ids) < n or ids[len(ids) - n :] != input_ids.tolist():
            raise ConfidenceSpanError(
                f"{self._row()}: re-tokenizing the rendered assistant message does not reproduce veRL's token ids, "
                "so character offsets cannot be mapped to tokens safely (an image in the assistant turn?)"
            )
        offsets = offsets[len(ids) - n :]
        body_start = offsets[0][0] if offsets else 0
        span = last_confidence_span(text[body_start:])
        if span is None:
            raise ConfidenceSpanError(f"{self._row()}: no {OPEN_TAG}...{CLOSE_TAG} in the last assistant message")
        span = tuple(body_start + x for x in span)
        content_start = span[0]
        if self.include_response:
            # the message's own text, not the role header the template puts before it
            content = _message_text(message.get("content"))
            content_start = text.find(content, body_start)
            if not content or content_start < 0:
                raise ConfidenceSpanError(f"{self._row()}: the rendered assistant message does not hold its content "
                                          "verbatim, so include_response cannot find the response")
        pieces = self._trained_pieces(text, span, content_start)
        if self.value_only:
            # Whole tokens inside the value: a token merged with a tag character stays out.
            lo, hi = pieces[0]
            positions = [i for i, (s, e) in enumerate(offsets) if lo <= s and e <= hi and e > s]
            straddles = [i for i, (s, e) in enumerate(offsets) if s < lo < e or s < hi < e]
            if straddles and not self._straddle_reported:
                self._straddle_reported = True
                logger.warning(
                    "%s: token %r straddles an edge of the confidence value (a BPE merge with a tag character); "
                    "with the value-only mask it carries no loss", self._row(), text[slice(*offsets[straddles[0]])],
                )
            return positions
        # Any token that shares a character with a trained piece, so that a merge such as "><"
        # (the "<" opening <confidence>) is trained rather than dropped.
        positions = [i for i, (s, e) in enumerate(offsets) if e > s and any(s < hi and lo < e for lo, hi in pieces)]
        if self.include_response and self.exclude_answer:
            # ...but never a token that shares a character with the answer's content (a token would
            # have to span all of "</answer>" to reach from the content into <confidence>)
            answers = [(lo, hi) for lo, hi in answer_content_spans(text, content_start, span[0]) if hi > lo]
            if not answers and not self._no_answer_reported:
                self._no_answer_reported = True
                logger.warning("%s: no %s..%s before %s; exclude_answer leaves nothing out",
                               self._row(), open_tag("answer"), close_tag("answer"), OPEN_TAG)
            positions = [i for i in positions
                         if not any(offsets[i][0] < hi and lo < offsets[i][1] for lo, hi in answers)]
        return positions
