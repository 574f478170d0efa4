"""The four exports other stages read: stage-1 SFT parquet, stage-2 prompt set, stage-3 RL
parquet and evaluation manifests.

Inputs are records (:class:`~emocaliber_rl.data.records.Record`) or jsonl files in any layout
:mod:`emocaliber_rl.data.conversations` accepts. A record that cannot be converted (missing or
undecodable image, unknown label, no ``<answer>``...) is written to the problem report with its
file and line number, never dropped silently; ``strict`` raises on the first one instead.

Parquet files are written in row groups of ``batch_rows`` with an explicit schema, so memory stays
flat on the 86k-image stage-1 set and every file has identical column types whatever rows it has.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pyarrow is imported lazily at run time
    import pyarrow as pa

from emocaliber_rl.data.conversations import ParsedRow, RowError, parse_row
from emocaliber_rl.data.image_paths import stored_image
from emocaliber_rl.data.images import ImageProblem, image_bytes_for_parquet
from emocaliber_rl.data.lengths import LengthCheck
from emocaliber_rl.data.records import Record, iter_jsonl, write_jsonl
from emocaliber_rl.data.report import ProblemReport
from emocaliber_rl.limits import OFFICIAL_PIXEL_BOUNDS, RL_MAX_PROMPT_LENGTH, SFT_MAX_LENGTH
from emocaliber_rl.prompts import SYSTEM_PROMPT
from emocaliber_rl.taxonomy import (
    SUBTASKS,
    UnknownLabelError,
    aliases_for,
    canonical_label,
)
from reward_fns.emocaliber import block_content_spans, close_tag, extract_answer, last_block_span, open_tag

ABILITY = "emotion"


@dataclass
class ExportResult:
    path: Path
    rows: int
    report: ProblemReport = field(default_factory=ProblemReport)


# ----------------------------------------------------------------------------------------------
# Reading inputs


def load_rows(
    paths: Iterable[str | os.PathLike[str]],
    report: ProblemReport,
    *,
    image_root: str | os.PathLike[str] | None = None,
    default_subtask: str | None = None,
    path_map: list[tuple[str, str]] | None = None,
) -> list[ParsedRow]:
    """Parse jsonl files (any accepted layout); unparseable lines go to ``report`` by line number.

    Relative image paths resolve against ``image_root``, else against each file's own folder.
    ``path_map`` rewrites path prefixes (first match wins): published files name images by
    absolute paths on their authors' machines. Ids are unique across all ``paths`` (the one id
    rule): a row whose id an earlier row has is reported as ``duplicate_id``, naming where the id
    was first used, and left out; the first is kept.
    """
    out: list[ParsedRow] = []
    seen: dict[str, str] = {}
    for path in paths:
        path = Path(path)
        root = Path(image_root) if image_root is not None else path.parent
        for n, obj, err in iter_jsonl(path):
            if err is not None:
                report.add(str(path), "bad_json", err, line=n)
                continue
            try:
                row = parse_row(obj, lineno=n, source=str(path), image_root=root,
                                default_subtask=default_subtask)
                rid = row.record.id
                if rid in seen:
                    report.add(str(path), "duplicate_id", f"id {rid!r} already used at {seen[rid]}",
                               line=n, item=rid)
                    continue
                seen[rid] = f"{path}:{n}"
                for old, new in path_map or ():
                    if row.record.image.startswith(old):
                        row.record.image = new + row.record.image[len(old):]
                        break
                out.append(row)
            except RowError as e:
                item = obj.get("id") if isinstance(obj, dict) else None
                report.add(str(path), e.kind, e.detail, line=n,
                           item=str(item) if item is not None else None)
    return out


def _as_rows(items: Iterable[Record | ParsedRow]) -> Iterator[ParsedRow]:
    for it in items:
        yield it if isinstance(it, ParsedRow) else ParsedRow(it, None, it.source or "<records>", None)


def _add(report: ProblemReport, row: ParsedRow, kind: str, detail: str) -> None:
    report.add(row.source or "<records>", kind, detail, line=row.line, item=row.record.id)


# ----------------------------------------------------------------------------------------------
# Message builders (shared with stage 2 and evaluation)


def prompt_messages(subtask: str, *, ask_confidence: bool) -> list[dict[str, str]]:
    """System + user turn for one image; the user text holds one ``<image>`` placeholder."""
    from emocaliber_rl.prompts import task_question

    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": task_question(subtask, ask_confidence=ask_confidence)},
    ]


def stage1_response(rec: Record) -> str:
    """The assistant turn for stage 1: the structured response without a confidence tag.

    Raises :class:`RowError` (no_cot, no_answer, answer_mismatch).
    """
    if rec.steps:
        from emocaliber_rl.prompts import format_response

        try:
            return format_response(rec.steps, rec.label)
        except ValueError as e:
            raise RowError("missing_steps", str(e)) from e
    if not rec.response:
        raise RowError("no_cot", "the record has neither steps nor a response")
    answer = extract_answer(rec.response)
    if answer is None:
        raise RowError("no_answer", "the response has no <answer>...</answer>")
    try:
        canon = canonical_label(rec.subtask, answer)
    except UnknownLabelError:
        canon = None
    if canon != rec.label:
        raise RowError("answer_mismatch", f"<answer>{answer}</answer> is not the label {rec.label!r}")
    return _without_confidence(rec.response[: last_block_span(rec.response, "answer")[3]]).strip()


def _without_confidence(text: str) -> str:
    """``text`` less every confidence block and the whitespace just before each (a stage-1 turn
    states no confidence)."""
    out, pos = [], 0
    for content_start, content_end in block_content_spans(text, "confidence"):
        open_start = content_start - len(open_tag("confidence"))
        out.append(text[pos:open_start].rstrip())
        pos = content_end + len(close_tag("confidence"))
    return "".join(out) + text[pos:]


# ----------------------------------------------------------------------------------------------
# Parquet writing


def _pa():
    import pyarrow as pa

    return pa


def _message_type():
    pa = _pa()
    return pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def check_pixel_bounds(pixel_bounds: tuple[int, int] | None) -> tuple[int, int] | None:
    """Validate ``(min_pixels, max_pixels)``; ``None`` keeps the model processor's own bounds."""
    if pixel_bounds is None:
        return None
    lo, hi = (int(v) for v in pixel_bounds)
    if lo <= 0 or hi < lo:
        raise ValueError(f"pixel bounds must satisfy 0 < min_pixels <= max_pixels, got {lo}, {hi}")
    return lo, hi


