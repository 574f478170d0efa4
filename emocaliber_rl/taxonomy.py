"""Label sets of every VECBench subtask, their aliases, parent and polarity maps.

Canonical labels are lower-case English words spelled correctly. Dataset spellings that differ
(WebEmo's ``cheerfullness`` and ``irritabilty``, Abstract/ArtPhoto's ``sad`` and ``content``) are
aliases: :func:`normalize_label` maps them to the canonical word, and :func:`canonical_label`
does so for one subtask, raising :class:`UnknownLabelError` (naming the subtask and its valid
labels) when the word is not one of its labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from reward_fns.emocaliber import LABEL_ALIASES

MIKELS_8: tuple[str, ...] = (
    "amusement",
    "anger",
    "awe",
    "contentment",
    "disgust",
    "excitement",
    "fear",
    "sadness",
)
POLARITY_2: tuple[str, ...] = ("positive", "negative")
MIKELS_POLARITY: dict[str, str] = {
    "amusement": "positive",
    "awe": "positive",
    "contentment": "positive",
    "excitement": "positive",
    "anger": "negative",
    "disgust": "negative",
    "fear": "negative",
    "sadness": "negative",
}

# WebEmo's 25 leaf categories in the order of its category.txt (label index = position),
# with their Parrott parent and polarity. Spelling corrected; WebEmo's own spelling is an alias.
WEBEMO_25_HIERARCHY: tuple[tuple[str, str, str], ...] = (
    ("affection", "love", "positive"),
    ("cheerfulness", "joy", "positive"),
    ("confusion", "confusion", "negative"),
    ("contentment", "joy", "positive"),
    ("disappointment", "sadness", "negative"),
    ("disgust", "anger", "negative"),
    ("enthrallment", "joy", "positive"),
    ("envy", "anger", "negative"),
    ("exasperation", "anger", "negative"),
    ("gratitude", "love", "positive"),
    ("horror", "fear", "negative"),
    ("irritability", "anger", "negative"),
    ("lust", "love", "positive"),
    ("neglect", "sadness", "negative"),
    ("nervousness", "fear", "negative"),
    ("optimism", "joy", "positive"),
    ("pride", "joy", "positive"),
    ("rage", "anger", "negative"),
    ("relief", "joy", "positive"),
    ("sadness", "sadness", "negative"),
    ("shame", "sadness", "negative"),
    ("suffering", "sadness", "negative"),
    ("surprise", "surprise", "positive"),
    ("sympathy", "sadness", "negative"),
    ("zest", "joy", "positive"),
)
WEBEMO_25: tuple[str, ...] = tuple(leaf for leaf, _, _ in WEBEMO_25_HIERARCHY)
WEBEMO_PARENT: dict[str, str] = {leaf: parent for leaf, parent, _ in WEBEMO_25_HIERARCHY}
WEBEMO_7: tuple[str, ...] = ("anger", "confusion", "fear", "joy", "love", "sadness", "surprise")
WEBEMO_POLARITY: dict[str, str] = {leaf: pol for leaf, _, pol in WEBEMO_25_HIERARCHY}
WEBEMO_7_POLARITY: dict[str, str] = {
    "anger": "negative",
    "confusion": "negative",
    "fear": "negative",
    "joy": "positive",
    "love": "positive",
    "sadness": "negative",
    "surprise": "positive",
}
UNBIASED_6: tuple[str, ...] = ("anger", "fear", "joy", "love", "sadness", "surprise")

# Spellings found in the datasets' own files and in model outputs, mapped to canonical words. Their
# one home is the reward (reward_fns.emocaliber.LABEL_ALIASES, standard library only, loadable by
# path without this package), so the reward, stage 2 and evaluation read answers alike.
ALIASES: dict[str, str] = dict(LABEL_ALIASES)


@dataclass(frozen=True)
class Subtask:
    """One VECBench subtask: its name, group and candidate labels (in prompt order)."""

    name: str
    group: str
    labels: tuple[str, ...]
    source: str
    aliases: dict[str, str] = field(default_factory=dict)

    def alias_map(self) -> dict[str, str]:
        """Every accepted spelling (lower case) of this subtask's labels -> canonical label."""
        out = {label: label for label in self.labels}
        for alias, target in ALIASES.items():
            if target in out:
                out[alias] = target
        return out


GROUP_ID_VSA = "ID VSA"
GROUP_ID_VER = "ID VER"
GROUP_OOD_VER = "OOD VER"
GROUPS: tuple[str, ...] = (GROUP_ID_VER, GROUP_ID_VSA, GROUP_OOD_VER)

