"""Problems found while reading data: every skipped item is recorded here, never dropped silently.

A report is a jsonl file (one problem per line: source file, line number or image path, kind,
detail) plus a one-paragraph summary printed on stderr. ``strict`` callers raise
:class:`DataProblemError` on the first problem instead.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO


class DataProblemError(ValueError):
    """Raised in strict mode: names the file, line (or image) and what is wrong."""


@dataclass(frozen=True)
class Problem:
    source: str
    kind: str
    detail: str
    line: int | None = None
    item: str | None = None
    dataset: str | None = None  # set by `bench build`, for the per-dataset summary

    def where(self) -> str:
        loc = self.source
        if self.line is not None:
            loc += f":{self.line}"
        if self.item:
            loc += f" [{self.item}]"
        return loc


class ProblemReport:
    """Collects problems; ``strict=True`` turns the first one into a :class:`DataProblemError`."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.problems: list[Problem] = []
        # What was decided without losing anything (a root one level down, a default order):
        # printed and written to the summary so the user sees it.
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)

    def add(
        self, source: str, kind: str, detail: str, *, line: int | None = None, item: str | None = None,
        dataset: str | None = None,
    ) -> Problem:
        p = Problem(str(source), kind, detail, line, item, dataset)
        if self.strict:
            raise DataProblemError(f"{p.where()}: {kind}: {detail}")
        self.problems.append(p)
        return p

    def extend(self, other: ProblemReport) -> None:
        self.problems.extend(other.problems)
        self.notes.extend(other.notes)

    def __len__(self) -> int:
        return len(self.problems)

    def counts(self) -> Counter[str]:
        return Counter(p.kind for p in self.problems)

    def summary(self, what: str = "items") -> str:
        if not self.problems:
            return f"no problems: every one of the {what} was used"
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.counts().items()))
        return f"{len(self.problems)} {what} not used ({kinds})"

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write one JSON object per problem, sorted by source and line (stable for diffs)."""
        from emocaliber_rl.jsonl import write_jsonl

        path = Path(path)
        rows = sorted(
            self.problems, key=lambda p: (p.source, p.line if p.line is not None else -1, p.item or "")
        )

        def as_row(p: Problem) -> dict[str, Any]:
            d = asdict(p)
            if d["dataset"] is None:  # only `bench build` attributes problems to a dataset
                del d["dataset"]
            return d

        write_jsonl(path, (as_row(p) for p in rows))
        return path

    def print_summary(self, what: str = "items", file: TextIO | None = None, limit: int = 10) -> None:
        """Summary plus the first ``limit`` problems on stderr (the report file has all of them)."""
        out = file or sys.stderr
        print(self.summary(what), file=out)
        for p in self.problems[:limit]:
            print(f"  {p.where()}: {p.kind}: {p.detail}", file=out)
        if len(self.problems) > limit:
            print(f"  ... and {len(self.problems) - limit} more (see the report file)", file=out)
