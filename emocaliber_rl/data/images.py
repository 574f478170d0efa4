"""Image checks: does the file exist, decode completely, and what is its content hash.

Decoding fully (``Image.load``) rather than only ``verify()`` is what catches truncated JPEGs:
``verify`` reads headers only, and Pillow fills a truncated tail with grey only when
``ImageFile.LOAD_TRUNCATED_IMAGES`` is set, which we never set.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)


class ImageProblem(Exception):
    """An image that cannot be used; ``kind`` is one of missing, empty, truncated, undecodable."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class ImageInfo:
    path: str
    sha256: str
    width: int
    height: int
    format: str


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_image_bytes(data: bytes, name: str = "<bytes>") -> tuple[int, int, str]:
    """Decode ``data`` completely; return ``(width, height, format)`` or raise :class:`ImageProblem`."""
    from PIL import Image

    if not data:
        raise ImageProblem("empty", f"{name} has 0 bytes")
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or "unknown"
            width, height = img.width, img.height
            if fmt == "JPEG":
                # Decode at 1/8 scale: every entropy-coded byte is still read (truncation and
                # corruption are still caught) but the inverse DCT work mostly disappears.
                img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            img.load()
            return width, height, fmt
    except OSError as e:
        msg = str(e)
        kind = "truncated" if "truncated" in msg.lower() or "broken data stream" in msg else "undecodable"
        raise ImageProblem(kind, f"{name}: {msg}") from e
    except Exception as e:
        raise ImageProblem("undecodable", f"{name}: {type(e).__name__}: {e}") from e


def check_image(path: str | os.PathLike[str]) -> ImageInfo:
    """Read, hash and fully decode one image file. Picklable, so it runs in a process pool."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as e:
        raise ImageProblem("missing", f"{p} does not exist") from e
    except OSError as e:
        raise ImageProblem("missing", f"{p}: {e}") from e
    w, h, fmt = check_image_bytes(data, str(p))
    return ImageInfo(str(p), sha256_bytes(data), w, h, fmt)


def check_image_safe(path: str) -> tuple[str, ImageInfo | None, str | None, str | None]:
    """Pool-friendly wrapper: ``(path, info, problem_kind, detail)``; never raises."""
    try:
        return path, check_image(path), None, None
    except ImageProblem as e:
        return path, None, e.kind, e.detail


def image_bytes_for_parquet(path: str | os.PathLike[str]) -> tuple[bytes, str]:
    """``(bytes, sha256 of the file)`` for a parquet ``images`` cell.

    JPEG and PNG files are embedded unchanged (no re-encoding loss); any other format is decoded
    and re-encoded as PNG, which every loader (PIL via veRL's ``process_image``) reads.
    Raises :class:`ImageProblem` when the file is missing or does not decode completely.
    """
    from PIL import Image

    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImageProblem("missing", f"{p}: {e.strerror or e}") from e
    _, _, fmt = check_image_bytes(data, str(p))
    digest = sha256_bytes(data)
    if fmt in ("JPEG", "PNG"):
        return data, digest
    with Image.open(io.BytesIO(data)) as img:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="PNG")
    return buf.getvalue(), digest
