"""Resumable JSON-lines output for long generation runs (stage-2 generation, ``eval run``).

Guarantees:

* a batch is one ``write`` of whole lines, then ``flush`` + ``fsync``: a crash loses at most the
  batch in flight;
* on restart the file is read, ids already present are skipped, and a torn last line (the tail
  of a batch cut by a crash: no trailing newline, or not valid JSON) is cut off so that the next
  append starts on a line boundary. Complete earlier lines are never rewritten;
* no id is written twice: ids already in the file and ids repeated in the input are skipped;
* one writer at a time: an exclusive ``flock`` on the file stops a second run on the same output
  from interleaving lines (it fails at once with a clear message);
* one run per file: :func:`start_run` applies the run-manifest rule
  (:mod:`emocaliber_rl.run_manifest`) and every appended row carries the run's ``run_id``.

:func:`run_batches` drives an engine over pending items with a tqdm bar showing samples/s and
tokens/s.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

from emocaliber_rl.jsonl import InputFileError

T = TypeVar("T")


class OutputLockedError(RuntimeError):
    """Another process is writing the same output file."""


class ResumableJsonl:
    """Append-only jsonl keyed by ``key``; open with ``with ResumableJsonl(path) as out:``."""

    def __init__(self, path: str | os.PathLike[str], key: str = "id", run_id: str | None = None) -> None:
        self.path = Path(path)
        self.key = key
        self.run_id = run_id
        self.done: set[str] = set()
        self.torn_bytes = 0
        self._fh: Any = None

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        # "a+b": create if missing, never truncate on open; the lock is taken before reading so
        # the ids we see are final.
        fh = open(self.path, "a+b")  # noqa: SIM115  (held open across append() calls)
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise OutputLockedError(f"{self.path} is being written by another process") from None
        self._fh = fh
        self._recover()

    def _recover(self) -> None:
        fh = self._fh
        fh.seek(0)
        good_end = 0
        for lineno, raw in enumerate(fh, start=1):
            if not raw.endswith(b"\n"):
                break  # torn tail: no newline means the write was cut
            try:
                obj = json.loads(raw)
            except ValueError:  # JSONDecodeError, or UnicodeDecodeError for a non-UTF-8 line
                # Only the last line can be torn; garbage in the middle is not ours to repair.
                rest = fh.read()
                if rest.strip():
                    raise InputFileError(f"{self.path}:{lineno}: invalid JSON in the middle of the "
                                         "file; refusing to append to it") from None
                break
            if not isinstance(obj, dict) or self.key not in obj:
                raise InputFileError(f"{self.path}:{lineno}: not an object with {self.key!r}")
            self.done.add(str(obj[self.key]))
            good_end += len(raw)
        size = os.fstat(fh.fileno()).st_size
        if size > good_end:
            self.torn_bytes = size - good_end
            fh.truncate(good_end)
            os.fsync(fh.fileno())
        fh.seek(0, os.SEEK_END)

    def append(self, rows: Sequence[dict[str, Any]]) -> int:
        """Write the rows whose id is new as one batch (flush + fsync); returns how many."""
        lines = []
        for row in rows:
            k = str(row[self.key])
            if k in self.done:
                continue
            self.done.add(k)
            if self.run_id is not None:
                row = {**row, "run_id": self.run_id}
            lines.append(json.dumps(row, ensure_ascii=False) + "\n")
        if lines:
            self._fh.write("".join(lines).encode("utf-8"))
            self._fh.flush()
            os.fsync(self._fh.fileno())
        return len(lines)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing releases the flock
            self._fh = None


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
    # informational (failed ids get no row and are retried by a rerun), so a plain append is fine
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(json.dumps({**item, "run_id": run_id, "time": time.time()}, ensure_ascii=False) + "\n" for item in failures)


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