def _image_type(with_bounds: bool = False):
    pa = _pa()
    # veRL's process_image accepts {"bytes": ..., "path": ...} dicts (the HF datasets Image layout)
    # and hands the whole dict to qwen-vl-utils' fetch_image, which resizes the image into
    # [min_pixels, max_pixels]: that is how per-image bounds reach veRL's SFT and RL datasets. The
    # fields exist only when bounds are set, since fetch_image would read a null as the bound.
    fields = [("bytes", pa.binary()), ("path", pa.string())]
    if with_bounds:
        fields += [("min_pixels", pa.int64()), ("max_pixels", pa.int64())]
    return pa.list_(pa.struct(fields))


def sft_schema(pixel_bounds: tuple[int, int] | None = None) -> pa.Schema:
    pa = _pa()
    return pa.schema(
        [
            ("messages", _message_type()),
            ("images", _image_type(pixel_bounds is not None)),
            ("id", pa.string()),
            ("subtask", pa.string()),
            ("label", pa.string()),
        ]
    )


def alias_keys() -> list[str]:
    """Every alias of every subtask: the fixed field list of ``extra_info.aliases``.

    Parquet structs need one field list for the whole column, so a row's ``aliases`` holds every
    key, with null for aliases that are not its subtask's (drop nulls before use).
    """
    keys: set[str] = set()
    for name in SUBTASKS:
        keys.update(aliases_for(name))
    return sorted(keys)


def rl_schema(pixel_bounds: tuple[int, int] | None = None) -> pa.Schema:
    pa = _pa()
    return pa.schema(
        [
            ("data_source", pa.string()),
            ("prompt", _message_type()),
            ("images", _image_type(pixel_bounds is not None)),
            ("ability", pa.string()),
            ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
            (
                "extra_info",
                pa.struct(
                    [
                        ("index", pa.int64()),
                        ("split", pa.string()),
                        ("id", pa.string()),
                        ("subtask", pa.string()),
                        ("group", pa.string()),
                        ("candidates", pa.list_(pa.string())),
                        ("aliases", pa.struct([(k, pa.string()) for k in alias_keys()])),
                    ]
                ),
            ),
        ]
    )


