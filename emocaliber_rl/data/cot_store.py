"""The CoT runs' output: an :class:`~emocaliber_rl.jsonl.AppendLog` with group-committed appends.

A record counts as finished once its line is committed (written and fsync'd); a restarted run
skips every finished id, so no paid call is repeated for it. The log's rules are the package's
one set (:mod:`emocaliber_rl.jsonl.append_log`): a torn last line from a kill is reported and
truncated, a bad line elsewhere is an error naming file and line, the first row of an id wins,
and one process writes the file at a time.

Appends are *group-committed*: one writer task commits every row queued so far as one batch
(one fsync, in a thread, off the event loop), then releases all their waiters. Each caller
still returns only after its own row is durable, but 64 concurrent requests cost one fsync
rather than 64.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Self

from emocaliber_rl.jsonl import AppendLog, OnBad


class ResultLog:
    """``load()`` the finished rows, then ``async with log: await log.append(row)``."""

    def __init__(self, path: str | os.PathLike[str], key: str = "id", *, on_bad: OnBad = "error") -> None:
        self._log = AppendLog(path, key, on_bad=on_bad, keep_rows=True)
        self._queue: list[tuple[dict[str, Any], asyncio.Future]] = []
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task | None = None
        self._closing = False

    @property
    def path(self) -> Path:
        return self._log.path

    @property
    def rows(self) -> dict[str, dict[str, Any]]:
        """The first row of every finished id."""
        return self._log.rows

    @property
    def notes(self) -> list[str]:
        """What the load reported: the torn tail, skipped lines, repeated ids."""
        return ([self._log.torn_note] if self._log.torn_note else []) + self._log.notes

    def load(self, repair: bool = True) -> dict[str, dict[str, Any]]:
        """Read the finished rows; ``repair`` takes the writer's lock and truncates a torn tail.

        Readers of another run's output (``cot judge`` on a synthesis still running) pass
        ``repair=False``: no lock, the tail is ignored but the file is left alone.
        """
        if repair:
            if not self._log.is_open:
                self._log.open()
        else:
            self._log = AppendLog.read(self._log.path, self._log.key, on_bad=self._log.on_bad)
        return self.rows

    async def __aenter__(self) -> Self:
        if not self._log.is_open:
            self._log.open()
        self._wake = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._writer is not None:
                self._closing = True
                self._wake.set()
                await self._writer
        finally:
            self._log.close()

    async def append(self, row: dict[str, Any]) -> None:
        """Queue ``row`` and return once it is committed (a row whose id is finished is dropped)."""
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((row, fut))
        self._wake.set()
        await fut

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await asyncio.to_thread(self._log.append, [row for row, _ in batch])
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
