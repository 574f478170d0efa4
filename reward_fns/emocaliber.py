"""EmoCaliber stage-3 reward for veRL (paper section 3.3, Eq. 4 and Eq. 6). Standard library only.

Point any veRL project at this file without installing emocaliber-rl::

    reward.custom_reward_function.path=/path/to/reward_fns/emocaliber.py
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs={preset: paper, conf_reward: loglik}

The response format (strict; this is what ``format == 1`` means)
------------------------------------------------------------------
After stripping leading/trailing whitespace the response must read, with ``ws`` standing for
optional whitespace (spaces, tabs, newlines) and nothing else::

    <think> ws <element>T</element> ws <human>T</human> ws <context>T</context> ws
    <interaction>T</interaction> ws <analysis>T</analysis> ws </think> ws
    <answer>T</answer> ws <confidence>NUMBER</confidence>

* every one of the 16 tags appears exactly once, in this order, spelled exactly so (lower case,
  no attributes, no spaces inside the brackets); a repeated, nested, missing or out-of-order tag
  fails;
* ``T`` is any text holding at least one non-whitespace character and none of the 16 tags;
* no text before ``<think>``, between the blocks, or after ``</confidence>``;
* the whole response is at most ``MAX_RESPONSE_CHARS`` (200,000) characters;
* ``NUMBER`` is what :func:`parse_confidence` accepts: ``0.83``, ``.83``, ``1``, ``83%``,
  ``{0.83}`` (ASCII digits, at most one dot, an optional trailing ``%`` meaning /100, optionally
  wrapped in one pair of braces, surrounding whitespace allowed, at most 32 characters), whose
  value lies in [0, 1]. Signs, exponents, ``nan``, several numbers, words fail.

Every stage reads and writes responses through this module: readers take the *last* block
(:func:`last_block_span`: the last closing tag and the nearest opening tag before it; tags in
lower case only) and a confidence is valid exactly when :func:`parse_confidence` accepts it;
writers use :func:`format_response`, :func:`format_block` and :func:`format_confidence` (two
decimals). ``tests/test_response_contract.py`` holds every stage's reader to this.

Scoring, preset ``paper`` (default): ``score = w_format*R_format + w_correct*R_correct +
w_conf*R_conf`` with all weights 1 (paper: ``R = R_conf + R_correct + R_format``).

* ``R_format``: 1 if the strict format above holds, else 0.
* ``R_correct``: the paper's indicator I(e), 1 if the answer names the ground truth and no
  other candidate label, else 0 (:func:`is_correct`, ``match="label"``; the same function labels
  stage 2 and scores evaluation). Label spellings: the candidates, the taxonomy's aliases
  (:data:`LABEL_ALIASES`, always on, so ``sad`` names sadness without any ``extra_info``), and
  any ``aliases`` given in ``extra_info`` or ``reward_kwargs``. Inside a sentence an alias that is
  also an everyday word with another sense (:data:`WEAK_SPELLINGS`: ``content`` as in "the
  content of", ``afraid`` as in "I'm afraid that") names its label only when no other spelling
  names one (:func:`answer_label`). The answer is the strict parse's, or when the format fails the
  content of the last ``<answer>..</answer>`` (:func:`extract_answer`): each term is scored on its
  own, as a sum.
* ``R_conf`` (``conf_reward="loglik"``, Eq. 4): ``i*log(c') + (1-i)*log(1-c')`` with
  ``c' = min(max(c, eps), 1-eps)``, ``eps = 0.01`` by default: stage 2 verbalises confidences
  with two decimals, so ``0.00``/``1.00`` are scored as ``0.01``/``0.99`` and the worst finite
  penalty is ``log(0.01) = -4.605``. ``conf_reward="brier"`` (Eq. 6): ``-(i - c)^2``. A missing or
  invalid confidence (last ``<confidence>`` block when the format fails) gets the floor:
  ``log(eps)`` resp. ``-1``.
* ``format_fail_score`` (default ``None``): when set, the score of any response failing the
  format is this number instead of the sum.

Bounds (paper preset, non-negative weights): ``w_conf*log(eps) <= score <= w_format + w_correct
+ w_conf*log(1-eps)`` for ``loglik``, ``-w_conf <= score <= w_format + w_correct`` for
``brier``; with default weights ``[-4.6052, 1.9900]`` resp. ``[-1, 2]``.

Preset ``official`` reproduces ``train/cus_reward.py`` of the authors' release
(wdqqdw/EmoCaliber) exactly, keys and values, in linear time: its format check only asks that the
first ``<think>..</think>`` holds each step's tag pair somewhere and that ``<answer>..</answer>``
and ``<confidence>..</confidence>`` exist anywhere; ``c = float(text)`` must satisfy
``0 < c < 1``; then ``score = 1 + 2*(i*log c + (1-i)*log(1-c)) + i``, else ``score = -5``.
Correct (``i``): the first answer, ASCII punctuation deleted, lower-cased, is exactly one word
equal to ``ground_truth.lower()``. Bounds: ``score < 2`` and, since ``float`` lets any ``c`` in
(0, 1) through down to ``5e-324`` (``"1e-300"`` too), ``score >= 1 + 2*log(5e-324) = -1487.9``.

Every search here is ``str.find``/``str.rfind`` over the text plus bounded work per tag, so the
cost is linear in the response length even for megabytes of repeated tags, where a
``re.search(r"<think>(.*?)</think>")`` per tag goes quadratic.
"""

