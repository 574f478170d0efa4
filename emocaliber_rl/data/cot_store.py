"""Append-only jsonl results, durable per record, resumable by record id.

A record counts as finished once its line is on disk and fsync'd; a restarted run skips every
finished id, so no paid call is repeated for it. Appends are *group-committed*: one writer task
writes every line queued so far, fsyncs once (in a thread, off the event loop), then releases
all their waiters. Each caller still returns only after its own line is durable, but 64
concurrent requests cost one fsync rather than 64.

A SIGKILL can interrupt a write; the only damage that can do is a torn *last* line (no trailing
newline, or not valid JSON). :meth:`ResultLog.load` detects it, reports it, and truncates the file
back to the last complete line before anything is appended. Invalid lines elsewhere cannot come
from a kill, so they are reported as corruption and their ids are not considered finished.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, Self


class ResultLog:
    def __init__(self, path: str | os.PathLike[str], key: str = "id") -> None:
        self.path = Path(path)
        self.key = key
        self.rows: dict[str, dict[str, Any]] = {}
        self.notes: list[str] = []
        self._queue: list[tuple[bytes, asyncio.Future]] = []
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task | None = None
        self._fh: Any = None

    def load(self, repair: bool = True) -> dict[str, dict[str, Any]]:
        """Read finished rows (last line wins per id); ``repair`` truncates a torn tail.

        Readers of another run's output (``cot judge`` on a synthesis still running) pass
        ``repair=False``: the tail is ignored but the file is left alone.
        """
        self.rows = {}
        if not self.path.exists():
            return self.rows
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # bytes after the last newline: empty unless a write was cut short
        for lineno, chunk in enumerate(lines, start=1):
            if not chunk.strip():
                continue
            try:
                row = json.loads(chunk)
            except ValueError:
                self.notes.append(f"{self.path}:{lineno}: invalid JSON line (corrupt file?); ignored")
                continue
            if isinstance(row, dict) and self.key in row:
                self.rows[str(row[self.key])] = row
        if tail:
            self.notes.append(f"{self.path}:{len(lines) + 1}: torn last line ({len(tail)} bytes) "
                              "from an interrupted write; ignored" + (" and truncated" if repair else ""))
        if tail and repair:
            with open(self.path, "r+b") as f:
                f.truncate(len(data) - len(tail))
                f.flush()
                os.fsync(f.fileno())
        return self.rows

    async def __aenter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab")  # noqa: SIM115, ASYNC230 (closed in __aexit__; one local open)
        self._wake = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._closing = True
            self._wake.set()
            await self._writer
        if self._fh is not None:
            self._fh.close()

    _closing = False

    async def append(self, row: dict[str, Any]) -> None:
        """Queue ``row`` and return once it is written and fsync'd."""
        line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((line, fut))
        self._wake.set()
        await fut
        self.rows[str(row[self.key])] = row

    def _flush(self, lines: list[bytes]) -> None:
        self._fh.write(b"".join(lines))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await asyncio.to_thread(self._flush, [line for line, _ in batch])
                except BaseException as e:  # surface disk errors to every waiter
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(e)
                    raise
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)
            if self._closing and not self._queue:
                return
