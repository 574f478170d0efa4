"""Confidences read from one generation (paper section 4.5, Table 5):

* **Avg** (:func:`mean_token_prob`): the mean of the sampled tokens' probabilities over the whole
  response, reasoning and answer included (also the ``E_j[p_ij]`` of Eq. 2);
* **Ans** (:func:`answer_token_prob`): the probability of the first decisive answer token, i.e.
  the first token of the content inside ``<answer>`` (leading whitespace is not decisive);
* **Verb** (:func:`verbalized_confidence`): the number the model wrote inside ``<confidence>``.

``logprobs`` are the natural-log probabilities of the sampled tokens (``Generation.logprobs``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from reward_fns.emocaliber import extract_confidence, last_block_span


def mean_token_prob(logprobs: Sequence[float]) -> float | None:
    """``mean(exp(logprob))`` over the tokens; None for an empty response."""
    if not logprobs:
        return None
    return math.fsum(math.exp(lp) for lp in logprobs) / len(logprobs)


def answer_content_start(text: str) -> int | None:
    """Character offset of the first non-whitespace character inside the *last* complete
    ``<answer>..</answer>`` block (the block ``extract_answer`` reads), or None."""
    span = last_block_span(text, "answer")
    if span is None:
        return None
    pos, close = span[1], span[2]
    while pos < close and text[pos].isspace():
        pos += 1
    return pos if pos < close else None


def _decoded_len(tokenizer: Any, token_ids: Sequence[int]) -> int:
    return len(tokenizer.decode(list(token_ids), skip_special_tokens=True))


def answer_token_index(text: str, token_ids: Sequence[int], tokenizer: Any) -> int | None:
    """Index of the token that produces the first character of the answer's content, or None.

    ``text`` must be ``tokenizer.decode(token_ids, skip_special_tokens=True)`` (what both
    backends return). Prefix decodes grow monotonically with the prefix length, so a binary
    search finds the smallest prefix whose decode reaches past that character: about
    ``log2(len)`` decodes per response instead of one per token. Works for tokenizers that spell
    ``<answer>`` as one token or as several (Qwen's, the tiny model's: ``<``, ``answer``, ``>``); where
    Qwen's BPE merges the tag's ``>`` with the answer's first letter (``>s`` of ``sadness``), that
    merged token is the one returned.
    """
    pos = answer_content_start(text)
    if pos is None:
        return None
    lo, hi = 1, len(token_ids)
    if hi == 0 or _decoded_len(tokenizer, token_ids) <= pos:
        return None
    while lo < hi:  # smallest k with len(decode(ids[:k])) > pos
        mid = (lo + hi) // 2
        if _decoded_len(tokenizer, token_ids[:mid]) > pos:
            hi = mid
        else:
            lo = mid + 1
    return lo - 1


def answer_token_prob(
    text: str, token_ids: Sequence[int], logprobs: Sequence[float], tokenizer: Any
) -> float | None:
    """``exp(logprob)`` of the first decisive answer token; None without an ``<answer>`` block."""
    k = answer_token_index(text, token_ids, tokenizer)
    return None if k is None else math.exp(logprobs[k])


def verbalized_confidence(text: str) -> float | None:
    """The verbalized confidence in the last ``<confidence>`` block (``reward_fns`` rules)."""
    return extract_confidence(text)


def confidences(
    text: str, token_ids: Sequence[int], logprobs: Sequence[float], tokenizer: Any
) -> dict[str, float | None]:
    """``{"conf_verb", "conf_ans", "conf_avg"}`` for one generation (None where undefined)."""
    return {
        "conf_verb": verbalized_confidence(text),
        "conf_ans": answer_token_prob(text, token_ids, logprobs, tokenizer),
        "conf_avg": mean_token_prob(logprobs),
    }
