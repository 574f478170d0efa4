"""`emocaliber cot synthesize` and `emocaliber cot judge`: resumable, concurrent, accounted runs.

Both read records, skip ids already finished in the output (see :mod:`cot_store`), and call an
OpenAI-compatible endpoint for the rest with ``concurrency`` requests in flight. Kill either at
any moment and start it again with the same arguments: finished records are never requested
again, and each record appears in the output exactly once.

- synthesize: one call per record (image + label -> five-step CoT). Every response is kept, even
  one that breaks the format: it was paid for, and ``cot judge`` filters it for free.
- judge: the local structural check runs first; only records passing it are sent to the judge
  model. Output rows carry ``passed`` and the reasons; ``kept`` rows are written as a manifest.
Records that fail for good (non-retryable status, retries exhausted) go to ``OUT.errors.jsonl``
and are retried on the next run.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emocaliber_rl.data.cot_client import ChatClient, ChatError, Usage, image_data_url
from emocaliber_rl.data.cot_prompts import (
    judge_messages,
    parse_steps,
    parse_verdict,
    structural_check,
    synth_messages,
    verdict_passes,
)
from emocaliber_rl.data.cot_store import ResultLog
from emocaliber_rl.data.image_paths import resolve_image, stored_image
from emocaliber_rl.data.records import Record, write_manifest
from emocaliber_rl.jsonl import append_rows


@dataclass
class RunStats:
    total: int = 0
    skipped: int = 0  # already finished before this run
    done: int = 0
    failed: int = 0
    local_rejects: int = 0
    usage: Usage = field(default_factory=Usage)  # this run
    usage_all: Usage = field(default_factory=Usage)  # every finished row in the output
    elapsed: float = 0.0
    requests: int = 0
    retries: int = 0

    def summary(self, price_in: float | None, price_out: float | None) -> str:
        """One line of counts and tokens; the cost only when a price is known (a made-up 0.0000
        reads as "free", which a paid API is not)."""
        rate = self.done / self.elapsed if self.elapsed > 0 else 0.0
        priced = price_in is not None or price_out is not None
        pin, pout = price_in or 0.0, price_out or 0.0

        def cost(u: Usage) -> str:
            return f" = {u.cost(pin, pout):.4f}" if priced else ""

        return (
            f"{self.done} finished this run ({rate:.1f}/s), {self.skipped} already finished, "
            f"{self.failed} failed (retried next run), {self.local_rejects} rejected locally; "
            f"{self.requests} HTTP requests ({self.retries} retries); tokens this run "
            f"{self.usage.prompt_tokens} in / {self.usage.completion_tokens} out{cost(self.usage)}; "
            f"all finished rows {self.usage_all.prompt_tokens} in / "
            f"{self.usage_all.completion_tokens} out{cost(self.usage_all)}"
            + ("" if priced else " (no cost: give --price-in/--price-out per 1M tokens)")
        )


def _append_error(path: Path, row: dict[str, Any]) -> None:
    # Rare, tiny and informational (failed ids are simply retried), so a blocking append is fine.
    append_rows(path, [row])


def _record_row(rec: Record) -> dict[str, Any]:
    d = rec.to_dict()
    d.pop("response", None)
    d.pop("steps", None)
    return d


def _usage_of(row: dict[str, Any]) -> Usage:
    u = row.get("usage") or {}
    return Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))


async def _run(
    items: list[Any],
    out_path: Path,
    client: ChatClient,
    work: Callable[[Any], Any],
    *,
    item_id: Callable[[Any], str],
    progress: bool,
    log: Callable[[str], None],
    desc: str,
) -> RunStats:
    from tqdm import tqdm

    store = ResultLog(out_path)
    finished = store.load()
    for note in store.notes:
        log(note)
    errors_path = out_path.with_name(out_path.name + ".errors.jsonl")
    stats = RunStats(total=len(items))
    todo = []
    seen: set[str] = set()
    for it in items:
        rid = item_id(it)
        if rid in seen:
            log(f"duplicate input id {rid!r}: processed once")
            continue
        seen.add(rid)
        if rid in finished:
            stats.skipped += 1
        else:
            todo.append(it)
    queue: asyncio.Queue = asyncio.Queue()
    for it in todo:
        queue.put_nowait(it)
    # the bar counts records processed; its postfix splits them into done and failed (a run
    # whose every request failed must not read as 5/5 and nothing else)
    bar = tqdm(total=len(seen), initial=stats.skipped, desc=desc, unit="rec", disable=not progress,
               file=sys.stderr, postfix={"done": 0, "failed": 0})
    start = time.perf_counter()

    async def worker(store: ResultLog) -> None:
        while True:
            try:
                it = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            rid = item_id(it)
            try:
                row = await work(it)
            except ChatError as e:
                stats.failed += 1
                msg = client.redact(str(e))
                log(f"[{rid}] failed: {msg}")
                _append_error(errors_path, {"id": rid, "error": msg, "status": e.status,
                                            "attempts": e.attempts, "time": time.time()})
                bar.update()
                bar.set_postfix(done=stats.done, failed=stats.failed)
            else:
                # Durability is awaited off the worker's path: the worker starts its next request
                # while the writer fsyncs (a record only counts as finished once on disk, and the
                # run waits for every pending write before it returns).
                task = asyncio.ensure_future(persist(store, row))
                pending.add(task)
                task.add_done_callback(pending.discard)

    async def persist(store: ResultLog, row: dict[str, Any]) -> None:
        await store.append(row)
        stats.done += 1
        if row.get("local_reject"):
            stats.local_rejects += 1
        stats.usage.add(_usage_of(row))
        bar.update()
        bar.set_postfix(done=stats.done, failed=stats.failed)

    pending: set[asyncio.Future] = set()
    async with store:
        n_workers = max(1, min(client.concurrency, len(todo)))
        await asyncio.gather(*(worker(store) for _ in range(n_workers)))
        # gather re-raises a disk error from any write still pending; one that failed earlier
        # already stopped its waiter's record from counting as finished and is raised by the writer.
        await asyncio.gather(*list(pending))
    bar.close()
    stats.elapsed = time.perf_counter() - start
    stats.requests = client.stats.requests
    stats.retries = client.stats.retries
    for row in store.rows.values():
        stats.usage_all.add(_usage_of(row))
    return stats


def _image_url(path: str, max_pixels: int | None = None) -> str:
    """Data URL of an image; above ``max_pixels`` it is downscaled (aspect kept) and sent as JPEG.

    Providers bill images by size, and a teacher needs no more pixels than the student will see
    (Qwen2.5-VL training used at most 451,584), so large photos are shrunk before sending.
    """
    data = Path(path).read_bytes()
    if max_pixels:
        import io
        import math

        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > max_pixels:
                scale = math.sqrt(max_pixels / (img.width * img.height))
                size = (max(1, int(img.width * scale)), max(1, int(img.height * scale)))
                buf = io.BytesIO()
                img.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
                data = buf.getvalue()
    return image_data_url(data)


SYNTH_RUN_KIND = "cot synthesize"


def synth_settings(model: str, url: str, *, temperature: float, max_tokens: int,
                   max_pixels: int | None, inputs: list[str] | list[Record]) -> dict[str, Any]:
    """What defines a synthesis run: teacher model and endpoint, sampling, the prompt template,
    and the input files (hashed as bytes) or records (hashed as id, image, label)."""
    from emocaliber_rl.data.cot_prompts import SYNTH_SYSTEM, SYNTH_TEMPLATE
    from emocaliber_rl.run_manifest import file_sha256, json_sha256

    if inputs and isinstance(inputs[0], Record):
        prompt_set: Any = {"sha256": json_sha256([[r.id, r.image, r.subtask, r.label] for r in inputs])}
    else:
        prompt_set = [{"path": str(Path(p).resolve()), "sha256": file_sha256(p)} for p in inputs]
    return {"model": {"path": model}, "engine": {"backend": "openai-chat", "url": url},
            "sampling": {"temperature": temperature, "max_tokens": max_tokens},
            "max_pixels": max_pixels,
            "prompt_template_sha256": json_sha256([SYNTH_SYSTEM, SYNTH_TEMPLATE]),
            "prompts": prompt_set}


async def synthesize(
    records: list[Record],
    out_path: str | Path,
    client: ChatClient,
    *,
    max_tokens: int = 1024,
    temperature: float = 0.7,
    max_pixels: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
    settings: dict[str, Any] | None = None,
    force_new: bool = False,
) -> RunStats:
    """Synthesize a CoT for every record not yet in ``out_path``; returns this run's stats.

    The run manifest (``OUT.run.json``, :mod:`emocaliber_rl.run_manifest`) records ``settings``
    (default: :func:`synth_settings` with the records as the prompt set); resuming with other
    settings raises ``RunMismatchError`` unless ``force_new``. Every row carries ``run_id``.
    """
    from emocaliber_rl.run_manifest import open_run

    if settings is None:
        settings = synth_settings(client.model, client.url, temperature=temperature,
                                  max_tokens=max_tokens, max_pixels=max_pixels, inputs=records)
    run_id, notes = open_run(out_path, SYNTH_RUN_KIND, settings, force_new=force_new)
    for note in notes:
        log(note)

    async def work(rec: Record) -> dict[str, Any]:
        try:
            url = _image_url(rec.image, max_pixels)
        except Exception as e:  # unreadable or undecodable: recorded as failed, retried next run
            raise ChatError(f"cannot read image {rec.image}: {e}") from e
        res = await client.chat(synth_messages(rec.subtask, rec.label, url), record_id=rec.id,
                                max_tokens=max_tokens, temperature=temperature)
        row = _record_row(rec)
        row["image"] = stored_image(rec.image, out_path)  # the one path rule
        row.update(response=res.content.strip(), steps=parse_steps(res.content), model=res.model or client.model,
                   usage={"prompt_tokens": res.usage.prompt_tokens,
                          "completion_tokens": res.usage.completion_tokens},
                   attempts=res.attempts, run_id=run_id)
        return row

    return await _run(records, Path(out_path), client, work, item_id=lambda r: r.id,
                      progress=progress, log=log, desc="synthesize")


def read_synthesized(paths: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of `cot synthesize` output files, images resolved against each file's folder
    (the one path rule), and the notes reading them produced."""
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for path in paths:
        src = ResultLog(path)
        for row in src.load(repair=False).values():
            if isinstance(row.get("image"), str):
                row["image"] = resolve_image(row["image"], Path(path).parent)
            rows.append(row)
        notes.extend(src.notes)
    return rows, notes


