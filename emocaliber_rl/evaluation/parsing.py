"""Prediction and confidence extraction from one model response.

Two prediction rules:

``strict`` (default)
    The paper's I(e), the very function the stage-3 reward and stage-2 labelling use
    (``reward_fns.emocaliber.answer_label``): the content of the last ``<answer>`` must name
    exactly one of the row's candidates, as whole words, with the task's aliases (case and
    punctuation ignored; ``sad`` -> ``sadness``; ``"It is awe."`` names awe). An answer naming
    none or several candidates is *unparsed* (wrong, and never a class of its own). A response
    without ``<answer>`` is parsed only when the whole response is itself one label (a bare
    ``"Sadness."``, for baselines that ignore the format); the reward scores such a response
    wrong, which only matters for models not trained on the format.
``official``
    The released evaluation script's rule (``inference/evaluate_multi_task_conf_from_merged.py``
    of github wdqqdw/EmoCaliber, lines 60-83), kept to reproduce its numbers: lower-case the
    response, take the first ``<answer>(.*?)</answer>`` (one line only) or, when there is none or
    it is empty, the whole response; the prediction is the first candidate, in the row's
    candidate order, that is a *substring* of it, else unknown. It reads ``"sadness"`` as ``sad``
    when ``sad`` comes first, and ``"amusement, not fear"`` as whichever of the two is listed
    first. The release compares the lower-cased candidate with the lower-cased ground truth as
    strings, so a candidate spelt otherwise than the ground truth (``sad`` for ``sadness``) is
    wrong there, and unparsed here. Its confidence reader is :func:`official_confidence`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence

from emocaliber_rl.taxonomy import UnknownLabelError, aliases_for, canonical_label, get_subtask
from reward_fns.emocaliber import LabelSet, answer_label, extract_answer, extract_confidence, label_set

PARSE_MODES: tuple[str, ...] = ("strict", "official")
EXTRACTOR = "reward_fns.emocaliber"

# The release's `--parse official` emulation (the one reader outside reward_fns' grammar, on purpose):
# inference/extract_verb_confidence.py line 8 and evaluate_multi_task_conf_from_merged.py line 66:
# re.search without DOTALL, so only a block on one line counts, and the first such block wins.
_OFFICIAL_ANSWER = re.compile(r"<answer>(.*?)</answer>")
_OFFICIAL_CONFIDENCE = re.compile(r"<confidence>(.*?)</confidence>")


class NotAFloat(ValueError):
    """The release's confidence reader would raise here: the release drops the whole row."""


def extractor_name() -> str:
    """Which answer/confidence extractor is in use (recorded in the score JSON's ``meta``)."""
    return EXTRACTOR


def parse_confidence(response: str) -> float | None:
    """Verbalised confidence from ``<confidence>``; ``None`` if absent, not finite or outside [0, 1].

    The reward's reader (``reward_fns.emocaliber.extract_confidence``: the last block, ``0.83``,
    ``83%``, ``{0.83}``). Out-of-range values are *missing*, not clipped: clipping 1.3 to 1.0
    would invent a statement the model did not make (the official script clips).
    """
    return valid_confidence(extract_confidence(response))


def official_confidence(response: str) -> float | None:
    """The release's verbalised confidence, before its clipping to [0, 1].

    ``inference/extract_verb_confidence.py`` lines 6-11: the first single-line
    ``<confidence>(.*?)</confidence>`` of the raw response, braces deleted, read with
    ``float()`` (so ``" 0.8 "``, ``"85"``, ``"1e-1"``, ``"inf"`` are numbers); ``None`` when there
    is no such block. Raises :class:`NotAFloat` where ``float()`` raises: the release's
    ``except Exception: continue`` (lines 39-41) then leaves the whole row out of its file.
    """
    m = _OFFICIAL_CONFIDENCE.search(response)
    if m is None:
        return None
    text = m.group(1).replace("{", "").replace("}", "")
    try:
        return float(text)
    except ValueError:
        raise NotAFloat(f"confidence {m.group(1)!r} is not a float") from None


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


@functools.lru_cache(maxsize=256)
def _label_set(subtask: str, candidates: tuple[str, ...] | None) -> LabelSet:
    labels = list(candidates) if candidates is not None else list(get_subtask(subtask).labels)
    return label_set(labels, aliases_for(subtask))


def parse_strict(response: str, subtask: str, candidates: Sequence[str] | None = None) -> str | None:
    """Canonical label named by the response under the ``strict`` rule (I(e)), or ``None``.

    Args:
        response: the model's full response.
        subtask: VECBench subtask name (misspellings tolerated).
        candidates: the row's candidate labels (any alias spelling); default: the task's labels.
    """
    labels = _label_set(subtask, tuple(candidates) if candidates is not None else None)
    answer = extract_answer(response)
    if answer is None:
        # no <answer>: accept only a response that is, as a whole, one label
        return answer_label(response, labels, match="exact")[0]
    return answer_label(answer, labels)[0]


def official_candidate(response: str, candidates: Sequence[str]) -> str | None:
    """The candidate the release's rule picks (its own spelling), or ``None`` (its "unknown")."""
    text = response.lower()
    m = _OFFICIAL_ANSWER.search(text)
    haystack = m.group(1) if m and m.group(1) else text
    for cand in candidates:
        if cand.lower() in haystack:
            return cand
    return None


def parse_official(response: str, subtask: str, candidates: Sequence[str], ground_truth: str | None = None
                   ) -> str | None:
    """Canonical label under the official substring rule (see module docstring), or ``None``.

    With ``ground_truth`` (the row's raw label), a matched candidate whose lower-cased spelling
    is not the ground truth's but maps to the same label is ``None``: the release compares the
    raw strings and scores it wrong.
    """
    cand = official_candidate(response, candidates)
    if cand is None:
        return None
    label = _canonical_cached(subtask, cand) or canonical_label(subtask, cand)
    if (ground_truth is not None and cand.lower() != ground_truth.lower()
            and label == _canonical_cached(subtask, ground_truth)):
        return None
    return label


def parse_prediction(
    response: str, subtask: str, candidates: Sequence[str] | None = None, mode: str = "strict",
    ground_truth: str | None = None,
) -> str | None:
    """Dispatch to :func:`parse_strict` or :func:`parse_official`; ``None`` means unparsed."""
    if mode == "strict":
        return parse_strict(response, subtask, candidates)
    if mode == "official":
        cands = list(candidates) if candidates is not None else list(get_subtask(subtask).labels)
        return parse_official(response, subtask, cands, ground_truth)
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
