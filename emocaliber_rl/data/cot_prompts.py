"""Prompt templates for VEC-CoT synthesis and judging, and the free local structural check.

Synthesis (paper 3.1, Figure 4): the teacher model sees the image and its ground-truth label and
writes the five structured steps. It must not name the label (or a spelling of it) inside the
steps: the student has to *reach* the label from the evidence, and a CoT that states it early
teaches nothing. The local check enforces that, the tags and the answer before any judge call.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from emocaliber_rl.taxonomy import UnknownLabelError, aliases_for, canonical_label, get_subtask
from reward_fns.emocaliber import STEP_TAGS, all_blocks, first_block

SYNTH_SYSTEM = (
    "You are an expert in visual affective computing who writes careful, evidence-based "
    "explanations of the emotion an image evokes in its viewers."
)

SYNTH_TEMPLATE = """Look at the image. Viewers labelled the emotion it evokes as: {label}
(task {subtask}: {question} Options: {options}.)

Write the reasoning that leads from what is visible in the image to this label, as five steps:
1. <element>: the salient visual elements that first draw attention.
2. <human>: any human subjects (expressions, posture, actions); say so if there are none.
3. <context>: the broader setting and environment, and how it shapes interpretation.
4. <interaction>: how the elements, people and setting relate and reinforce or contradict each other.
5. <analysis>: consolidate the evidence into the emotional conclusion.

Rules:
- Describe only what is actually visible; do not invent objects, people, text or events.
- Do NOT write the word "{label}"{alias_clause} anywhere inside the five steps; the steps must justify the
  label without naming it. The label appears only inside <answer>.
- Keep the steps consistent with each other and with the label.
- Reply with exactly this format and nothing else:
<think><element>...</element><human>...</human><context>...</context><interaction>...</interaction><analysis>...</analysis></think><answer>{label}</answer>"""

JUDGE_SYSTEM = (
    "You are a strict reviewer of chain-of-thought annotations for visual emotion recognition. "
    "You answer with one JSON object only."
)

JUDGE_TEMPLATE = """The image is labelled "{label}" (task {subtask}; options: {options}). Below is a reasoning chain written for it.

{response}

Check it against the image and answer with a JSON verdict:
{{"hallucination": true|false,        // describes objects, people, text or events not in the image
  "label_leakage": true|false,        // names the label or an obvious synonym inside the reasoning steps
  "logical_inconsistency": true|false, // steps contradict each other or do not support the answer
  "pass": true|false,                 // true only if all three are false
  "reason": "one short sentence"}}"""


def label_words(subtask: str, label: str) -> list[str]:
    """The label and every alias spelling of it in ``subtask`` (lower case)."""
    words = {label.lower()}
    words.update(a for a, t in aliases_for(subtask).items() if t == label)
    return sorted(words)


def synth_messages(subtask: str, label: str, image_url: str) -> list[dict[str, Any]]:
    """Chat messages for one synthesis call: system, then user = [image, instructions]."""
    task = get_subtask(subtask)
    others = [w for w in label_words(subtask, label) if w != label]
    alias_clause = "".join(f' or "{w}"' for w in others)
    question = ("What sentiment polarity does this image evoke?" if task.labels == ("positive", "negative")
                else "Which emotion does this image evoke?")
    text = SYNTH_TEMPLATE.format(label=label, subtask=task.name, question=question, options=", ".join(task.labels),
                                 alias_clause=alias_clause)
    return [
        {"role": "system", "content": SYNTH_SYSTEM},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_url}},
                                     {"type": "text", "text": text}]},
    ]


def judge_messages(subtask: str, label: str, response: str, image_url: str) -> list[dict[str, Any]]:
    task = get_subtask(subtask)
    text = JUDGE_TEMPLATE.format(label=label, subtask=task.name, options=", ".join(task.labels), response=response)
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_url}},
                                     {"type": "text", "text": text}]},
    ]


def _steps(response: str) -> tuple[bool, dict[str, tuple[int, str]]]:
    """Whether a ``<think>`` block exists, and each step's ``(start, content)`` found inside it
    (inside the whole response when there is no ``<think>`` block)."""
    think = first_block(response, "think")
    body = think[1] if think else response
    found = {tag: first_block(body, tag) for tag in STEP_TAGS}
    return think is not None, {tag: f for tag, f in found.items() if f is not None}


def parse_steps(response: str) -> dict[str, str] | None:
    """The five steps of a response, or None if any is missing."""
    _, found = _steps(response)
    if len(found) != len(STEP_TAGS):
        return None
    return {tag: found[tag][1].strip() for tag in STEP_TAGS}


@dataclass
class StructuralCheck:
    ok: bool
    reasons: list[str]
    steps: dict[str, str] | None


def structural_check(subtask: str, label: str, response: str) -> StructuralCheck:
    """Free local check: <think> with all five non-empty steps in order, <answer> equal to the label,
    and no label word (or alias, or its plural/adjective/adverb forms) inside the steps."""
    reasons = []
    has_think, found = _steps(response)
    if not has_think:
        reasons.append("no <think>...</think>")
        found = {}
    positions = []
    for tag in STEP_TAGS:
        if tag not in found:
            reasons.append(f"missing <{tag}>")
        elif not found[tag][1].strip():
            reasons.append(f"empty <{tag}>")
        else:
            positions.append(found[tag][0])
    if positions != sorted(positions):
        reasons.append("steps out of order")
    steps = parse_steps(response)
    answers = all_blocks(response, "answer")
    if len(answers) != 1:
        reasons.append(f"{len(answers)} <answer> tags (need exactly 1)")
    else:
        try:
            if canonical_label(subtask, answers[0].strip()) != label:
                reasons.append(f"answer {answers[0].strip()!r} is not the label {label!r}")
        except UnknownLabelError:
            reasons.append(f"answer {answers[0].strip()!r} is not a label of {subtask}")
    think = first_block(response, "think")
    leak = label_leak(subtask, label, think[1] if think else "")
    if leak:
        reasons.append(f"label leakage: {leak!r} inside the reasoning")
    return StructuralCheck(not reasons, reasons, steps)


def label_leak(subtask: str, label: str, text: str) -> str | None:
    """The first label word in ``text`` (the label, an alias, or their plural/adjective/adverb
    forms), or None: the leakage rule of the structural check and of the world's judge."""
    if not text:
        return None
    words = "|".join(re.escape(w) for w in label_words(subtask, label))
    leak = re.search(rf"\b(?:{words})(?:s|es|ed|ful|fully|ing|ly)?\b", text, re.IGNORECASE)
    return leak.group(0) if leak else None


def parse_verdict(content: str) -> dict[str, Any]:
    """The judge's JSON verdict (tolerates code fences and text around it); raises ValueError."""
    text = re.sub(r"```(?:json)?", "", content)
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("no JSON object in the judge's reply")
    v = json.loads(text[start:end + 1])
    for key in ("hallucination", "label_leakage", "logical_inconsistency"):
        if not isinstance(v.get(key), bool):
            # ValueError, like a JSON error: callers treat any unusable verdict alike.
            raise ValueError(f"verdict field {key!r} missing or not a boolean")  # noqa: TRY004
    return v


def verdict_passes(v: dict[str, Any]) -> bool:
    flags = (v["hallucination"], v["label_leakage"], v["logical_inconsistency"])
    return not any(flags) and v.get("pass", True) is not False
