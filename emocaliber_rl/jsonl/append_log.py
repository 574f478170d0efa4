"""The append log: a JSON-lines file that grows one committed batch at a time and survives a kill.

Both long-running outputs use it: ``stage2 generate`` / ``eval run``
(:class:`~emocaliber_rl.inference.resumable.ResumableJsonl`) and ``cot synthesize`` / ``cot judge``
(:class:`~emocaliber_rl.data.cot_store.ResultLog`). The rules, the same for both:

* **Commit.** A batch is one ``write`` of whole lines, then ``flush`` + ``fsync``. A row is
  committed once its newline is on disk.
* **Torn last line.** The only damage a kill can do is cut that ``write`` short, so the last
  line of the file may lack its newline or fail to parse. On open it is dropped, reported
  (:attr:`AppendLog.torn_note`, :attr:`AppendLog.torn_bytes`) and truncated before anything is
  appended, so the next row starts on a line boundary. Earlier lines are never rewritten.
* **Bad line elsewhere.** A line that does not parse with more lines after it, or a row that is
  not an object with the key, cannot come from a kill. It raises
  :class:`~emocaliber_rl.jsonl.InputFileError` naming the file and line (``on_bad="error"``, the
  default); ``on_bad="skip"`` is the explicit opt-in to skip it and report it in :attr:`notes`.
* **One row per key, the first wins.** :meth:`AppendLog.append` drops a row whose key is already
  in the file (or earlier in the batch); a file written by other means that repeats a key keeps
  its first row and reports the rest. The first row is the one already paid for and possibly
  already read by a downstream step (``cot judge`` reads a synthesis while it runs); keeping it
  means what was read once stays true, and it matches the package's readers (``eval score
  --duplicates first``, ``stage2 label``).
* **Writers.** By default the log holds an exclusive ``flock`` from :meth:`~AppendLog.open` to
  :meth:`~AppendLog.close`: a second run on the same output fails at once
  (:class:`OutputLockedError`) instead of paying for the same records twice.
  ``shared=True`` lets several processes append to one file: each append takes the lock, reads
  the rows the others committed since (so a key is still written once), and releases it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Self

from emocaliber_rl.jsonl.read import input_error, parse_line
from emocaliber_rl.jsonl.write import dumps_line

OnBad = Literal["error", "skip"]


class OutputLockedError(RuntimeError):
    """Another process is writing the same output file."""


class AppendLog:
    """Append-only jsonl keyed by ``key``; ``with AppendLog(path) as log: log.append(rows)``.

    Args:
        path: the file (created, with its folder, on open).
        key: the field that identifies a row (its value is compared as ``str``); ``None`` for a
            log without keys (every row is appended, none deduplicated).
        shared: lock per append instead of for the whole session (several writers).
        on_bad: ``"error"`` (default) or ``"skip"`` for a bad line that is not the last one.
        keep_rows: also keep the first row of every key in :attr:`rows` (``keys`` alone is
            enough to resume, and a generations file can be large).
    """

    def __init__(self, path: str | os.PathLike[str], key: str | None = "id", *, shared: bool = False,
                 on_bad: OnBad = "error", keep_rows: bool = False) -> None:
        if on_bad not in ("error", "skip"):
            raise ValueError(f"on_bad must be 'error' or 'skip', not {on_bad!r}")
        self.path = Path(path)
        self.key = key
        self.shared = shared
        self.on_bad = on_bad
        self.keep_rows = keep_rows
        self.keys: set[str] = set()
        self.rows: dict[str, dict[str, Any]] = {}
        self.notes: list[str] = []  # skipped bad lines and repeated keys, one line each
        self.torn_note: str | None = None
        self.torn_bytes = 0
        self.duplicates = 0  # rows in the file whose key an earlier row has (ignored)
        self._fh: Any = None
        self._end = 0  # bytes of the file read so far (always a line boundary)
        self._lineno = 0  # lines read so far, so later reads number lines as the file does

    # -- session ------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._fh is not None

    def open(self) -> Self:
        """Lock (unless ``shared``), read the committed rows and cut a torn last line."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # "a+b": create if missing, never truncate on open, every write lands at the end
        fh = open(self.path, "a+b")  # noqa: SIM115  (held open across append() calls)
        if not self.shared:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                raise OutputLockedError(f"{self.path} is being written by another process") from None
        self._fh = fh
        try:
            with self._locked():
                self._catch_up(repair=True)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing releases the flock
            self._fh = None

    @classmethod
    def read(cls, path: str | os.PathLike[str], key: str | None = "id", *, on_bad: OnBad = "error",
             keep_rows: bool = True) -> AppendLog:
        """The committed rows of a log that may be written right now, without locking or repairing
        it (``cot judge`` on a synthesis still running): a torn tail is reported and left alone."""
        log = cls(path, key, on_bad=on_bad, keep_rows=keep_rows)
        if log.path.exists():
            with open(log.path, "rb") as fh:
                log._scan(fh, repair=False)
        return log

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if not self.shared:  # held since open()
            yield
            return
        fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)

    # -- reading ------------------------------------------------------------------------------

    def _catch_up(self, repair: bool) -> None:
        """Read what was committed after ``_end`` (all of it on open; other writers' rows later)."""
        if os.fstat(self._fh.fileno()).st_size > self._end:
            self._scan(self._fh, repair=repair)

    def _scan(self, fh: Any, *, repair: bool) -> None:
        fh.seek(self._end)
        pending: tuple[int, int, str] | None = None  # (line, offset, why) of a line that may be the torn tail
        offset = self._end
        for raw in fh:
            self._lineno += 1
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            if pending is not None:  # a line follows it: not a tail, a bad line in the middle
                self._bad(pending[0], pending[2] + ", and lines follow it (an interrupted write "
                          "can only damage the last line)")
                pending = None
            obj, err = parse_line(raw) if raw.endswith(b"\n") else (None, "no newline at the end")
            if err is not None:
                pending = (self._lineno, start, err)
                continue
            self._take(obj)
        if pending is not None:
            line, start, why = pending
            self.torn_bytes = offset - start
            self.torn_note = (f"{self.path}:{line}: torn last line ({self.torn_bytes} bytes, {why}) "
                              "from an interrupted write; ignored" + (" and truncated" if repair else ""))
            if repair:
                self._fh.truncate(start)
                self._fh.flush()
                os.fsync(self._fh.fileno())
            offset = start
            self._lineno = line - 1
        self._end = offset

    def _bad(self, line: int, why: str) -> None:
        if self.on_bad == "error":
            raise input_error(self.path, line, None, f"{why}; repair or remove the line (the file "
                              "is left as it is)")
        self.notes.append(f"{self.path}:{line}: {why}; skipped")

    def _take(self, obj: Any) -> None:
        if self.key is None:
            return
        if not isinstance(obj, dict) or self.key not in obj:
            what = f"an object without {self.key!r}" if isinstance(obj, dict) else type(obj).__name__
            self._bad(self._lineno, f"expected a JSON object with {self.key!r}, got {what}")
            return
        k = str(obj[self.key])
        if k in self.keys:
            self.duplicates += 1
            self.notes.append(f"{self.path}:{self._lineno}: field {self.key!r}: {k!r} repeats an "
                              "earlier row; the first is kept")
            return
        self.keys.add(k)
        if self.keep_rows:
            self.rows[k] = obj

    # -- writing ------------------------------------------------------------------------------

    def append(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Commit the rows whose key is new as one batch (flush + fsync); returns those written."""
        if self._fh is None:
            raise RuntimeError(f"{self.path}: append() on a log that is not open")
        with self._locked():
            self._catch_up(repair=True)  # other writers' rows (shared); nothing new otherwise
            new, lines = [], []
            for row in rows:
                if self.key is not None:
                    k = str(row[self.key])
                    if k in self.keys:
                        continue
                    self.keys.add(k)
                    if self.keep_rows:
                        self.rows[k] = row
                new.append(row)
                lines.append(dumps_line(row))
            if lines:
                self._fh.write(b"".join(lines))
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._lineno += len(lines)
                self._end = os.fstat(self._fh.fileno()).st_size  # under the lock: ours is the last write
        return new


def append_rows(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> int:
    """Append rows to a keyless log shared with other writers (the ``OUT.errors.jsonl`` files)."""
    with AppendLog(path, key=None, shared=True, on_bad="skip") as log:
        return len(log.append(rows))