SUBTASKS: dict[str, Subtask] = {
    s.name: s
    for s in (
        Subtask("FI-8", GROUP_ID_VER, MIKELS_8, "FI"),
        Subtask("EmoSet-8", GROUP_ID_VER, MIKELS_8, "EmoSet"),
        Subtask("WebEmo-7", GROUP_ID_VER, WEBEMO_7, "WebEmo"),
        Subtask("WebEmo-25", GROUP_ID_VER, WEBEMO_25, "WebEmo"),
        Subtask("FI-2", GROUP_ID_VSA, POLARITY_2, "FI"),
        Subtask("WebEmo-2", GROUP_ID_VSA, POLARITY_2, "WebEmo"),
        Subtask("Abstract-8", GROUP_OOD_VER, MIKELS_8, "Abstract"),
        Subtask("Artphoto-8", GROUP_OOD_VER, MIKELS_8, "ArtPhoto"),
        Subtask("UnbiasedEmo-6", GROUP_OOD_VER, UNBIASED_6, "UnbiasedEmo"),
    )
}
# Spellings of subtask names seen in the wild (the paper writes 'ArtPhoto-8' and 'UnbiasedEmo-8';
# some pipelines write 'UnbaisedEmo-6').
SUBTASK_ALIASES: dict[str, str] = {
    "artphoto-8": "Artphoto-8",
    "unbaisedemo-6": "UnbiasedEmo-6",
    "unbiasedemo-8": "UnbiasedEmo-6",
}
TRAIN_SUBTASKS: tuple[str, ...] = ("FI-8", "EmoSet-8", "WebEmo-7", "WebEmo-25", "FI-2", "WebEmo-2")
# The OOD subtasks are evaluation only (paper Sec. 4.1): no split of them may reach training.
TEST_ONLY_SUBTASKS: tuple[str, ...] = tuple(n for n in SUBTASKS if n not in TRAIN_SUBTASKS)

# Which emotion loop (see loops/) measures distances for each subtask.
LOOP_OF_SUBTASK: dict[str, str] = {
    "FI-8": "mikels8",
    "EmoSet-8": "mikels8",
    "Abstract-8": "mikels8",
    "Artphoto-8": "mikels8",
    "FI-2": "polarity2",
    "WebEmo-2": "polarity2",
    "WebEmo-7": "webemo7",
    "WebEmo-25": "webemo25",
    "UnbiasedEmo-6": "unbiased6",
}


class UnknownLabelError(ValueError):
    """A label that is not one of a subtask's labels (nor an alias of one)."""


class UnknownSubtaskError(ValueError):
    """A subtask name that VECBench does not define."""


def get_subtask(name: str) -> Subtask:
    """Look up a subtask by name, tolerant of case and known misspellings."""
    if name in SUBTASKS:
        return SUBTASKS[name]
    key = name.strip().lower()
    for canonical, task in SUBTASKS.items():
        if canonical.lower() == key:
            return task
    if key in SUBTASK_ALIASES:
        return SUBTASKS[SUBTASK_ALIASES[key]]
    raise UnknownSubtaskError(f"unknown subtask {name!r}; valid subtasks: {', '.join(SUBTASKS)}")


_NON_WORD = re.compile(r"[^a-z]+")


def normalize_label(text: str) -> str:
    """Lower-case, strip punctuation and whitespace, and resolve known aliases."""
    key = _NON_WORD.sub("", text.lower())
    return ALIASES.get(key, key)


def canonical_label(subtask: str, label: str) -> str:
    """The canonical spelling of ``label`` within ``subtask``.

    Raises:
        UnknownLabelError: naming the subtask and its valid labels.
    """
    task = get_subtask(subtask)
    key = _NON_WORD.sub("", label.lower())
    found = task.alias_map().get(key)
    if found is None:
        raise UnknownLabelError(
            f"label {label!r} is not a label of subtask {task.name}; "
            f"valid labels: {', '.join(task.labels)}"
        )
    return found


def polarity_of(label: str) -> str:
    """Polarity (``positive``/``negative``) of any Mikels, WebEmo-25 or WebEmo-7 label."""
    key = normalize_label(label)
    if key in POLARITY_2:
        return key
    for table in (MIKELS_POLARITY, WEBEMO_POLARITY, WEBEMO_7_POLARITY):
        if key in table:
            return table[key]
    raise UnknownLabelError(f"no polarity known for label {label!r}")


def webemo_parent(label: str) -> str:
    """The WebEmo-7 parent of a WebEmo-25 label."""
    key = normalize_label(label)
    if key not in WEBEMO_PARENT:
        raise UnknownLabelError(
            f"label {label!r} is not a WebEmo-25 label; valid labels: {', '.join(WEBEMO_25)}"
        )
    return WEBEMO_PARENT[key]


def group_of(subtask: str) -> str:
    """The VECBench group (ID VER, ID VSA, OOD VER) of a subtask."""
    return get_subtask(subtask).group


def aliases_for(subtask: str) -> dict[str, str]:
    """Alias -> canonical map of a subtask, as passed to the reward function in ``extra_info``."""
    task = get_subtask(subtask)
    return {alias: target for alias, target in task.alias_map().items() if alias != target}
