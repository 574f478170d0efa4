"""Writing a whole JSON-lines file atomically: readers see the old file or the new one, never half."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def dumps_line(row: Any, *, sort_keys: bool = False) -> bytes:
    """One row as one line of UTF-8 bytes, newline included (non-ASCII kept as is)."""
    return (json.dumps(row, ensure_ascii=False, sort_keys=sort_keys) + "\n").encode("utf-8")


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]], *,
                sort_keys: bool = True) -> int:
    """Write ``rows`` to ``path`` through a temporary file, fsync and rename; returns the count.

    The rename is atomic, and the fsync before it makes sure the renamed file holds its data
    (otherwise a power cut can leave a renamed but empty file). ``sort_keys`` (default) keeps the
    output stable for diffs.
    """
    return write_jsonl_files({path: rows}, sort_keys=sort_keys)[0]


def write_jsonl_files(files: dict[str | os.PathLike[str], Iterable[dict[str, Any]]], *,
                      sort_keys: bool = True) -> list[int]:
    """Write several files that belong together (``bench build``'s train and test) all or none:
    each goes to its temporary file first, and only when every one is complete are they renamed
    into place; a row that cannot be written leaves none of them. Returns the row counts."""
    tmps: list[tuple[Path, Path]] = []
    counts = []
    try:
        for path, rows in files.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmps.append((tmp, path))
            n = 0
            with open(tmp, "wb") as f:
                for row in rows:
                    f.write(dumps_line(row, sort_keys=sort_keys))
                    n += 1
                f.flush()
                os.fsync(f.fileno())
            counts.append(n)
        for tmp, path in tmps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in tmps:
            tmp.unlink(missing_ok=True)
        raise
    return counts