# No ``from __future__ import annotations``: veRL's load_extern_object executes this file without
# entering it in sys.modules, and @dataclass resolves string annotations through
# sys.modules[cls.__module__], which then crashes the load. Real annotations need Python >= 3.10.
import json
import math
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = [
    "LABEL_ALIASES",
    "MATCH_MODES",
    "PRESETS",
    "STEP_TAGS",
    "TAGS",
    "TAG_PAIRS",
    "WEAK_SPELLINGS",
    "LabelSet",
    "ParsedResponse",
    "all_blocks",
    "answer_label",
    "block_content_spans",
    "close_tag",
    "compute_score",
    "compute_score_batch",
    "confidence_reward",
    "extract_answer",
    "extract_confidence",
    "extract_confidence_number",
    "first_block",
    "format_block",
    "format_confidence",
    "format_response",
    "is_correct",
    "label_set",
    "last_block_span",
    "normalize_answer",
    "official_compute_score",
    "open_tag",
    "parse_confidence",
    "parse_confidence_number",
    "parse_response",
]

STEP_TAGS: tuple[str, ...] = ("element", "human", "context", "interaction", "analysis")
BLOCK_TAGS: tuple[str, ...] = ("think",) + STEP_TAGS + ("answer", "confidence")
TAGS: tuple[str, ...] = tuple(f"<{n}>" for n in BLOCK_TAGS) + tuple(f"</{n}>" for n in BLOCK_TAGS)
# The same 16 tags as opening/closing pairs in the order a response nests them.
TAG_PAIRS: tuple[str, ...] = tuple(t for n in BLOCK_TAGS for t in (f"<{n}>", f"</{n}>"))

# Longer confidence strings cannot be a two-decimal verbalised number; the cap also keeps float()
# off megabyte-long digit runs.
MAX_CONFIDENCE_CHARS = 32
# No label is longer than this; an answer beyond it is wrong without further scanning.
MAX_ANSWER_CHARS = 1000
# Stage 3 samples at most 2,048 tokens (~10 KB); a response 20x longer is degenerate, fails the
# format at once and skips the per-tag checks, which cost up to 16 scans of the text.
MAX_RESPONSE_CHARS = 200_000

# Tag sequence of a well-formed response: (tag, kind of the text that precedes it).
# "ws": whitespace only; "text": non-empty content without tags; "conf": a confidence number.
_SEQUENCE: tuple[tuple[str, str], ...] = (
    ("<think>", "ws"),
    *((t, k) for step in STEP_TAGS for t, k in ((f"<{step}>", "ws"), (f"</{step}>", "text"))),
    ("</think>", "ws"),
    ("<answer>", "ws"),
    ("</answer>", "text"),
    ("<confidence>", "ws"),
    ("</confidence>", "conf"),
)

# A word is a run of Unicode letters or digits: any other character (ASCII or CJK punctuation,
# curly quotes, dashes, underscores) separates words, so "“Awe”。" reads as "awe".
_WORDS = re.compile(r"[^\W_]+")
_PUNCT_DELETE = str.maketrans("", "", string.punctuation)
_DIGITS = frozenset("0123456789")

