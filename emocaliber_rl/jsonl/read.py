"""Reading JSON lines: every problem with an input file becomes ``path:line: message``.

Every command that reads jsonl (manifests, prompt sets, generations, predictions) goes through
:func:`iter_jsonl` or :func:`read_jsonl`, so a bad byte, a line that is not JSON or a row of the
wrong type is always named by file and line, never a bare ``UnicodeDecodeError`` or a traceback
deep in a stage. :class:`InputFileError` reaching ``emocaliber``'s ``main`` exits with code 2.

Lines are decoded one at a time (strict UTF-8), so one damaged line names its own line number
and column while the lines around it still read. A file with NUL bytes in its first 4 KiB is a
binary file (an image, parquet, gzip...) given where a jsonl was expected; JSON text can hold no
raw NUL, so it is refused as a whole instead of yielding one error per line of noise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_SNIFF_BYTES = 4096


class InputFileError(ValueError):
    """A bad input file or row; the message names the file, the line and (where one) the field."""


def input_error(path: str | os.PathLike[str], line: int | None, field: str | None,
                msg: str) -> InputFileError:
    """``path:line: field 'x': msg`` (line and field optional)."""
    where = f"{path}:{line}" if line is not None else str(path)
    return InputFileError(f"{where}: field {field!r}: {msg}" if field else f"{where}: {msg}")


def _check_text(path: Path, head: bytes) -> None:
    nul = head.find(b"\x00")
    if nul < 0:
        return
    line = head.count(b"\n", 0, nul) + 1
    col = nul - (head.rfind(b"\n", 0, nul) + 1) + 1
    raise input_error(path, line, None, f"binary data (NUL byte at column {col}): this is not a "
                                        "JSON-lines text file")


def _decode(raw: bytes) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, (f"not UTF-8 text: byte 0x{raw[e.start]:02x} at column {e.start + 1} "
                      "(save the file as UTF-8)")


def parse_line(raw: bytes) -> tuple[Any | None, str | None]:
    """``(object, None)`` for one line of bytes, or ``(None, message)`` (not UTF-8, invalid JSON).

    The one decoder: :func:`iter_jsonl` and the append log's recovery both use it, so a damaged
    line reads the same whichever of them meets it.
    """
    text, err = _decode(raw)
    if err is not None:
        return None, err
    try:
        return json.loads(text), None
    except json.JSONDecodeError as e:
        return None, f"invalid JSON: {e.msg} (column {e.colno})"


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any | None, str | None]]:
    """Yield ``(line_number, object, error)`` for every non-blank line (1-based line numbers).

    A line that cannot be decoded or parsed yields ``(n, None, message)`` instead of raising, so
    callers that report bad rows and carry on (exports, ``stage2 label``) can do so by line.

    Raises:
        InputFileError: the file does not exist, is a folder, or is binary.
    """
    p = Path(path)
    if not p.exists():
        raise input_error(p, None, None, "no such file")
    if p.is_dir():
        raise input_error(p, None, None, "is a folder, not a JSON-lines file")
    with open(p, "rb") as f:
        _check_text(p, f.read(_SNIFF_BYTES))
        f.seek(0)
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            obj, err = parse_line(raw)
            yield n, obj, err


def read_jsonl(path: str | os.PathLike[str], *, objects: bool = True) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)``; the first bad line raises :class:`InputFileError`.

    ``objects`` (default) also refuses a line that is valid JSON but not an object: every file
    this package reads holds one object per line.
    """
    for n, obj, err in iter_jsonl(path):
        if err is not None:
            raise input_error(path, n, None, err)
        if objects and not isinstance(obj, dict):
            raise input_error(path, n, None, f"expected a JSON object, got {type(obj).__name__}")
        yield n, obj
