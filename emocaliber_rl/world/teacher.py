"""The world's teacher and judge: what an MLLM would write about a colour-grid image, read from
its pixels.

The demo's VEC-CoT runs the real pipeline (`emocaliber cot synthesize` / `cot judge` over the
OpenAI-compatible API, paper Figure 4) against a local server in world mode
(:mod:`emocaliber_rl.data.chat_server`). Like the paper's teacher, the world's teacher sees the
image and its label; it reads the image with the world's own reader (:func:`read_grid`, never the
scene file) and writes the five steps as evidence:

* ``<element>``: the colour of the top-left cell and how many cells of it each row holds;
* ``<human>``: there are no people;
* ``<context>``: how many of the 16 cells show each colour;
* ``<interaction>``: which colour outweighs which (or that they balance, or one stands alone);
* ``<analysis>``: which colour's mood is likelier: the conclusion, hedged as the evidence is.

Colours are named by hue (:data:`COLOUR_NAMES`), never by label: a step that named the label
would be label leakage, which the pipeline's structural check rejects. The steps do not commit to
an answer, so the first answer token holds the decision and its probability is the model's
own (the evaluation's "Ans" confidence). The label enters only inside ``<answer>``.

The world's judge reads the same pixels and returns the paper's three flags: *hallucination*
(a colour or count in ``<element>`` / ``<context>`` that the image does not show), *label
leakage* (a label word inside the steps), *logical inconsistency* (the ``<interaction>``
contradicts the counts, or the answer is not the mood of any colour the ``<analysis>`` names:
a conclusion that contradicts the label).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from emocaliber_rl.world.render import hue_of, read_grid
from emocaliber_rl.world.scenes import CELLS, GRID, fine_loop_of_subtask

# 25 colour words at equal hue steps (14.4 degrees) round the colour wheel, red first. A label's
# colour is the word nearest its hue; the 8, 6 and 25 hues of the world's loops all get distinct
# words. No word is a label or an alias of any taxonomy (tests/test_world_teacher.py checks).
COLOUR_NAMES: tuple[str, ...] = (
    "red", "scarlet", "orange", "amber", "yellow", "lemon", "chartreuse", "lime", "green", "emerald",
    "jade", "mint", "teal", "cyan", "azure", "cerulean", "cobalt", "blue", "indigo", "violet",
    "purple", "plum", "magenta", "pink", "crimson",
)


def colour_name(loop: str, label: str) -> str:
    """The colour word of ``label``'s hue on ``loop`` (``mikels8``'s first label -> ``red``)."""
    return COLOUR_NAMES[round(hue_of(loop, label) * len(COLOUR_NAMES)) % len(COLOUR_NAMES)]


@dataclass(frozen=True)
class Evidence:
    """What an image shows: the fine labels of its cells, row by row, on the subtask's loop."""

    loop: str
    cells: tuple[str, ...]

    @property
    def counts(self) -> Counter:
        return Counter(self.cells)

    @property
    def first(self) -> str:
        """The top-left cell's label: the colour the element step starts from."""
        return self.cells[0]

    @property
    def ranked(self) -> list[str]:
        """Labels shown, most cells first; ties in reading order (row by row)."""
        order = list(dict.fromkeys(self.cells))
        return sorted(order, key=lambda lab: (-self.counts[lab], order.index(lab)))

    def row_counts(self, label: str) -> list[int]:
        return [sum(1 for c in self.cells[r * GRID:(r + 1) * GRID] if c == label) for r in range(GRID)]


def read_evidence(image: Any, subtask: str) -> Evidence:
    """The evidence of a PIL image drawn for ``subtask`` (the loop of its source dataset)."""
    loop = fine_loop_of_subtask(subtask)
    return Evidence(loop, tuple(read_grid(image, loop)))


def _names(ev: Evidence) -> dict[str, str]:
    return {lab: colour_name(ev.loop, lab) for lab in ev.counts}


def evidence_steps(ev: Evidence) -> dict[str, str]:
    """The five steps the teacher writes for ``ev`` (module docstring)."""
    name = _names(ev)
    counts = ev.counts
    rows = " ".join(str(n) for n in ev.row_counts(ev.first))
    ranked = ev.ranked
    # the context lists colours in reading order, as the element does
    order = list(dict.fromkeys(ev.cells))
    if len(order) == 1:
        context = f"all {CELLS} cells {name[order[0]]}"
        interaction = f"{name[order[0]]} alone sets the tone"
        analysis = f"the {name[order[0]]} mood is near certain"
    else:
        context = " and ".join(f"{counts[lab]} {name[lab]}" for lab in order) + f" cells of {CELLS}"
        a, b = ranked[0], ranked[1]
        if counts[a] == counts[b]:
            interaction = f"{name[a]} and {name[b]} balance"
            analysis = f"the {name[a]} and {name[b]} moods are equally likely"
        else:
            interaction = f"{name[a]} outweighs {name[b]}"
            analysis = f"the {name[a]} mood is likelier than the {name[b]} mood"
    return {"element": f"{name[ev.first]} cells per row: {rows}", "human": "no people",
            "context": context, "interaction": interaction, "analysis": analysis}