# The label aliases of every taxonomy (emocaliber_rl.taxonomy.ALIASES is this table): their one
# home is here, so that the reward, loaded by path without emocaliber_rl, reads answers as stage 2
# and evaluation do.
LABEL_ALIASES: dict[str, str] = {
    # WebEmo category.txt misspellings
    "cheerfullness": "cheerfulness",
    "irritabilty": "irritability",
    # NRC VAD v1 has 'enthralled' but not 'enthrallment'
    "enthralled": "enthrallment",
    # Abstract / ArtPhoto file-name spellings and common adjective forms
    "amused": "amusement",
    "angry": "anger",
    "content": "contentment",
    "contented": "contentment",
    "disgusted": "disgust",
    "excited": "excitement",
    "fearful": "fear",
    "afraid": "fear",
    "sad": "sadness",
    "awed": "awe",
    # polarity spellings
    "pos": "positive",
    "neg": "negative",
}
# Aliases that are also everyday words with another sense ("the content of this image", "I'm
# afraid it is awe"): inside a longer answer they name their label only when no other spelling
# names one, so they never make an answer name two labels.
WEAK_SPELLINGS: frozenset[str] = frozenset({"content", "afraid"})

# veRL's reward managers add these when a reward router is configured; they mean nothing here.
_VERL_PASSTHROUGH_KWARGS = frozenset({"reward_router_address", "reward_model_tokenizer"})


@dataclass(frozen=True)
class ParsedResponse:
    """One response read against the format.

    ``answer``/``confidence`` come from the strict parse when ``format_ok``; otherwise from the
    last ``<answer>``/``<confidence>`` block found (``None`` if absent or, for the confidence,
    invalid), so that correctness can still be scored. ``reason`` says why the format failed
    (empty when it holds).
    """

    format_ok: bool
    answer: str | None
    confidence: float | None
    reason: str = ""


def parse_confidence(text: str) -> float | None:
    """The confidence written in ``text`` (see the module docstring for what counts), or None."""
    value = parse_confidence_number(text)
    if value is None or not 0.0 <= value <= 1.0:
        return None
    return value


def parse_confidence_number(text: str) -> float | None:
    """The number a confidence block states, in [0, 1] or not (``1.5``, ``150%``), or None when
    the text is not a number in the confidence grammar. Evaluation uses it to report a stated but
    out-of-range confidence apart from a missing one."""
    if len(text) > MAX_CONFIDENCE_CHARS:
        return None
    s = text.strip()
    if s.startswith("{") and s.endswith("}"):
        s = s[1:-1].strip()
    scale = 1.0
    if s.endswith("%"):
        s = s[:-1].rstrip()
        scale = 100.0
    if not s or s.count(".") > 1 or not set(s) <= (_DIGITS | {"."}) or s == ".":
        return None
    return float(s) / scale


def _has_tag(text: str, lo: int, hi: int) -> bool:
    # Two memchr-speed probes settle almost every real response (a tag needs both '<' and '>');
    # the per-tag bounded finds keep the worst case at 16 linear scans of the segment.
    if text.find("<", lo, hi) < 0 or text.find(">", lo, hi) < 0:
        return False
    return any(text.find(tag, lo, hi) >= 0 for tag in TAGS)


def open_tag(name: str) -> str:
    """The opening tag of block ``name``: ``open_tag("answer") == "<answer>"``."""
    return f"<{name}>"


def close_tag(name: str) -> str:
    """The closing tag of block ``name``: ``close_tag("answer") == "</answer>"``."""
    return f"</{name}>"


def last_block_span(text: str, tag: str) -> tuple[int, int, int, int] | None:
    """``(open_start, content_start, content_end, close_end)`` of the last ``<tag>..</tag>``, or None.

    The one rule every reader of a response follows: the *last* closing tag and the nearest
    opening tag before it (the innermost block if they nest), tags spelled exactly (lower case).
    :func:`extract_answer` and :func:`extract_confidence` read this block; stage 2's loss mask
    trains it and the evaluation's answer-token probability starts inside it.
    """
    close = text.rfind(close_tag(tag))
    if close < 0:
        return None
    start = text.rfind(open_tag(tag), 0, close)
    if start < 0:
        return None
    return start, start + len(open_tag(tag)), close, close + len(close_tag(tag))


