"""reward_fns alone reads label spellings as stage 2 and evaluation do: the taxonomy's aliases
ship with it (LABEL_ALIASES, the one table emocaliber_rl.taxonomy reads too), and inside a
sentence an alias that is an everyday word (content, afraid) never makes an answer name two
labels. Expected verdicts are written by hand."""

from __future__ import annotations

import pytest

from emocaliber_rl.taxonomy import ALIASES, SUBTASKS, aliases_for
from reward_fns.emocaliber import LABEL_ALIASES, answer_label, compute_score, label_set

STEPS = "".join(f"<{t}>x</{t}>" for t in ("element", "human", "context", "interaction", "analysis"))


def _resp(answer: str) -> str:
    return f"<think>{STEPS}</think><answer>{answer}</answer><confidence>0.8</confidence>"


def test_the_shipped_alias_table_is_the_taxonomys() -> None:
    assert LABEL_ALIASES == ALIASES
    # and per subtask the reward's default spellings are those `export rl3` writes for it
    for name, task in SUBTASKS.items():
        shipped = label_set(list(task.labels))
        exported = label_set(list(task.labels), aliases_for(name))
        assert shipped.labels == exported.labels, name


@pytest.mark.parametrize(("answer", "truth"), [
    ("sad", "sadness"), ("Content.", "contentment"), ("amused", "amusement"), ("disgusted", "disgust"),
    ("pos", "positive"), ("cheerfulness", "cheerfullness"),  # WebEmo's spelling as the ground truth
])
def test_compute_score_without_extra_info_knows_the_aliases(answer: str, truth: str) -> None:
    assert compute_score(None, _resp(answer), truth)["correct"] == 1.0
    assert compute_score("FI-8", _resp(answer), truth, {})["correct"] == 1.0


def test_candidates_without_aliases_get_the_taxonomys_aliases() -> None:
    # a parquet with extra_info.candidates but no aliases (built by another tool)
    info = {"candidates": ["amusement", "anger", "awe", "contentment", "disgust", "excitement", "fear", "sadness"]}
    assert compute_score("FI-8", _resp("It looks sad"), "sadness", info)["correct"] == 1.0
    assert compute_score("FI-8", _resp("sad or angry"), "sadness", info)["correct"] == 0.0  # two labels


# (ground truth, answer, label the answer names or None) for FI-8, by hand
SENTENCES = [
    ("awe", "The content of this image evokes awe", "awe"),     # 'content' the noun
    ("awe", "I'm afraid the answer is awe", "awe"),             # 'afraid' the idiom
    ("contentment", "It is content", "contentment"),            # nothing else named: the alias counts
    ("contentment", "content", "contentment"),
    ("fear", "The child looks afraid", "fear"),
    ("contentment", "content or awe", "awe"),                   # a weak spelling never adds a label
    ("sadness", "sad or angry", None),                          # ordinary aliases still do
    ("awe", "awe and fear", None),
]


@pytest.mark.parametrize(("truth", "answer", "named"), SENTENCES)
def test_weak_aliases_inside_sentences(truth: str, answer: str, named: str | None) -> None:
    labels = label_set(list(SUBTASKS["FI-8"].labels), aliases_for("FI-8"))
    assert answer_label(answer, labels)[0] == named
    info = {"candidates": list(SUBTASKS["FI-8"].labels), "aliases": aliases_for("FI-8")}
    assert compute_score("FI-8", _resp(answer), truth, info)["correct"] == (1.0 if named == truth else 0.0)
