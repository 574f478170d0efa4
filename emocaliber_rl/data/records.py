"""The common record every data step reads and writes, and jsonl helpers.

Reading and writing go through :mod:`emocaliber_rl.jsonl` (``iter_jsonl`` and ``write_jsonl`` are
re-exported here).

A manifest is a jsonl file of :class:`Record` rows. Field names are stable because other stages
(stage 2, evaluation) read the manifests directly. Image paths in a manifest are absolute or
relative to the manifest's folder (:mod:`emocaliber_rl.data.image_paths`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from emocaliber_rl.data.image_paths import resolve_image, stored_image
from emocaliber_rl.data.rows import SUBTASK, missing_fields, row_subtask, validate_row
from emocaliber_rl.jsonl import InputFileError, input_error, iter_jsonl, write_jsonl
from emocaliber_rl.taxonomy import canonical_label, get_subtask

__all__ = ["Record", "iter_jsonl", "iter_manifest", "read_manifest", "refuse_duplicate_ids", "write_jsonl",
           "write_manifest"]


@dataclass
class Record:
    """One image of one VECBench subtask.

    ``label`` is canonical (see :func:`emocaliber_rl.taxonomy.canonical_label`); ``candidates`` are the
    subtask's labels in prompt order. A CoT is either the five ``steps`` (element, human, context,
    interaction, analysis) or a full ``response`` string (``<think>..</think><answer>..</answer>``).
    """

    id: str
    subtask: str
    group: str
    image: str
    label: str
    candidates: list[str]
    sha256: str | None = None
    split: str | None = None
    source: str | None = None
    steps: dict[str, str] | None = None
    response: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def make(
        cls,
        id: str,
        subtask: str,
        image: str | os.PathLike[str],
        label: str,
        **kwargs: Any,
    ) -> Record:
        """Build a record, canonicalising subtask and label (raises ``UnknownLabelError``)."""
        task = get_subtask(subtask)
        return cls(
            id=str(id),
            subtask=task.name,
            group=task.group,
            image=str(image),
            label=canonical_label(task.name, label),
            candidates=list(task.labels),
            **kwargs,
        )

    @property
    def has_cot(self) -> bool:
        return bool(self.steps) or bool(self.response)

    def to_dict(self) -> dict[str, Any]:
        # Field by field rather than dataclasses.asdict: asdict deep-copies, which showed up as
        # the largest client-side cost in the synthesis throughput profile.
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["candidates"] = list(self.candidates)
        d["extra"] = dict(self.extra)
        if self.steps is not None:
            d["steps"] = dict(self.steps)
        # Optional fields stay out of the file when unset so manifests remain small and diffable.
        for key in ("steps", "response", "split", "source", "sha256"):
            if d[key] is None:
                del d[key]
        if not d["extra"]:
            del d["extra"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        """Read a manifest row; ``task``/``image_path``/``checksum`` spellings are accepted too."""
        subtask = row_subtask(d)  # the row schema's field (data/rows.py), or an old file's `task`
        image = d.get("image") if d.get("image") is not None else d.get("image_path")
        missing = missing_fields({**d, "image": image}, ("id", SUBTASK, "image", "label"))
        if missing:
            raise ValueError(f"a record needs id, subtask, image and label: missing {', '.join(missing)}")
        rec = cls.make(
            d["id"],
            subtask,
            image,
            d["label"],
            sha256=d.get("sha256") or d.get("checksum"),
            split=d.get("split"),
            source=d.get("source"),
            steps=d.get("steps"),
            response=d.get("response"),
            extra=dict(d.get("extra") or {}),
        )
        return rec


def iter_manifest(path: str | os.PathLike[str]) -> Iterator[tuple[int, Record]]:
    """``(line number, record)`` of each row of a manifest written by this package;
    :class:`InputFileError` names the bad line. Relative image paths resolve against the
    manifest's folder (:mod:`~emocaliber_rl.data.image_paths`)."""
    folder = Path(path).parent
    for n, obj, err in iter_jsonl(path):
        if err is not None:
            raise input_error(path, n, None, err)
        # the one row validator names the line, field and id; Record.from_dict adds the aliases
        validate_row(obj, path=path, line=n, required=("id", SUBTASK, "label"))
        try:
            rec = Record.from_dict(obj)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise InputFileError(f"{path}:{n}: {e}") from e
        rec.image = resolve_image(rec.image, folder)
        yield n, rec


def read_manifest(path: str | os.PathLike[str]) -> list[Record]:
    """Read a manifest written by this package; :class:`InputFileError` names the bad line."""
    return [rec for _, rec in iter_manifest(path)]


def refuse_duplicate_ids(items: Iterable[tuple[str, Record]]) -> None:
    """The one id rule for a command without a problem report: a repeated id stops it.

    ``items`` are ``(where, record)`` pairs, ``where`` being ``file:line``; raises
    :class:`InputFileError` naming the repeat, its id and where the id was first used.
    """
    seen: dict[str, str] = {}
    for where, rec in items:
        if rec.id in seen:
            raise InputFileError(f"{where}: field 'id': {rec.id!r} already used at {seen[rec.id]} "
                                 "(duplicate_id: an id names one sample; remove or rename the repeat)")
        seen[rec.id] = where


def write_manifest(path: str | os.PathLike[str], records: Iterable[Record]) -> int:
    """Write ``records`` to ``path``; image paths are stored by the one path rule (absolute, or
    relative to ``path``'s folder when inside it)."""

    def row(r: Record) -> dict[str, Any]:
        d = r.to_dict()
        d["image"] = stored_image(r.image, path)
        return d

    return write_jsonl(path, (row(r) for r in records))
