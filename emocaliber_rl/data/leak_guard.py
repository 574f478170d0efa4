"""The train/test guard: no test image reaches a training file unless the user says so.

A record is test data when any of these holds:

- its ``split`` is ``test``, or it came from one (``extra["origin_split"]``, which `cot split`
  keeps when it assigns the VEC-CoT subset);
- its subtask is test-only (:data:`emocaliber_rl.taxonomy.TEST_ONLY_SUBTASKS`, the OOD subtasks);
- its image's sha256 is one of a test manifest's (``--test-manifest``; a record without a
  ``sha256`` is hashed from its file).

`cot split` and the training exports (``sft1``, ``prompts2``, ``rl3``) call :func:`refuse_test_data`
before they write anything; :class:`LeakedTestDataError` (an ``InputFileError``: exit 2, one line) gives
the count, the count per reason and the first few records. ``--allow-test`` skips the check (a
stage-3 validation parquet is built from the test split on purpose).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from emocaliber_rl.data.images import sha256_bytes
from emocaliber_rl.data.records import Record
from emocaliber_rl.jsonl import InputFileError
from emocaliber_rl.taxonomy import TEST_ONLY_SUBTASKS

TEST_SPLIT = "test"
ORIGIN_SPLIT = "origin_split"  # key in Record.extra: the split a record had before `cot split`
SHOWN = 5  # records named in the refusal; the count covers all of them


class LeakedTestDataError(InputFileError):
    """Test records among the inputs of a training step."""


@dataclass(frozen=True)
class Located:
    """A record with where it was read (``file:line``), for the refusal message."""

    record: Record
    where: str | None = None


def origin_split(rec: Record) -> str | None:
    """The split the record came from: the kept origin when `cot split` reassigned it."""
    return rec.extra.get(ORIGIN_SPLIT) or rec.split


def _file_sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return sha256_bytes(fh.read())
    except OSError:
        return None  # a missing image is the export's own problem to report


def hashes_of_manifests(paths: Iterable[str | os.PathLike[str]]) -> set[str]:
    """The image sha256 of every record of the test manifests (hashed from the file when a row
    carries none). A manifest that cannot be read raises ``InputFileError``."""
    from emocaliber_rl.data.records import read_manifest

    out: set[str] = set()
    for path in paths:
        if not Path(path).is_file():
            raise InputFileError(f"{path}: the test manifest does not exist")
        for rec in read_manifest(path):
            digest = rec.sha256 or _file_sha256(rec.image)
            if digest:
                out.add(digest)
    return out


def why_test_data(rec: Record, hashes: set[str]) -> str | None:
    """Why ``rec`` is test data (a short phrase), or None when it is not."""
    split = origin_split(rec)
    if split is not None and split.strip().lower() == TEST_SPLIT:
        return "split test"
    if rec.subtask in TEST_ONLY_SUBTASKS:
        return f"test-only subtask {rec.subtask}"
    if hashes:
        digest = rec.sha256 or _file_sha256(rec.image)
        if digest in hashes:
            return "image in the test manifest"
    return None


def refuse_test_data(items: Sequence[Located], hashes: set[str], what: str) -> None:
    """Raise :class:`LeakedTestDataError` when any item is test data; ``what`` names the step
    (``export sft1``) in the message."""
    found = [(it, reason) for it in items if (reason := why_test_data(it.record, hashes)) is not None]
    if not found:
        return
    by_reason = Counter(reason for _, reason in found)
    reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(by_reason.items()))
    first = ", ".join(f"{it.where} [{it.record.id}]" if it.where else it.record.id
                      for it, _ in found[:SHOWN])
    more = f" and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    raise LeakedTestDataError(
        f"{len(found)} of {len(items)} input records are test data ({reasons}), refused by "
        f"{what}: {first}{more}; nothing written. Leave them out, or pass --allow-test if they "
        "are meant to be there (e.g. a validation set)")
