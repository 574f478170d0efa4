"""Resumable JSON-lines output for long generation runs (stage-2 generation, ``eval run``).

The file is an :class:`~emocaliber_rl.jsonl.AppendLog` keyed by ``id`` (its rules: a batch is
one write + fsync, a torn last line is cut on restart, a bad line elsewhere is an error naming
file and line, the first row of an id wins, one writer at a time through ``flock``). On top of
it this module adds the run: :func:`start_run` applies the run-manifest rule
(:mod:`emocaliber_rl.run_manifest`) and every appended row carries the run's ``run_id``.

:func:`run_batches` drives an engine over pending items with a tqdm bar showing samples/s and
tokens/s.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from emocaliber_rl.jsonl import AppendLog, OutputLockedError, append_rows

__all__ = ["OutputLockedError", "ResumableJsonl", "engine_settings", "generation_settings",
           "run_batches", "start_run"]

T = TypeVar("T")


class ResumableJsonl(AppendLog):
    """The append log of one generation run; open with ``with ResumableJsonl(path) as out:``."""

    def __init__(self, path: str | os.PathLike[str], key: str = "id", run_id: str | None = None) -> None:
        super().__init__(path, key)
        self.run_id = run_id

    @property
    def done(self) -> set[str]:
        """Ids with a committed row (skipped by a rerun)."""
        return self.keys

    def open(self) -> ResumableJsonl:
        super().open()
        for note in self.notes:  # the torn tail is the caller's to report (``torn_bytes``)
            print(note, file=sys.stderr)
        return self

    def append(self, rows: Sequence[dict[str, Any]]) -> int:  # type: ignore[override]
        """Write the rows whose id is new, stamped with ``run_id``, as one batch; returns how many."""
        if self.run_id is not None:
            rows = [{**row, "run_id": self.run_id} for row in rows]
        return len(super().append(rows))


def generation_settings(
    *,
    model: str,
    backend: str,
    dtype: str,
    pixel_bounds: Sequence[int] | None,
    sampling: Any,
    prompts: str | os.PathLike[str] | Sequence[dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    """What defines a generation run (``stage2 generate``, ``eval run``) for its run manifest.

    ``prompts`` is the prompt file (hashed as bytes; ``--limit`` is not part of the run, so a
    smoke run can grow into the full one) or the rows themselves (hashed as canonical JSON).
    ``extra`` holds command-specific settings (``eval run``'s ``ask_confidence``).
    """
    from emocaliber_rl.run_manifest import file_sha256, json_sha256, model_fingerprint

    if isinstance(prompts, (str, os.PathLike)):
        prompt_set = {"path": str(Path(prompts).resolve()), "sha256": file_sha256(prompts)}
    else:
        prompt_set = {"path": None, "sha256": json_sha256(
            [{k: r.get(k) for k in ("id", "messages", "image", "prompt", "system")} for r in prompts])}
    return {
        "model": model_fingerprint(model),
        "engine": {"backend": backend, "dtype": dtype,
                   "pixel_bounds": list(pixel_bounds) if pixel_bounds else None},
        "sampling": {"temperature": sampling.temperature, "top_p": sampling.top_p,
                     "max_new_tokens": sampling.max_new_tokens, "seed": sampling.seed,
                     "n": sampling.n},
        "prompts": prompt_set,
        **extra,
    }


def engine_settings(engine: Any) -> dict[str, Any]:
    """``model``, ``backend``, ``dtype``, ``pixel_bounds`` of a loaded engine."""
    return {"model": engine.model_path, "backend": engine.backend,
            "dtype": getattr(engine, "dtype", "auto"),
            "pixel_bounds": getattr(engine, "pixel_bounds", None)}


def start_run(out: str | os.PathLike[str], kind: str, settings: dict[str, Any], *,
              force_new: bool = False, log: Callable[[str], None] | None = None) -> str:
    """The run id to stamp on rows of ``out`` (resumed or new); see :func:`~emocaliber_rl.run_manifest.open_run`."""
    from emocaliber_rl.run_manifest import open_run

    run_id, notes = open_run(out, kind, settings, force_new=force_new)
    for note in notes:
        (log or (lambda m: print(m, file=sys.stderr)))(note)
    assert run_id is not None
    return run_id


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for it in items:
        batch.append(it)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _append_errors(path: Path, failures: list[dict[str, Any]], run_id: str | None) -> None:
    # informational (failed ids get no row and are retried by a rerun): a keyless shared log
    append_rows(path, ({**item, "run_id": run_id, "time": time.time()} for item in failures))


def run_batches(
    items: Sequence[T],
    out: ResumableJsonl,
    process: Callable[[list[T]], tuple[list[dict[str, Any]], int]],
    *,
    key: Callable[[T], str],
    batch_size: int,
    desc: str = "generate",
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``process`` over the items whose key is not in ``out`` yet, ``batch_size`` at a time.

    ``process(batch) -> (rows, generated_tokens[, failures])``; rows are appended after each
    batch. ``failures`` (``[{"id", "error"}]``: items that could not run, e.g. a missing image)
    get no row, so a rerun retries them; they are appended to ``OUT.errors.jsonl``. Returns
    counts and throughput: ``{"total", "skipped", "written", "duplicates", "failed",
    "failures", "errors_path", "seconds", "samples_per_s", "tokens_per_s", "tokens"}``.
    """
    from tqdm import tqdm

    pending: list[T] = []
    seen: set[str] = set()
    duplicates = 0
    for it in items:
        k = key(it)
        if k in out.done:
            continue
        if k in seen:
            duplicates += 1
            continue
        seen.add(k)
        pending.append(it)
    skipped = len(items) - len(pending) - duplicates
    written = tokens = 0
    failures: list[dict[str, Any]] = []
    errors_path = out.path.with_name(out.path.name + ".errors.jsonl")
    start = time.perf_counter()
    bar = tqdm(total=len(items), initial=skipped, desc=desc, unit="sample", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    try:
        for batch in batched(pending, batch_size):
            rows, n_tok, *rest = process(batch)
            written += out.append(rows)
            tokens += n_tok
            if rest and rest[0]:
                failures.extend(rest[0])
                _append_errors(errors_path, rest[0], out.run_id)
            bar.update(len(batch))
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(samples_s=f"{written / elapsed:.2f}", tokens_s=f"{tokens / elapsed:.1f}",
                            failed=len(failures))
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    return {
        "total": len(items),
        "skipped": skipped,
        "written": written,
        "duplicates": duplicates,
        "failed": len(failures),
        "failures": failures,
        "errors_path": str(errors_path) if failures else None,
        "tokens": tokens,
        "seconds": elapsed,
        "samples_per_s": written / elapsed if elapsed > 0 else 0.0,
        "tokens_per_s": tokens / elapsed if elapsed > 0 else 0.0,
    }
