"""The row schema every command reads, and its one validator.

Every per-sample row the toolkit writes (manifests, the stage-2 prompt set, generations, the
evaluation manifest, ``eval run`` predictions, oracle rows, ``--samples`` rows) names its VECBench
subtask in one field, ``subtask``. Files written before that rule named it ``task``; readers still
accept them: :func:`validate_row` moves an old ``task`` to ``subtask``.

:func:`validate_row` checks what every reader needs of a row: a JSON object, its required fields
present, a known subtask (stored canonical), and a label of that subtask. Its error is one
:class:`~emocaliber_rl.jsonl.InputFileError` line naming the file, the line, the field and the
row's id. Stage-specific checks (a stage-2 row's ``messages``, a prediction's ``candidates``) stay
with their reader.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from emocaliber_rl.jsonl import InputFileError, input_error
from emocaliber_rl.taxonomy import UnknownLabelError, UnknownSubtaskError, canonical_label, get_subtask

# The one field name of a row's subtask, and the name older files used for it.
SUBTASK = "subtask"
OLD_SUBTASK = "task"


def row_subtask(row: dict[str, Any]) -> Any:
    """The row's subtask as stored (``subtask``, else an old file's ``task``), or ``None``."""
    value = row.get(SUBTASK)
    return value if value is not None else row.get(OLD_SUBTASK)


def missing_fields(row: dict[str, Any], required: Sequence[str]) -> list[str]:
    """The ``required`` fields that ``row`` lacks or holds as null (``subtask`` also found as an
    old ``task``)."""
    return [k for k in required if (row_subtask(row) if k == SUBTASK else row.get(k)) is None]


def row_error(path: str | os.PathLike[str], line: int | None, row_id: Any, field: str | None, msg: str,
              error: type[InputFileError] = InputFileError) -> InputFileError:
    """``path:line: field 'x': msg (id 'y')``; the id is left out where the row has none."""
    where = f" (id {str(row_id)!r})" if row_id is not None else ""
    return error(str(input_error(path, line, field, msg + where)))


def validate_row(
    row: Any,
    *,
    path: str | os.PathLike[str],
    line: int | None,
    required: Sequence[str] = ("id", SUBTASK, "image", "label"),
    label_key: str = "label",
    error: type[InputFileError] = InputFileError,
) -> dict[str, Any]:
    """Check one row in place and return it: ``subtask`` canonical (an old ``task`` moved to it),
    ``id`` a string where present, ``row[label_key]`` a label of the subtask (left as spelled).

    ``required``: the fields the reader needs (``subtask`` and ``label_key`` are always checked).
    Raises ``error`` (an :class:`InputFileError`) naming ``path``, ``line``, the field and the id.
    """
    if not isinstance(row, dict):
        raise row_error(path, line, None, None, f"expected a JSON object, got {type(row).__name__}", error)
    row_id = row.get("id")
    missing = missing_fields(row, list(dict.fromkeys([*required, SUBTASK, label_key])))
    if len(missing) == 1:
        raise row_error(path, line, row_id, missing[0], "missing", error)
    if missing:
        raise row_error(path, line, row_id, None, f"missing {', '.join(missing)}", error)
    field = SUBTASK if row.get(SUBTASK) is not None else OLD_SUBTASK
    try:
        subtask = get_subtask(str(row_subtask(row))).name
    except UnknownSubtaskError as e:
        raise row_error(path, line, row_id, field, str(e), error) from None
    row.pop(OLD_SUBTASK, None)
    row[SUBTASK] = subtask
    label = row[label_key]
    if not isinstance(label, str):
        raise row_error(path, line, row_id, label_key, f"expected a string, got {label!r}", error)
    try:
        canonical_label(subtask, label)
    except UnknownLabelError as e:
        raise row_error(path, line, row_id, label_key, str(e), error) from None
    if row_id is not None:
        row["id"] = str(row_id)
    return row