class _ParquetSink:
    """Buffered row-group writer to ``path`` via a temp file, renamed on close (no torn files)."""

    def __init__(self, path: Path, schema: Any, batch_rows: int) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.writer = pq.ParquetWriter(self.tmp, schema)
        self.buf: list[dict[str, Any]] = []
        self.batch_rows = batch_rows
        self.rows = 0

    def add(self, row: dict[str, Any]) -> None:
        self.buf.append(row)
        if len(self.buf) >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            pa = _pa()
            self.writer.write_table(pa.Table.from_pylist(self.buf, schema=self.schema))
            self.rows += len(self.buf)
            self.buf = []

    def close(self) -> None:
        self.flush()
        self.writer.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.writer.close()
        self.tmp.unlink(missing_ok=True)


def image_cell(data: bytes, pixel_bounds: tuple[int, int] | None) -> list[dict[str, Any]]:
    """The ``images`` cell of one row: the image's bytes and, when set, its pixel bounds."""
    cell: dict[str, Any] = {"bytes": data, "path": None}
    if pixel_bounds is not None:
        cell["min_pixels"], cell["max_pixels"] = pixel_bounds
    return [cell]


def _image_cell(row: ParsedRow, report: ProblemReport,
                pixel_bounds: tuple[int, int] | None = None) -> list[dict[str, Any]] | None:
    try:
        data, digest = image_bytes_for_parquet(row.record.image)
    except ImageProblem as e:
        _add(report, row, f"image_{e.kind}", e.detail)
        return None
    if row.record.sha256 and row.record.sha256 != digest:
        _add(report, row, "image_changed",
             f"{row.record.image} has sha256 {digest}, the manifest says {row.record.sha256}")
        return None
    return image_cell(data, pixel_bounds)


def _too_long(row: ParsedRow, report: ProblemReport, check: LengthCheck | None, messages: list[dict[str, str]],
              images: list[dict[str, Any]], pixel_bounds: tuple[int, int] | None, *, generation_prompt: bool) -> bool:
    """Report (kind ``overlong``) a row the trainer could not take whole; True if it is one."""
    detail = _length_problem(check, messages, images[0]["bytes"], pixel_bounds, generation_prompt=generation_prompt)
    if detail is not None:
        _add(report, row, "overlong", detail)
    return detail is not None


def _length_problem(check: LengthCheck | None, messages: list[dict[str, str]], data: bytes,
                    pixel_bounds: tuple[int, int] | None, *, generation_prompt: bool) -> str | None:
    if check is None:
        return None
    return check.problem(check.tokens(messages, data, pixel_bounds, add_generation_prompt=generation_prompt))


def _length_check(max_length: int | None, tokenizer: str | None) -> LengthCheck | None:
    return None if max_length is None else LengthCheck(max_length, tokenizer)


class SFTRowWriter:
    """The one writer of SFT rows (``export sft1``'s stage-1 parquet, ``stage2 label``'s stage-2
    parquet): schema :func:`sft_schema`, the image cell with its pixel bounds, the length check
    against the trainer's ``max_length`` and the parquet written whole or not at all.

    The caller reads each image and reports rows left out its own way; :meth:`overlong` says why a
    row is too long (``None`` when it fits) before it is :meth:`add`-ed. The parquet is opened at
    the first :meth:`add` (or at :meth:`close`, for a file with no rows), so a pass over the input
    may run before any file exists.
    """

    def __init__(self, out_path: str | os.PathLike[str], *,
                 pixel_bounds: tuple[int, int] | None = OFFICIAL_PIXEL_BOUNDS,
                 max_length: int | None = SFT_MAX_LENGTH, tokenizer: str | None = None,
                 batch_rows: int = 256) -> None:
        self.path = Path(out_path)
        self.pixel_bounds = check_pixel_bounds(pixel_bounds)
        self.check = _length_check(max_length, tokenizer)
        self.batch_rows = batch_rows
        self._sink: _ParquetSink | None = None

    def images(self, data: bytes) -> list[dict[str, Any]]:
        """The ``images`` cell for one image's bytes."""
        return image_cell(data, self.pixel_bounds)

    def overlong(self, messages: list[dict[str, str]], data: bytes) -> str | None:
        """Why the conversation with this image exceeds ``max_length`` tokens, or None."""
        return _length_problem(self.check, messages, data, self.pixel_bounds, generation_prompt=False)

    def _open(self) -> _ParquetSink:
        if self._sink is None:
            self._sink = _ParquetSink(self.path, sft_schema(self.pixel_bounds), self.batch_rows)
        return self._sink

    def add(self, messages: list[dict[str, str]], images: list[dict[str, Any]], *, id: str, subtask: str,
            label: str) -> None:
        """One row: the conversation, its ``images`` cell (:meth:`images`) and its trace fields."""
        self._open().add({"messages": messages, "images": images, "id": id, "subtask": subtask, "label": label})

    @property
    def rows(self) -> int:
        """Rows added so far."""
        return 0 if self._sink is None else self._sink.rows + len(self._sink.buf)

    def close(self) -> Path:
        """Write the parquet (renamed into place) and return its path."""
        self._open().close()
        return self.path

    def abort(self) -> None:
        """Leave no file behind (the temporary one is removed)."""
        if self._sink is not None:
            self._sink.abort()


