"""Prediction and confidence extraction from one model response.

Two prediction rules:

``strict`` (default)
    The content of ``<answer>`` (``reward_fns.emocaliber.extract_answer``), normalised with the
    task's aliases (``taxonomy.canonical_label``: case, punctuation, ``sad`` -> ``sadness``). If the
    whole content is not one label, its words are looked up one by one and exactly one distinct
    candidate must be named; an answer naming none or several candidates is *unparsed* (wrong, and
    never a class of its own). A response without ``<answer>`` is parsed only when the whole
    response is itself one label (a bare ``"Sadness."``).
``official``
    The released evaluation script's rule, kept to reproduce its numbers: lower-case the response,
    take the first ``<answer>(.*?)</answer>`` (one line only) or, when there is none or it is empty,
    the whole response; the prediction is the first candidate, in the row's candidate order, that
    is a *substring* of it, else unknown. It reads ``"sadness"`` as ``sad`` when ``sad`` comes
    first, and ``"amusement, not fear"`` as whichever of the two is listed first. Only the
    parsing is theirs: the matched candidate and the label are then compared as canonical labels
    (their script compares raw lower-cased strings, so a ``sad`` candidate never matched a
    ``sadness`` ground truth).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence

from emocaliber_rl.taxonomy import UnknownLabelError, canonical_label, get_subtask

PARSE_MODES: tuple[str, ...] = ("strict", "official")

_WORD = re.compile(r"[a-z]+")
_OFFICIAL_ANSWER = re.compile(r"<answer>(.*?)</answer>")
_FALLBACK_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_FALLBACK_CONF = re.compile(r"<confidence>\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*(%?)\s*</confidence>",
                            re.IGNORECASE)


def _fallback_extract_answer(text: str) -> str | None:
    """Private stand-in used only while ``reward_fns.emocaliber`` is absent."""
    # the last block, as the reward function reads it
    found = _FALLBACK_ANSWER.findall(text)
    return found[-1].strip() if found else None


def _fallback_extract_confidence(text: str) -> float | None:
    """Private stand-in used only while ``reward_fns.emocaliber`` is absent ("85%" -> 0.85)."""
    found = _FALLBACK_CONF.findall(text)
    if not found:
        return None
    number, percent = found[-1]
    return float(number) / 100.0 if percent else float(number)


@functools.lru_cache(maxsize=1)
def _extractors() -> tuple[Callable[[str], str | None], Callable[[str], float | None], str]:
    # The reward module is the single definition of the response format (prompts.py re-exports
    # it); the evaluation must read answers exactly as the reward did during RL.
    try:
        from reward_fns.emocaliber import extract_answer, extract_confidence
    except ImportError:
        return _fallback_extract_answer, _fallback_extract_confidence, "evaluation.parsing fallback"
    return extract_answer, extract_confidence, "reward_fns.emocaliber"


def extractor_name() -> str:
    """Which answer/confidence extractor is in use (recorded in the score JSON's ``meta``)."""
    return _extractors()[2]


def extract_answer(response: str) -> str | None:
    """Content of the response's ``<answer>`` tag, or ``None``."""
    return _extractors()[0](response)


def parse_confidence(response: str) -> float | None:
    """Verbalised confidence from ``<confidence>``; ``None`` if absent, not finite or outside [0, 1].

    Out-of-range values are *missing*, not clipped: clipping 1.3 to 1.0 would invent a statement
    the model did not make (the official script clips).
    """
    value = _extractors()[1](response)
    return valid_confidence(value)


def valid_confidence(value: object) -> float | None:
    """``value`` as a float if it is a finite number in [0, 1], else ``None``."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f) or f < 0.0 or f > 1.0:
        return None
    return f


@functools.lru_cache(maxsize=8192)
def _canonical_cached(subtask: str, text: str) -> str | None:
    try:
        return canonical_label(subtask, text)
    except UnknownLabelError:
        return None


def canonical_or_none(subtask: str, text: str) -> str | None:
    """``canonical_label`` or ``None``; cached, since 8k rows repeat a few dozen spellings."""
    if len(text) > 64:  # a long text is never one label; keep the cache small
        return None
    return _canonical_cached(subtask, text)


@functools.lru_cache(maxsize=64)
def _alias_map(subtask: str) -> dict[str, str]:
    return get_subtask(subtask).alias_map()


def _match_label(text: str, subtask: str, allowed: frozenset[str]) -> str | None:
    label = canonical_or_none(subtask, text)
    if label is not None:
        return label if label in allowed else None
    alias_map = _alias_map(subtask)
    found = {alias_map[w] for w in _WORD.findall(text.lower()) if w in alias_map}
    found &= allowed
    return next(iter(found)) if len(found) == 1 else None


def parse_strict(response: str, subtask: str, candidates: Sequence[str] | None = None) -> str | None:
    """Canonical label named by the response under the ``strict`` rule, or ``None`` (unparsed).

    Args:
        response: the model's full response.
        subtask: VECBench subtask name (misspellings tolerated).
        candidates: the row's candidate labels (any alias spelling); default: the task's labels.
    """
    allowed = allowed_labels(subtask, candidates)
    answer = extract_answer(response)
    if answer is None:
        # no <answer>: accept only a response that is, as a whole, one label
        label = canonical_or_none(subtask, response)
        return label if label in allowed else None
    return _match_label(answer, subtask, allowed)


def parse_official(response: str, subtask: str, candidates: Sequence[str]) -> str | None:
    """Canonical label under the official substring rule (see module docstring), or ``None``."""
    text = response.lower()
    m = _OFFICIAL_ANSWER.search(text)
    haystack = m.group(1) if m and m.group(1) else text
    for cand in candidates:
        if cand.lower() in haystack:
            return _canonical_cached(subtask, cand) or canonical_label(subtask, cand)
    return None


def parse_prediction(
    response: str, subtask: str, candidates: Sequence[str] | None = None, mode: str = "strict"
) -> str | None:
    """Dispatch to :func:`parse_strict` or :func:`parse_official`; ``None`` means unparsed."""
    if mode == "strict":
        return parse_strict(response, subtask, candidates)
    if mode == "official":
        cands = list(candidates) if candidates is not None else list(get_subtask(subtask).labels)
        return parse_official(response, subtask, cands)
    raise ValueError(f"unknown parse mode {mode!r}; choose from {', '.join(PARSE_MODES)}")


@functools.lru_cache(maxsize=256)
def _allowed_cached(subtask: str, candidates: tuple[str, ...] | None) -> frozenset[str]:
    if candidates is None:
        return frozenset(get_subtask(subtask).labels)
    return frozenset(canonical_label(subtask, c) for c in candidates)


def allowed_labels(subtask: str, candidates: Sequence[str] | None) -> frozenset[str]:
    """Canonical labels of ``candidates`` (default: the task's labels); cached per candidate list.

    Raises:
        UnknownLabelError: a candidate is not a label of ``subtask``.
    """
    return _allowed_cached(subtask, tuple(candidates) if candidates is not None else None)
