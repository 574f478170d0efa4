"""Task questions and the response format every stage agrees on.

The response format::

    <think><element>..</element><human>..</human><context>..</context>
    <interaction>..</interaction><analysis>..</analysis></think>
    <answer>LABEL</answer><confidence>0.xx</confidence>

Parsing lives in ``reward_fns/emocaliber.py`` (standard library only, so other veRL projects can
load it by path); this module re-exports it for the package.
"""

from __future__ import annotations

from emocaliber_rl.taxonomy import get_subtask
from reward_fns.emocaliber import (  # noqa: F401  (re-exported)
    STEP_TAGS,
    extract_answer,
    extract_confidence,
    parse_response,
)

SYSTEM_PROMPT = "You are a helpful assistant."

RESPONSE_TAGS: tuple[str, ...] = (
    "<think>",
    "</think>",
    "<element>",
    "</element>",
    "<human>",
    "</human>",
    "<context>",
    "</context>",
    "<interaction>",
    "</interaction>",
    "<analysis>",
    "</analysis>",
    "<answer>",
    "</answer>",
    "<confidence>",
    "</confidence>",
)

_FORMAT_INSTRUCTION = (
    "First reason step by step inside <think></think>, structured as <element></element> "
    "(the salient visual elements), <human></human> (any human subjects), <context></context> "
    "(the broader context), <interaction></interaction> (how these interact) and "
    "<analysis></analysis> (the emotional conclusion). Then give exactly one label inside "
    "<answer></answer>."
)
_CONFIDENCE_INSTRUCTION = (
    " Finally, state how confident you are that the answer is correct, as a number between 0 "
    "and 1 inside <confidence></confidence>."
)


def task_question(subtask: str, *, ask_confidence: bool = False, image_token: str = "<image>") -> str:
    """The user turn for one image of ``subtask``: the image placeholder, question and format."""
    task = get_subtask(subtask)
    if task.labels == ("positive", "negative"):
        question = "What is the sentiment polarity this image evokes?"
    else:
        question = "Which emotion does this image evoke?"
    options = ", ".join(task.labels)
    text = f"{image_token}{question} Choose one from: {options}. {_FORMAT_INSTRUCTION}"
    if ask_confidence:
        text += _CONFIDENCE_INSTRUCTION
    return text


def format_response(
    steps: dict[str, str], answer: str, confidence: float | None = None
) -> str:
    """Assemble a response in the agreed format from its five steps, answer and confidence."""
    missing = [tag for tag in STEP_TAGS if tag not in steps]
    if missing:
        raise ValueError(f"missing reasoning steps: {', '.join(missing)}")
    think = "".join(f"<{tag}>{steps[tag].strip()}</{tag}>" for tag in STEP_TAGS)
    out = f"<think>{think}</think><answer>{answer}</answer>"
    if confidence is not None:
        out += f"<confidence>{confidence:.2f}</confidence>"
    return out