def export_sft_stage1(
    items: Iterable[Record | ParsedRow],
    out_path: str | os.PathLike[str],
    report: ProblemReport | None = None,
    *,
    user_prompt: str = "ours",
    batch_rows: int = 256,
    pixel_bounds: tuple[int, int] | None = OFFICIAL_PIXEL_BOUNDS,
    max_length: int | None = SFT_MAX_LENGTH,
    tokenizer: str | None = None,
) -> ExportResult:
    """Stage-1 SFT parquet for veRL's ``MultiTurnSFTDataset``.

    Columns: ``messages`` (system, user with ``<image>``, assistant = response without confidence),
    ``images`` (one ``{"bytes", "path": None}``), plus ``id``, ``subtask``, ``label`` for tracing.
    ``user_prompt="ours"`` uses :func:`emocaliber_rl.prompts.task_question`; ``"original"`` keeps the
    published user turn (when the row had one) so a release can be trained on verbatim.
    ``pixel_bounds=(min_pixels, max_pixels)`` (default ``OFFICIAL_PIXEL_BOUNDS``; ``None``: the
    processor's own) travels with every image. A row longer than ``max_length`` tokens (image
    tokens, plus text tokens when ``tokenizer`` names the model's) is reported as ``overlong`` and
    left out; ``max_length=None`` skips the check.
    """
    if user_prompt not in ("ours", "original"):
        raise ValueError("user_prompt must be 'ours' or 'original'")
    writer = SFTRowWriter(out_path, pixel_bounds=pixel_bounds, max_length=max_length, tokenizer=tokenizer,
                          batch_rows=batch_rows)
    report = report if report is not None else ProblemReport()
    try:
        for row in _as_rows(items):
            rec = row.record
            try:
                answer = stage1_response(rec)
            except RowError as e:
                _add(report, row, e.kind, e.detail)
                continue
            messages = prompt_messages(rec.subtask, ask_confidence=False)
            if user_prompt == "original" and row.user_text:
                text = row.user_text if "<image>" in row.user_text else "<image>" + row.user_text
                messages[1]["content"] = text
            images = _image_cell(row, report, writer.pixel_bounds)
            if images is None:
                continue
            messages.append({"role": "assistant", "content": answer})
            detail = writer.overlong(messages, images[0]["bytes"])
            if detail is not None:
                _add(report, row, "overlong", detail)
                continue
            writer.add(messages, images, id=rec.id, subtask=rec.subtask, label=rec.label)
    except BaseException:
        writer.abort()
        raise
    rows = writer.rows
    return ExportResult(writer.close(), rows, report)


