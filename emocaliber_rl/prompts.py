"""Task questions and the response format every stage agrees on.

The response format::

    <think><element>..</element><human>..</human><context>..</context>
    <interaction>..</interaction><analysis>..</analysis></think>
    <answer>LABEL</answer><confidence>0.xx</confidence>

The response grammar (tags, answer and confidence parsing, correctness) lives in
``reward_fns/emocaliber.py`` (standard library only, so other veRL projects can load it by path);
import it from there.
"""

from __future__ import annotations

from emocaliber_rl.taxonomy import get_subtask
from reward_fns.emocaliber import STEP_TAGS, TAG_PAIRS
from reward_fns.emocaliber import format_response as _grammar_response

# The system turn of every stage (the release's step1/step2 scripts: --system 'You are a helpful
# assistant.'); data exports and evaluation import it from here.
SYSTEM_PROMPT = "You are a helpful assistant."

# emocaliber_rl/tiny_model.py still reads the tags from here (kept for it; the tuple is the grammar's).
RESPONSE_TAGS: tuple[str, ...] = TAG_PAIRS

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
    """Assemble a response in the agreed format from its five steps (each stripped), answer and
    confidence: the grammar's writer (``reward_fns.emocaliber.format_response``)."""
    return _grammar_response({tag: steps[tag].strip() for tag in STEP_TAGS if tag in steps}, answer, confidence)
