"""Prediction and confidence parsing: aliases, several labels, the official substring rule."""

from __future__ import annotations

import pytest

from emocaliber_rl.evaluation.parsing import (
    extractor_name,
    parse_confidence,
    parse_official,
    parse_prediction,
    parse_strict,
)
from emocaliber_rl.taxonomy import MIKELS_8, WEBEMO_25

ABSTRACT_FILE_SPELLING = ["amusement", "anger", "awe", "content", "disgust", "excitement", "fear",
                          "sad"]


def _resp(answer: str, conf: str | None = "0.80") -> str:
    tail = f"<confidence>{conf}</confidence>" if conf is not None else ""
    return f"<think><analysis>...</analysis></think><answer>{answer}</answer>{tail}"


@pytest.mark.parametrize(("task", "answer", "expected"), [
    ("FI-8", "sadness", "sadness"),
    ("FI-8", " Sadness. ", "sadness"),
    ("FI-8", "sad", "sadness"),                    # alias
    ("Abstract-8", "content", "contentment"),     # dataset spelling
    ("WebEmo-25", "Cheerfullness", "cheerfulness"),  # WebEmo's own misspelling
    ("FI-2", "Negative", "negative"),
    ("FI-8", "The image evokes fear.", "fear"),   # one candidate named among other words
    ("FI-8", "sad, sadness", "sadness"),          # two spellings of one label: one candidate
])
def test_strict_accepts_one_label(task: str, answer: str, expected: str) -> None:
    assert parse_strict(_resp(answer), task) == expected


@pytest.mark.parametrize(("task", "answer"), [
    ("FI-8", "fear and sadness"),        # several labels
    ("FI-8", "amusement/excitement"),
    ("FI-2", "positive or negative"),
    ("FI-8", "joy"),                     # not a label of this task
    ("FI-8", "I cannot tell"),
    ("FI-8", ""),
    ("WebEmo-25", "courage"),            # 'rage' is only a substring, not a word
])
def test_strict_unparsed(task: str, answer: str) -> None:
    assert parse_strict(_resp(answer), task) is None


def test_strict_without_answer_tag() -> None:
    assert parse_strict("Sadness.", "FI-8") == "sadness"   # a bare label is accepted
    assert parse_strict("I think it is sadness", "FI-8") is None


def test_strict_restricted_to_row_candidates() -> None:
    cands = ["amusement", "awe"]
    assert parse_strict(_resp("awe"), "FI-8", cands) == "awe"
    assert parse_strict(_resp("fear"), "FI-8", cands) is None


def test_official_first_substring_rule() -> None:
    cands = list(MIKELS_8)
    # several labels: the first one in candidate order wins
    assert parse_official(_resp("excitement, not amusement"), "FI-8", cands) == "amusement"
    # a substring inside another word counts
    assert parse_official(_resp("courage"), "WebEmo-25", list(WEBEMO_25)) == "rage"
    # no <answer>: the whole response is searched
    assert parse_official("The picture shows fear and sadness", "FI-8", cands) == "fear"
    # an empty answer also falls back to the whole response (which contains the tag text)
    assert parse_official("<answer></answer> maybe awe", "FI-8", cands) == "awe"
    assert parse_official(_resp("joy"), "FI-8", cands) is None
    # dataset spellings as candidates: 'sad' matches 'sadness' and maps to the canonical label
    assert parse_official(_resp("sadness"), "Abstract-8", ABSTRACT_FILE_SPELLING) == "sadness"
    assert parse_prediction(_resp("fear and sadness"), "FI-8", cands, mode="official") == "fear"
    assert parse_prediction(_resp("fear and sadness"), "FI-8", cands, mode="strict") is None
    with pytest.raises(ValueError):
        parse_prediction("x", "FI-8", cands, mode="lenient")


def test_official_reads_a_multiline_answer_as_missing() -> None:
    # its regex has no DOTALL: a line break inside <answer> sends it to the whole response
    response = "<think>awe at first</think><answer>\nfear\n</answer>"
    assert parse_official(response, "FI-8", list(MIKELS_8)) == "awe"
    assert parse_strict(response, "FI-8") == "fear"


@pytest.mark.parametrize(("text", "expected"), [
    (_resp("fear", "0.85"), 0.85),
    (_resp("fear", "0.7"), 0.7),
    (_resp("fear", "1"), 1.0),
    (_resp("fear", "0"), 0.0),
    (_resp("fear", "1.3"), None),    # out of range is missing, never clipped
    (_resp("fear", "high"), None),
    (_resp("fear", None), None),
])
def test_confidence(text: str, expected: float | None) -> None:
    got = parse_confidence(text)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_uses_the_reward_module_parser() -> None:
    # the evaluation reads answers exactly as the RL reward did
    assert extractor_name() == "reward_fns.emocaliber"


def test_official_confidence_reads_the_first_single_line_block_with_float() -> None:
    from emocaliber_rl.evaluation.parsing import NotAFloat, official_confidence

    assert official_confidence(_resp("fear", "0.2") + "<confidence>0.9</confidence>") == 0.2
    assert official_confidence(_resp("fear", "{0.85}")) == 0.85
    assert official_confidence(_resp("fear", " 85 ")) == 85.0  # clipped later, as there
    assert official_confidence(_resp("fear", "\n0.9\n")) is None  # no DOTALL: no block
    assert official_confidence(_resp("fear", None)) is None
    for text in ("high", "0.8.1", "85%", ""):
        with pytest.raises(NotAFloat):
            official_confidence(_resp("fear", text))
    # the default reader takes the last block and the percent form
    assert parse_confidence(_resp("fear", "0.2") + "<confidence>0.9</confidence>") == 0.9
    assert parse_confidence(_resp("fear", "85%")) == 0.85
