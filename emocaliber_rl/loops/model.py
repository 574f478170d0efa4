"""The emotion loops as shipped data: the loop names and their labels, :class:`EmotionLoop`, and
the public lookups (``load_loop``, ``loop_for_subtask``, ``resolve_loop``, ``distance``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from emocaliber_rl.taxonomy import (
    LOOP_OF_SUBTASK,
    MIKELS_8,
    POLARITY_2,
    UNBIASED_6,
    WEBEMO_7,
    WEBEMO_25,
    WEBEMO_PARENT,
    UnknownLabelError,
    get_subtask,
    normalize_label,
)

# Loop name -> labels in taxonomy order. The order fixes the loop's printed orientation only.
LOOP_LABELS: dict[str, tuple[str, ...]] = {
    "mikels8": MIKELS_8,
    "polarity2": POLARITY_2,
    "webemo7": WEBEMO_7,
    "webemo25": WEBEMO_25,
    "unbiased6": UNBIASED_6,
}
# Loops whose labels must stay contiguous by group on the cycle: label -> group.
LOOP_GROUPS: dict[str, dict[str, str]] = {"webemo25": dict(WEBEMO_PARENT)}
LOOP_NAMES: tuple[str, ...] = tuple(LOOP_LABELS)
FORMAT_VERSION = 1


class UnknownLoopError(ValueError):
    """A loop name (or subtask name) that has no emotion loop."""


@dataclass(frozen=True)
class EmotionLoop:
    """One emotion loop: labels in loop order, their positions in [0, 1) and provenance."""

    name: str
    order: tuple[str, ...]
    positions: Mapping[str, float]
    total_length: float
    groups: Mapping[str, str] | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.order

    def canonical(self, label: str) -> str:
        """The loop's spelling of ``label`` (case, punctuation and taxonomy aliases tolerated).

        Raises:
            UnknownLabelError: naming the loop and its valid labels.
        """
        key = normalize_label(label)
        if key not in self.positions:
            raise UnknownLabelError(
                f"label {label!r} is not on emotion loop {self.name}; "
                f"valid labels: {', '.join(self.order)}"
            )
        return key

    def distance(self, a: str, b: str) -> float:
        """Normalised perimeter distance d(a, b) in [0, 0.5]; 0 when a and b are the same."""
        gap = abs(self.positions[self.canonical(a)] - self.positions[self.canonical(b)])
        return min(gap, 1.0 - gap)

    def distance_table(self) -> dict[str, dict[str, float]]:
        """d for every ordered pair of labels, in loop order."""
        return {a: {b: self.distance(a, b) for b in self.order} for a in self.order}

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "order": list(self.order),
            "positions": {k: self.positions[k] for k in self.order},
            "total_length": self.total_length,
            "groups": dict(self.groups) if self.groups else None,
            **dict(self.provenance),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EmotionLoop:
        known = {"format_version", "name", "order", "positions", "total_length", "groups"}
        order = tuple(data["order"])
        positions = {k: float(v) for k, v in data["positions"].items()}
        if set(order) != set(positions) or len(order) != len(set(order)):
            raise ValueError(f"loop {data.get('name')!r}: order and positions disagree")
        groups = data.get("groups")
        # Read-only views: load_loop caches one instance that every caller shares.
        return cls(
            name=data["name"],
            order=order,
            positions=MappingProxyType(positions),
            total_length=float(data["total_length"]),
            groups=MappingProxyType(dict(groups)) if groups else None,
            provenance=MappingProxyType({k: v for k, v in data.items() if k not in known}),
        )


def default_loops_dir() -> Path:
    """Where the shipped loops live (``emocaliber_rl/data/loops``)."""
    return Path(str(resources.files("emocaliber_rl"))) / "data" / "loops"


@cache
def _load_cached(name: str, directory: str | None) -> EmotionLoop:
    if directory is None:
        # importlib.resources also works when the package is installed as a zip.
        text = resources.files("emocaliber_rl").joinpath("data", "loops", f"{name}.json").read_text(
            encoding="utf-8"
        )
    else:
        text = (Path(directory) / f"{name}.json").read_text(encoding="utf-8")
    return EmotionLoop.from_json(json.loads(text))


def load_loop(name: str, directory: str | Path | None = None) -> EmotionLoop:
    """The emotion loop ``name`` (one of ``LOOP_NAMES``), from the shipped JSON or ``directory``.

    Raises:
        UnknownLoopError: naming the valid loops.
    """
    key = name.strip().lower()
    if key not in LOOP_LABELS:
        raise UnknownLoopError(f"unknown emotion loop {name!r}; valid loops: {', '.join(LOOP_NAMES)}")
    return _load_cached(key, None if directory is None else str(directory))


def loop_for_subtask(subtask: str, directory: str | Path | None = None) -> EmotionLoop:
    """The emotion loop that measures distances for a VECBench subtask (e.g. ``FI-8``)."""
    return load_loop(LOOP_OF_SUBTASK[get_subtask(subtask).name], directory)


def resolve_loop(name: str, directory: str | Path | None = None) -> EmotionLoop:
    """A loop by loop name (``mikels8``) or by subtask name (``FI-8``)."""
    if name.strip().lower() in LOOP_LABELS:
        return load_loop(name, directory)
    try:
        return loop_for_subtask(name, directory)
    except ValueError:
        raise UnknownLoopError(
            f"{name!r} is neither an emotion loop ({', '.join(LOOP_NAMES)}) nor a subtask "
            f"({', '.join(LOOP_OF_SUBTASK)})"
        ) from None


def distance(subtask: str, a: str, b: str) -> float:
    """d(a, b) in [0, 0.5] on the loop of ``subtask`` (paper Eq. 2)."""
    return loop_for_subtask(subtask).distance(a, b)