def block_content_spans(text: str, tag: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Character ranges ``(content_start, content_end)`` of the ``<tag>..</tag>`` blocks in
    ``text[start:end]``, left to right: each closing tag closes the nearest opening tag before it
    (and after the previous block), the pairing :func:`last_block_span` uses for the last block."""
    end = len(text) if end is None else end
    open_t, close_t = open_tag(tag), close_tag(tag)
    spans = []
    pos = start
    while (close := text.find(close_t, pos, end)) >= 0:
        open_start = text.rfind(open_t, pos, close)
        if open_start >= 0:
            spans.append((open_start + len(open_t), close))
        pos = close + len(close_t)
    return spans


def _block_content(text: str, tag: str) -> str | None:
    """Content of the last ``<tag>..</tag>`` block (:func:`last_block_span`), or None."""
    span = last_block_span(text, tag)
    return None if span is None else text[span[1] : span[2]]


def first_block(text: str, tag: str) -> tuple[int, str] | None:
    """``(start, content)`` of the first ``<tag>..</tag>``, or None.

    The first opening tag and the first closing tag after it: what
    ``re.search(r"<tag>(.*?)</tag>", text, re.DOTALL)`` matches (if the first ``<tag>`` has no
    ``</tag>`` after it, no later one has), found in linear time.
    """
    open_tag, close_tag = f"<{tag}>", f"</{tag}>"
    start = text.find(open_tag)
    if start < 0:
        return None
    close = text.find(close_tag, start + len(open_tag))
    return None if close < 0 else (start, text[start + len(open_tag) : close])


def all_blocks(text: str, tag: str) -> list[str]:
    """Contents of every ``<tag>..</tag>``, left to right, as ``re.findall`` with ``.*?`` and
    ``re.DOTALL`` reads them."""
    out: list[str] = []
    open_tag, close_tag = f"<{tag}>", f"</{tag}>"
    cursor = 0
    while (start := text.find(open_tag, cursor)) >= 0:
        close = text.find(close_tag, start + len(open_tag))
        if close < 0:
            break
        out.append(text[start + len(open_tag) : close])
        cursor = close + len(close_tag)
    return out


def extract_answer(text: str) -> str | None:
    """Stripped content of the last ``<answer>..</answer>`` block, or None when there is none."""
    content = _block_content(text, "answer")
    return None if content is None else content.strip()


def extract_confidence(text: str) -> float | None:
    """Confidence in the last ``<confidence>..</confidence>`` block, or None if absent/invalid."""
    content = _block_content(text, "confidence")
    return None if content is None else parse_confidence(content)


def extract_confidence_number(text: str) -> float | None:
    """The number stated in the last ``<confidence>`` block, in [0, 1] or not; None if absent or
    not a number."""
    content = _block_content(text, "confidence")
    return None if content is None else parse_confidence_number(content)


def format_block(tag: str, content: str) -> str:
    """``<tag>content</tag>``, the content written as given."""
    return f"{open_tag(tag)}{content}{close_tag(tag)}"


def format_confidence(confidence: float) -> str:
    """The confidence block as every stage writes it: two decimals (``0.83``), the verbalisation
    stage 2 trains and :func:`parse_confidence` reads back."""
    return format_block("confidence", f"{confidence:.2f}")


def format_response(steps: Mapping[str, str], answer: str, confidence: float | None = None) -> str:
    """A response in the strict format from its five ``steps`` (by :data:`STEP_TAGS` name, written
    as given), ``answer`` and, unless None, ``confidence`` (:func:`format_confidence`).

    Raises ValueError naming the missing steps."""
    missing = [tag for tag in STEP_TAGS if tag not in steps]
    if missing:
        raise ValueError(f"missing reasoning steps: {', '.join(missing)}")
    think = "".join(format_block(tag, steps[tag]) for tag in STEP_TAGS)
    out = format_block("think", think) + format_block("answer", answer)
    if confidence is not None:
        out += format_confidence(confidence)
    return out


def parse_response(text: str) -> ParsedResponse:
    """Check ``text`` against the strict response format (module docstring) and read it."""
    if len(text) > MAX_RESPONSE_CHARS:
        reason = f"response longer than {MAX_RESPONSE_CHARS} characters"
        return ParsedResponse(False, extract_answer(text), extract_confidence(text), reason)
    end = len(text.rstrip())
    cursor = len(text) - len(text.lstrip())
    contents: dict[str, str] = {}
    reason = ""
    for tag, kind in _SEQUENCE:
        idx = text.find(tag, cursor, end)
        if idx < 0:
            reason = f"missing {tag}"
            break
        if kind == "ws":
            if idx != cursor and not text[cursor:idx].isspace():
                reason = f"unexpected text before {tag}"
                break
        else:
            if _has_tag(text, cursor, idx):
                reason = f"unexpected tag inside {tag.replace('/', '')}"
                break
            contents[tag] = text[cursor:idx]
            if kind == "text" and (idx == cursor or contents[tag].isspace()):
                reason = f"empty {tag.replace('/', '')}"
                break
        cursor = idx + len(tag)
    if not reason and cursor != end:
        reason = "text after </confidence>"
    if not reason:
        confidence = parse_confidence(contents["</confidence>"])
        if confidence is None:
            reason = "invalid confidence"
        else:
            return ParsedResponse(True, contents["</answer>"].strip(), confidence, "")
    return ParsedResponse(False, extract_answer(text), extract_confidence(text), reason)


def normalize_answer(text: str) -> str:
    """Lower-cased words (runs of letters or digits) joined by single spaces.

    ``"  It's AWE! "`` -> ``"it s awe"``; ``"“awe”。"`` -> ``"awe"``; ``"awe-inspiring"`` ->
    ``"awe inspiring"``.
    """
    return " ".join(_WORDS.findall(text.lower()))


def _alias_map(aliases: Any) -> dict[str, str]:
    """Normalised alias -> normalised canonical label from whatever the data pipeline stored.

    Accepts a mapping, an iterable of (alias, canonical) pairs or a JSON string of either: a
    parquet column of dicts comes back as a struct holding the union of all rows' keys, with None
    for the keys a row lacked, so None values are skipped.
    """
    if aliases is None:
        return {}
    if isinstance(aliases, str):
        aliases = json.loads(aliases)
    pairs: Iterable[Any] = aliases.items() if isinstance(aliases, Mapping) else aliases
    out: dict[str, str] = {}
    for pair in pairs:
        if pair is None:
            continue
        alias, canonical = pair
        if alias is None or canonical is None:
            continue
        out[normalize_answer(str(alias))] = normalize_answer(str(canonical))
    return out


@dataclass(frozen=True)
class LabelSet:
    """The label spellings one subtask accepts (build it with :func:`label_set`)."""

    aliases: dict[str, str]  # normalised alias -> normalised canonical label
    labels: dict[str, str] | None  # every accepted spelling of a candidate -> canonical; None: no candidates
    spans: frozenset[int]  # word counts of those spellings

    def canonical(self, label: str) -> str:
        """The canonical (normalised, alias-resolved) form of a label or ground truth."""
        norm = normalize_answer(str(label))
        if self.labels is not None and norm in self.labels:
            return self.labels[norm]
        return self.aliases.get(norm, norm)


def _hashable(obj: Any) -> Any:
    """A hashable stand-in for aliases/candidates as stored (dict, pairs, array, JSON string)."""
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, Mapping):
        return tuple(obj.items())
    return tuple(p if p is None or isinstance(p, str) else tuple(p) for p in obj)


@lru_cache(maxsize=1024)
def _cached_tables(global_aliases: Any, sample_aliases: Any, candidates: Any) -> LabelSet:
    return _build_tables(global_aliases, sample_aliases, candidates)


def _build_tables(global_aliases: Any, sample_aliases: Any, candidates: Any) -> LabelSet:
    aliases = _alias_map(LABEL_ALIASES)  # the taxonomy's, always: the same reading as evaluation
    aliases.update(_alias_map(global_aliases))
    aliases.update(_alias_map(sample_aliases))  # per-sample aliases win over global ones
    if candidates is None:
        return LabelSet(aliases, None, frozenset())
    labels: dict[str, str] = {}
    for cand in candidates:
        if cand is not None:
            norm = normalize_answer(str(cand))
            if norm:
                labels[norm] = aliases.get(norm, norm)
    canon = set(labels.values())
    labels.update({a: c for a, c in aliases.items() if c in canon and a})
    return LabelSet(aliases, labels, frozenset(len(k.split()) for k in labels))


def _tables(global_aliases: Any, sample_aliases: Any, candidates: Any) -> LabelSet:
    # Every row of a subtask carries the same aliases and candidates; normalising them anew for
    # each response would cost more than parsing the response.
    try:
        return _cached_tables(_hashable(global_aliases), _hashable(sample_aliases), _hashable(candidates))
    except TypeError:  # unhashable contents: same tables, uncached
        return _build_tables(global_aliases, sample_aliases, candidates)


def label_set(candidates: Sequence[str] | None, aliases: Any = None) -> LabelSet:
    """The spellings I(e) accepts for a subtask: its ``candidates`` and their aliases.

    The aliases are :data:`LABEL_ALIASES` plus ``aliases``, which maps alias -> canonical label
    (a mapping, (alias, canonical) pairs or their JSON, as ``extra_info["aliases"]`` stores them;
    ``emocaliber_rl.taxonomy.aliases_for`` builds it) and wins where both name a spelling.
    Cached: every row of a subtask shares one set.
    """
    return _tables(None, aliases, candidates)


def _named_labels(answer_norm: str, tables: LabelSet) -> set[str]:
    """Canonical labels whose spelling (or an alias) occurs in the answer as whole words; a weak
    spelling (:data:`WEAK_SPELLINGS`) counts only when no other spelling names a label."""
    assert tables.labels is not None
    words = answer_norm.split()
    grams: set[str] = set()
    for n in tables.spans:
        grams.update(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    found = [g for g in grams if g in tables.labels]
    strong = {tables.labels[g] for g in found if g not in WEAK_SPELLINGS}
    return strong or {tables.labels[g] for g in found}


MATCH_MODES: tuple[str, ...] = ("label", "exact")


def answer_label(answer: str | None, labels: LabelSet, match: str = "label") -> tuple[str | None, str]:
    """The one label ``answer`` names: ``(canonical label, "")`` or ``(None, reason)``.

    This is the paper's I(e) reading of an answer, shared by the stage-3 reward, stage-2
    labelling and evaluation. The answer is normalised (:func:`normalize_answer`: case and
    punctuation dropped) and read against ``labels`` (:func:`label_set`):

    * ``match="label"`` (default): the answer must name exactly one candidate label, each
      spelling (the label or one of its aliases) counted where it occurs as whole words:
      ``"Awe"``, ``"It is awe."``, ``"the emotion is awe"``, ``"awe, I think"`` name awe;
      ``"sad"`` names sadness (``sad -> sadness`` is one of :data:`LABEL_ALIASES`); ``"awe or
      fear"`` names two labels; ``"awesome"`` names none (``awe`` is not a whole word there).
      A weak spelling (:data:`WEAK_SPELLINGS`, an alias that is an everyday word) names its
      label only when nothing else does: ``"The content of this image evokes awe"`` names awe,
      ``"It is content"`` contentment, ``"I'm afraid it is sadness"`` sadness. Negation is not
      read: ``"not fear"`` names fear.
    * ``match="exact"``: the whole answer must be one spelling (``"Sadness."`` yes,
      ``"It is sadness"`` no).

    Without candidates (``labels.labels is None``) only ``exact`` is possible, against the
    aliases alone: the label is the alias-resolved answer. Reasons: ``no_answer``,
    ``empty_answer``, ``too_long`` (over ``MAX_ANSWER_CHARS``), ``unknown_label``,
    ``several_labels``.
    """
    if match not in MATCH_MODES:
        raise ValueError(f"match must be one of {', '.join(MATCH_MODES)}, got {match!r}")
    if answer is None:
        return None, "no_answer"
    if len(answer) > MAX_ANSWER_CHARS:
        return None, "too_long"
    norm = normalize_answer(answer)
    if not norm:
        return None, "empty_answer"
    if labels.labels is None:
        return labels.aliases.get(norm, norm), ""
    named = _named_labels(norm, labels)
    if len(named) > 1:
        return None, "several_labels"
    if match == "exact":
        whole = labels.labels.get(norm)
        return (whole, "") if whole is not None else (None, "unknown_label")
    if named:
        return named.pop(), ""
    return None, "unknown_label"


def is_correct(
    answer: str | None,
    ground_truth: str,
    *,
    aliases: Any = None,
    candidates: Sequence[str] | None = None,
    match: str = "label",
) -> bool:
    """I(e): whether ``answer`` names ``ground_truth`` and no other candidate label.

    The answer's label is :func:`answer_label` over ``candidates`` and ``aliases``; the ground
    truth is resolved through the same aliases (``cheerfullness -> cheerfulness``). Without
    ``candidates`` the whole normalised answer must be the ground truth (a second label cannot
    be recognised without the list). ``match="exact"`` asks for that even with candidates.
    """
    return _is_correct(answer, ground_truth, _tables(None, aliases, candidates), match)


def _is_correct(answer: str | None, ground_truth: str, tables: LabelSet, match: str) -> bool:
    label, _ = answer_label(answer, tables, match)
    return label is not None and label == tables.canonical(ground_truth)


def confidence_reward(correct: bool, confidence: float | None, kind: str = "loglik", eps: float = 0.01) -> float:
    """R_conf: Eq. 4 (``loglik``, clamped to [eps, 1-eps]) or Eq. 6 (``brier``); floor when None."""
    i = 1.0 if correct else 0.0
    if kind == "loglik":
        if not 0.0 < eps < 0.5:
            raise ValueError(f"eps must lie in (0, 0.5), got {eps}")
        if confidence is None:
            return math.log(eps)
        c = min(max(confidence, eps), 1.0 - eps)
        return i * math.log(c) + (1.0 - i) * math.log(1.0 - c)
    if kind == "brier":
        if confidence is None:
            return -1.0
        return -((i - confidence) ** 2)
    raise ValueError(f"conf_reward must be 'loglik' or 'brier', got {kind!r}")


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "w_format": 1.0,
        "w_correct": 1.0,
        "w_conf": 1.0,
        "conf_reward": "loglik",
        "eps": 0.01,
        "format_fail_score": None,
        "match": "label",
    },
    # Weights are fixed by the release's code; only the preset name is read.
    "official": {},
}
_OPTION_NAMES = frozenset(PRESETS["paper"]) | {"preset", "aliases", "candidates"}


def official_compute_score(solution_str: str, ground_truth: str) -> dict[str, float]:
    """The release's ``cus_reward.compute_score``, same keys and values, in linear time.

    Its ``re.search(r"<x>(.*?)</x>", s, re.DOTALL)`` blocks are :func:`first_block`'s.
    """

    def content(s: str, name: str) -> str | None:
        found = first_block(s, name)
        return None if found is None else found[1]

    think = content(solution_str, "think")
    answer = content(solution_str, "answer")
    conf_text = content(solution_str, "confidence")
    if (
        think is not None
        and answer is not None
        and conf_text is not None
        and all(content(think, step) is not None for step in STEP_TAGS)
    ):
        words = answer.strip().translate(_PUNCT_DELETE).lower().split()
        i = 1 if len(words) == 1 and str(ground_truth).lower() == words[0] else 0
        try:
            c = float(conf_text.strip())
        except (ValueError, TypeError):
            c = math.nan
        if 0 < c < 1:
            conf_score = 2 * (i * math.log(c) + (1 - i) * math.log(1 - c))
            return {
                "score": 1 + conf_score + i,
                "format_score": 1,
                "confidence_score": conf_score,
                "correctness": i,
                "brier_score": -((c - i) ** 2),
                "confidence": c,
            }
    return {
        "score": -5,
        "format_score": 0,
        "confidence_score": -5,
        "correctness": 0,
        "brier_score": -1,
        "confidence": 1,
    }


def _options(extra_info: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = set(kwargs) - _OPTION_NAMES - _VERL_PASSTHROUGH_KWARGS
    if unknown:
        # A misspelt weight silently ignored would train the wrong objective for days.
        raise TypeError(f"unknown reward option(s) {sorted(unknown)}; valid: {sorted(_OPTION_NAMES)}")
    preset = kwargs.get("preset", "paper")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    opts = dict(PRESETS["paper"])
    opts.update({k: v for k, v in kwargs.items() if k in PRESETS["paper"]})
    opts["preset"] = preset
    if opts["conf_reward"] not in ("loglik", "brier"):
        raise ValueError(f"conf_reward must be 'loglik' or 'brier', got {opts['conf_reward']!r}")
    if opts["match"] not in MATCH_MODES:
        raise ValueError(f"match must be one of {', '.join(MATCH_MODES)}, got {opts['match']!r}")
    info = extra_info if isinstance(extra_info, Mapping) else {}
    candidates = info.get("candidates")
    if candidates is None:
        candidates = kwargs.get("candidates")
    opts["tables"] = _tables(kwargs.get("aliases"), info.get("aliases"), candidates)
    return opts


def compute_score(
    data_source: str | None,
    solution_str: str,
    ground_truth: str,
    extra_info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """veRL custom reward: ``score`` plus every component under its own key.

    Keys (preset ``paper``): ``score``, ``format`` (0/1), ``correct`` (0/1), ``confidence`` (the
    parsed c, -1 when none), ``confidence_valid`` (0/1), ``conf_reward`` (the configured R_conf),
    ``loglik`` (Eq. 4, clamped) and ``brier`` (Eq. 6), both always present so either can be
    logged. Preset ``official``: the release's keys (:func:`official_compute_score`).

    Options come from ``reward_kwargs`` (``preset``, ``conf_reward``, ``w_format``,
    ``w_correct``, ``w_conf``, ``eps``, ``format_fail_score``, ``match``, ``aliases``,
    ``candidates``); ``extra_info["aliases"]`` and ``extra_info["candidates"]`` give per-sample
    label spellings, on top of :data:`LABEL_ALIASES`. Unknown options raise TypeError.
    """
    opts = _options(extra_info, kwargs)
    text = solution_str if isinstance(solution_str, str) else str(solution_str)
    if opts["preset"] == "official":
        return official_compute_score(text, ground_truth)
    parsed = parse_response(text)
    correct = _is_correct(parsed.answer, ground_truth, opts["tables"], opts["match"])
    loglik = confidence_reward(correct, parsed.confidence, "loglik", opts["eps"])
    brier = confidence_reward(correct, parsed.confidence, "brier")
    conf_reward = loglik if opts["conf_reward"] == "loglik" else brier
    r_format = 1.0 if parsed.format_ok else 0.0
    r_correct = 1.0 if correct else 0.0
    score = opts["w_format"] * r_format + opts["w_correct"] * r_correct + opts["w_conf"] * conf_reward
    if not parsed.format_ok and opts["format_fail_score"] is not None:
        score = float(opts["format_fail_score"])
    return {
        "score": float(score),
        "format": r_format,
        "correct": r_correct,
        "confidence": -1.0 if parsed.confidence is None else parsed.confidence,
        "confidence_valid": 0.0 if parsed.confidence is None else 1.0,
        "conf_reward": conf_reward,
        "loglik": loglik,
        "brier": brier,
    }


def compute_score_batch(
    data_sources: Sequence[str | None],
    solution_strs: Sequence[str],
    ground_truths: Sequence[str],
    extra_infos: Sequence[Mapping[str, Any] | None] | None = None,
    **kwargs: Any,
) -> list[dict[str, float]]:
    """Batch form for veRL's legacy ``verl.workers.reward_manager.BatchRewardManager`` ("batch").

    veRL 0.9.1's trainer (``main_ppo``) runs the reward loop, whose managers call
    :func:`compute_score` once per sample; this entry point serves code that instantiates the
    legacy batch manager directly. Same options and keys as :func:`compute_score`.
    """
    if extra_infos is None:
        extra_infos = [None] * len(solution_strs)
    if not len(data_sources) == len(solution_strs) == len(ground_truths) == len(extra_infos):
        raise ValueError("data_sources, solution_strs, ground_truths and extra_infos differ in length")
    return [
        compute_score(ds, s, gt, ei, **kwargs)
        for ds, s, gt, ei in zip(data_sources, solution_strs, ground_truths, extra_infos)
    ]