def export_rl_stage3(
    items: Iterable[Record | ParsedRow],
    out_path: str | os.PathLike[str],
    report: ProblemReport | None = None,
    *,
    split: str = "train",
    batch_rows: int = 256,
    pixel_bounds: tuple[int, int] | None = OFFICIAL_PIXEL_BOUNDS,
    max_length: int | None = RL_MAX_PROMPT_LENGTH,
    tokenizer: str | None = None,
    ask_confidence: bool = True,
) -> ExportResult:
    """Stage-3 RL parquet for veRL's ``RLHFDataset`` (schema: ``rl_schema()``).

    ``ask_confidence=False`` writes the stage-1/2 training prompt (no confidence request), for a
    policy that learnt to verbalise a confidence unasked (the CPU demo's tiny model; docs/stage3.md).

    ``data_source`` is the subtask name; the prompt asks for the confidence too; ``reward_model``
    carries the canonical label; ``extra_info`` carries index, split, id, subtask, group,
    candidates and the subtask's aliases (reward functions use them to accept dataset spellings).
    ``pixel_bounds``, ``max_length`` (the prompt's, veRL's ``data.max_prompt_length``) and
    ``tokenizer`` as for :func:`export_sft_stage1`.
    """
    report = report if report is not None else ProblemReport()
    pixel_bounds = check_pixel_bounds(pixel_bounds)
    check = _length_check(max_length, tokenizer)
    sink = _ParquetSink(Path(out_path), rl_schema(pixel_bounds), batch_rows)
    keys = alias_keys()
    try:
        for row in _as_rows(items):
            rec = row.record
            images = _image_cell(row, report, pixel_bounds)
            if images is None:
                continue
            prompt = prompt_messages(rec.subtask, ask_confidence=ask_confidence)
            if _too_long(row, report, check, prompt, images, pixel_bounds, generation_prompt=True):
                continue
            aliases = aliases_for(rec.subtask)
            sink.add(
                {
                    "data_source": rec.subtask,
                    "prompt": prompt,
                    "images": images,
                    "ability": ABILITY,
                    "reward_model": {"style": "rule", "ground_truth": rec.label},
                    "extra_info": {
                        "index": sink.rows + len(sink.buf),
                        "split": rec.split or split,
                        "id": rec.id,
                        "subtask": rec.subtask,
                        "group": rec.group,
                        "candidates": list(rec.candidates),
                        "aliases": {k: aliases.get(k) for k in keys},
                    },
                }
            )
    except BaseException:
        sink.abort()
        raise
    sink.close()
    return ExportResult(sink.path, sink.rows, report)


def _check_image_exists(row: ParsedRow, report: ProblemReport) -> bool:
    if not Path(row.record.image).is_file():
        _add(report, row, "image_missing", f"{row.record.image} does not exist")
        return False
    return True


def _records_with_images(items: Iterable[Record | ParsedRow], report: ProblemReport) -> Iterator[Record]:
    """The records whose image file exists; the others go to ``report``."""
    for row in _as_rows(items):
        if _check_image_exists(row, report):
            yield row.record


def _sample_fields(rec: Record, out: str | os.PathLike[str]) -> dict[str, Any]:
    """The per-sample fields the prompt set and the evaluation manifest share (the row schema of
    :mod:`~emocaliber_rl.data.rows`; the image path stored for the file ``out`` by the one path
    rule)."""
    return {"id": rec.id, "subtask": rec.subtask, "group": rec.group, "image": stored_image(rec.image, out),
            "label": rec.label, "candidates": list(rec.candidates), "sha256": rec.sha256}


def export_prompts_stage2(
    items: Iterable[Record | ParsedRow],
    out_path: str | os.PathLike[str],
    report: ProblemReport | None = None,
) -> ExportResult:
    """Stage-2 prompt set for the scaffold model: jsonl (or parquet if the name ends ``.parquet``).

    Rows: id, subtask, group, image (path), label, candidates, sha256, messages (system + user;
    no confidence request: the scaffold answers in the stage-1 format and stage 2 derives the
    confidence target from its answer).
    """
    report = report if report is not None else ProblemReport()
    rows = [
        {**_sample_fields(rec, out_path), "messages": prompt_messages(rec.subtask, ask_confidence=False)}
        for rec in _records_with_images(items, report)
    ]
    out = Path(out_path)
    if out.suffix == ".parquet":
        import pandas as pd

        out.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_parquet(out, index=False)
        n = len(rows)
    else:
        n = write_jsonl(out, rows)
    return ExportResult(out, n, report)


def export_eval_manifest(
    items: Iterable[Record | ParsedRow],
    out_path: str | os.PathLike[str],
    report: ProblemReport | None = None,
    *,
    ask_confidence: bool = True,
) -> ExportResult:
    """Evaluation manifest (jsonl): id, subtask, group, image, label, candidates, sha256, system and
    prompt (the user text with ``<image>``; asks for a confidence unless ``ask_confidence=False``)."""
    from emocaliber_rl.prompts import task_question

    report = report if report is not None else ProblemReport()
    rows = [
        {**_sample_fields(rec, out_path), "system": SYSTEM_PROMPT,
         "prompt": task_question(rec.subtask, ask_confidence=ask_confidence)}
        for rec in _records_with_images(items, report)
    ]
    return ExportResult(Path(out_path), write_jsonl(out_path, rows), report)
