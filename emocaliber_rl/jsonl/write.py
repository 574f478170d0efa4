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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    try:
        with open(tmp, "wb") as f:
            for row in rows:
                f.write(dumps_line(row, sort_keys=sort_keys))
                n += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n