def render_response(steps: dict[str, str], label: str) -> str:
    """The steps and the label in the response grammar (``reward_fns.emocaliber``)."""
    from reward_fns.emocaliber import format_response

    return format_response(steps, label)


def teacher_response(image: Any, subtask: str, label: str) -> str:
    """The teacher's reply to a synthesis request: evidence read from ``image``, then ``label``."""
    return render_response(evidence_steps(read_evidence(image, subtask)), label)


# ----------------------------------------------------------------------------------------------
# The judge

_COUNT = re.compile(r"(\d+) ([a-z]+)")


def judge_verdict(image: Any, subtask: str, label: str, response: str) -> dict[str, Any]:
    """The world judge's verdict on ``response`` for ``image`` labelled ``label`` (the JSON object
    the judge prompt asks for: ``hallucination``, ``label_leakage``, ``logical_inconsistency``,
    ``pass``, ``reason``)."""
    from emocaliber_rl.data.cot_prompts import label_leak, parse_steps
    from emocaliber_rl.world.scenes import _coarse
    from reward_fns.emocaliber import extract_answer

    ev = read_evidence(image, subtask)
    name = _names(ev)
    by_name = {v: k for k, v in name.items()}
    steps = parse_steps(response)
    reasons: list[str] = []
    hallucination = leakage = inconsistent = False
    if steps is None:
        return {"hallucination": False, "label_leakage": False, "logical_inconsistency": True,
                "pass": False, "reason": "the five steps are not all there"}
    # hallucination: every colour named must be shown, every count stated must be the image's
    known = set(COLOUR_NAMES)
    for tag in ("element", "context", "interaction", "analysis"):
        for word in re.findall(r"[a-z]+", steps[tag].lower()):
            if word in known and word not in by_name:
                hallucination = True
                reasons.append(f"<{tag}> names {word}, which the image does not show")
    context = steps["context"].lower()
    whole = re.search(rf"\ball {CELLS} cells ([a-z]+)", context)
    claimed = ({whole.group(1): CELLS} if whole else
               {colour: int(n) for n, colour in _COUNT.findall(context) if colour in known})
    actual = {name[lab]: n for lab, n in ev.counts.items()}
    if claimed and claimed != actual:
        hallucination = True
        reasons.append(f"<context> counts {claimed} but the image shows {actual}")
    m = re.match(r"([a-z]+) cells per row: ((?:\d+ ?)+)$", steps["element"].lower().strip())
    if m and m.group(1) in by_name:
        rows = [int(x) for x in m.group(2).split()]
        if rows != ev.row_counts(by_name[m.group(1)]):
            hallucination = True
            reasons.append(f"<element> rows {rows} but the image shows {ev.row_counts(by_name[m.group(1)])}")
    # label leakage: a label word (or alias) inside the steps, by the structural check's rule
    leak = label_leak(subtask, label, " ".join(steps.values()))
    if leak:
        leakage = True
        reasons.append(f"label word {leak!r} inside the steps")
    # logical inconsistency: the interaction against the counts, the answer against the analysis
    mi = re.match(r"([a-z]+) outweighs ([a-z]+)", steps["interaction"].lower().strip())
    if mi and mi.group(1) in by_name and mi.group(2) in by_name and \
            ev.counts[by_name[mi.group(1)]] <= ev.counts[by_name[mi.group(2)]]:
        inconsistent = True
        reasons.append(f"<interaction> says {mi.group(1)} outweighs {mi.group(2)}; the counts say otherwise")
    named = [by_name[w] for w in re.findall(r"[a-z]+", steps["analysis"].lower()) if w in by_name]
    answer = (extract_answer(response) or "").strip().lower()
    if answer != label.lower():
        inconsistent = True
        reasons.append(f"the answer {answer!r} is not the label {label!r}")
    to_coarse = _coarse(subtask)  # the subtask's reading of a fine label (polarity, WebEmo-7 parent)
    if not named or all(to_coarse(lab) != label for lab in named):
        inconsistent = True
        reasons.append(f"the label {label!r} is the mood of no colour the <analysis> names")
    ok = not (hallucination or leakage or inconsistent)
    return {"hallucination": hallucination, "label_leakage": leakage, "logical_inconsistency": inconsistent,
            "pass": ok, "reason": "; ".join(reasons) if reasons else "consistent with the image"}
