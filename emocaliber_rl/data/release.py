"""`emocaliber bench import`: the published VECBench test file and VEC-CoT stage files into manifests.

Rows are parsed by :mod:`emocaliber_rl.data.conversations` (ms-swift ``messages``/``images`` or
ShareGPT ``conversations``/``image(s)``, with ``task``, ``ground_truth``/``label``, ``candidates``).
Every label and candidate list is validated against the taxonomy; a row that fails is reported
with its file and line number (``strict``: raised). Image parts are read in every form
qwen-vl-utils accepts (see :mod:`~emocaliber_rl.data.conversations`); ``data:image/...;base64,``
images are written, content-addressed, into ``image_dir`` so the manifest names a file, and
``http(s)://`` images are reported (``--path-map URL_PREFIX=LOCAL_DIR/`` points them at a local
copy). Images are decoded and hashed in a process pool so the manifest carries checksums; missing
or undecodable images are reported and left out.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from emocaliber_rl.data.exports import load_rows
from emocaliber_rl.data.images import sha256_bytes
from emocaliber_rl.data.records import Record, write_manifest
from emocaliber_rl.data.report import ProblemReport
from emocaliber_rl.data.splits import default_workers, hash_images
from emocaliber_rl.taxonomy import SUBTASKS


@dataclass
class ImportResult:
    records: list[Record]
    report: ProblemReport

    def table(self) -> str:
        counts = Counter(r.subtask for r in self.records)
        lines = ["| Subtask | Group | Records |", "|---|---|---:|"]
        lines += [f"| {n} | {t.group} | {counts[n]} |" for n, t in SUBTASKS.items() if counts[n]]
        lines.append(f"| **Total** | | {sum(counts.values())} |")
        return "\n".join(lines)


_DATA_URI = re.compile(r"data:image/([A-Za-z0-9.+-]+)?[^,]*?;base64,(.*)", re.DOTALL)
_EXT = {"jpeg": "jpg", "jpg": "jpg", "png": "png", "webp": "webp", "gif": "gif", "bmp": "bmp",
        "tiff": "tif"}


def save_data_uri(uri: str, image_dir: Path) -> Path:
    """Write a ``data:image/<type>;base64,...`` image to ``image_dir/<sha256>.<ext>``.

    Raises ``ValueError`` for a data URI qwen-vl-utils would not decode either (no ``base64,``).
    """
    m = _DATA_URI.match(uri)
    if m is None:
        raise ValueError("a data URI without ';base64,' (qwen-vl-utils reads base64 data URIs only)")
    try:
        data = base64.b64decode(m.group(2), validate=False)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"the base64 payload does not decode: {e}") from e
    ext = _EXT.get((m.group(1) or "").lower(), "img")
    image_dir.mkdir(parents=True, exist_ok=True)
    path = image_dir / f"{sha256_bytes(data)}.{ext}"
    if not path.exists():
        path.write_bytes(data)
    return path


def import_release(
    paths: list[str | os.PathLike[str]],
    *,
    split: str = "test",
    keep_response: bool = False,
    image_root: str | os.PathLike[str] | None = None,
    default_subtask: str | None = None,
    path_map: list[tuple[str, str]] | None = None,
    strict: bool = False,
    hash_files: bool = True,
    workers: int | None = None,
    progress: bool = True,
    image_dir: str | os.PathLike[str] | None = None,
) -> ImportResult:
    """Parse, validate and (optionally) hash the rows of published jsonl files.

    ``keep_response`` keeps the assistant turn (VEC-CoT files: the CoT); the VECBench test file's
    responses are model outputs and are dropped by default. ``image_dir``: where images given
    inline as data URIs are saved (without it such rows are reported).
    """
    report = ProblemReport(strict=strict)
    rows = load_rows(paths, report, image_root=image_root, default_subtask=default_subtask,
                     path_map=path_map)
    records = []
    for row in rows:  # load_rows already reported and left out repeated ids (the one id rule)
        rec = row.record
        where = f"{row.source}:{row.line}"
        if rec.image.startswith("data:"):
            if image_dir is None:
                report.add(row.source, "inline_image_not_saved", "the image is a data URI and no "
                           "folder to save it in was given", line=row.line, item=rec.id)
                continue
            try:
                rec.image = str(save_data_uri(rec.image, Path(image_dir)).resolve())
            except ValueError as e:
                report.add(row.source, "bad_data_uri", str(e), line=row.line, item=rec.id)
                continue
        elif rec.image.startswith(("http://", "https://")):
            report.add(row.source, "remote_image", f"{rec.image} is a URL; download it and map it "
                       "to the local copy with --path-map URL_PREFIX=LOCAL_DIR/", line=row.line,
                       item=rec.id)
            continue
        rec.split = split
        if not keep_response:
            rec.response = None
        rec.extra["origin"] = where
        records.append(rec)
    if hash_files:
        checked = hash_images(sorted({r.image for r in records}), workers or default_workers(), progress)
        first_by_sha: dict[str, str] = {}
        kept = []
        for rec in records:
            info, kind, detail = checked[rec.image]
            src, _, line = rec.extra["origin"].rpartition(":")
            if info is None:
                report.add(src, f"image_{kind}", detail, line=int(line), item=rec.id)
                continue
            rec.sha256 = info.sha256
            if info.sha256 in first_by_sha:
                # Kept: a release is imported as published; the report flags it for the user.
                report.add(src, "duplicate_image_kept", f"same bytes as {first_by_sha[info.sha256]}",
                           line=int(line), item=rec.id)
            else:
                first_by_sha[info.sha256] = rec.id
            kept.append(rec)
        records = kept
    else:
        # no decoding, but a manifest must not name images that are not there
        kept = []
        for rec in records:
            if os.path.isfile(rec.image):
                kept.append(rec)
            else:
                src, _, line = rec.extra["origin"].rpartition(":")
                report.add(src, "image_missing", f"{rec.image} does not exist", line=int(line),
                           item=rec.id)
        records = kept
    return ImportResult(records, report)


def inline_image_dir(out: str | os.PathLike[str]) -> Path:
    """Where `bench import -o OUT` saves data-URI images: ``OUT.images/`` next to the manifest."""
    out = Path(out)
    return out.with_name(out.name + ".images")


def write_import(res: ImportResult, out: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write the manifest and its problem report (``OUT.report.jsonl``)."""
    out = Path(out)
    write_manifest(out, res.records)
    rep = res.report.write(out.with_name(out.name + ".report.jsonl"))
    return out, rep