async def judge(
    rows: list[dict[str, Any]],
    out_path: str | Path,
    client: ChatClient,
    *,
    max_tokens: int = 512,
    max_pixels: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> RunStats:
    """Judge synthesized rows (local structural check first, then the judge model). Each row's
    ``image`` must open from the working directory (:func:`read_synthesized` resolves them)."""

    async def work(row: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in row.items() if k not in ("usage", "attempts")}
        if isinstance(row.get("image"), str):
            out["image"] = stored_image(row["image"], out_path)  # the one path rule
        out["synth_usage"] = row.get("usage")
        check = structural_check(row["subtask"], row["label"], row.get("response") or "")
        if not check.ok:
            out.update(passed=False, local_reject=True, reasons=check.reasons, verdict=None)
            return out
        try:
            url = _image_url(row["image"], max_pixels)
        except Exception as e:  # unreadable or undecodable: recorded as failed, retried next run
            raise ChatError(f"cannot read image {row['image']}: {e}") from e
        msgs = judge_messages(row["subtask"], row["label"], row["response"], url)
        usage = Usage()
        attempts = 0
        # A reply that is not a valid verdict is a malformed body: ask again, a bounded number of times.
        for _ in range(client.max_retries + 1):
            res = await client.chat(msgs, record_id=row["id"], max_tokens=max_tokens, temperature=0.0)
            usage.add(res.usage)
            attempts += res.attempts
            try:
                verdict = parse_verdict(res.content)
                break
            except ValueError as e:
                log(f"[{row['id']}] unusable verdict ({e}); asking again")
        else:
            raise ChatError("judge never returned a usable verdict", attempts=attempts)
        passed = verdict_passes(verdict)
        reasons = [k for k in ("hallucination", "label_leakage", "logical_inconsistency") if verdict[k]]
        out.update(passed=passed, local_reject=False, reasons=reasons, verdict=verdict,
                   steps=check.steps, judge_model=res.model or client.model,
                   usage={"prompt_tokens": usage.prompt_tokens,
                          "completion_tokens": usage.completion_tokens}, attempts=attempts)
        return out

    return await _run(rows, Path(out_path), client, work, item_id=lambda r: str(r["id"]),
                      progress=progress, log=log, desc="judge")


def write_kept(verdicts_path: str | Path, kept_path: str | Path) -> tuple[int, int]:
    """Manifest of the records whose CoT passed; returns ``(kept, judged)``."""
    rows = ResultLog(verdicts_path).load(repair=False)
    kept = []
    for row in rows.values():
        if row.get("passed"):
            rec = Record.from_dict(row)
            rec.image = resolve_image(rec.image, Path(verdicts_path).parent)
            rec.response = row.get("response")
            rec.steps = row.get("steps")
            kept.append(rec)
    kept.sort(key=lambda r: r.id)
    write_manifest(kept_path, kept)
    return len(kept), len(rows)
