"""Image checks: does the file exist, decode completely, and what are its content hashes.

Decoding fully (``Image.load``) rather than only ``verify()`` is what catches truncated JPEGs:
``verify`` reads headers only, and Pillow fills a truncated tail with grey only when
``ImageFile.LOAD_TRUNCATED_IMAGES`` is set, which we never set.

Besides the sha256 of the bytes, :func:`check_image` can return a 64-bit perceptual hash
(``imagehash.phash``: DCT of the 32x32 greyscale image, one bit per low frequency above the
median), which survives re-encoding, resizing and format changes, for near-duplicate detection.
It is computed from the image already decoded for the check, so it costs one 32x32 resize and DCT.
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
    phash: int | None = None  # 64-bit imagehash.phash, when asked for


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def perceptual_hash(img) -> int:
    """``imagehash.phash`` of a PIL image as a 64-bit integer (bit order as ``str(hash)``)."""
    import imagehash

    return int(str(imagehash.phash(img)), 16)


# Smallest side the JPEG draft decode keeps when a perceptual hash is wanted: phash resamples to
# 32x32, and from under about twice that the hashes of a JPEG and its PNG copy drift apart.
_PHASH_MIN_SIDE = 64


def check_image_bytes(data: bytes, name: str = "<bytes>") -> tuple[int, int, str]:
    """Decode ``data`` completely; return ``(width, height, format)`` or raise :class:`ImageProblem`."""
    return _decode(data, name, False)[:3]


def _decode(data: bytes, name: str, want_phash: bool) -> tuple[int, int, str, int | None]:
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageProblem("empty", f"{name} has 0 bytes")
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or "unknown"
            width, height = img.width, img.height
            if fmt == "JPEG":
                # Decode at 1/8 scale: every entropy-coded byte is still read (truncation and
                # corruption are still caught) but the inverse DCT work mostly disappears.
                lo = _PHASH_MIN_SIDE if want_phash else 1
                img.draft("RGB", (min(width, max(lo, width // 8)), min(height, max(lo, height // 8))))
            img.load()
            ph = perceptual_hash(img) if want_phash else None
            return width, height, fmt, ph
    except UnidentifiedImageError as e:
        # Pillow's message names the stream it read, here a BytesIO, by its repr with a memory
        # address ("<_io.BytesIO object at 0x7f...>"): a report would differ between identical runs
        raise ImageProblem("undecodable", f"{name}: cannot identify image file (not an image "
                           "format Pillow reads)") from e
    except OSError as e:
        msg = str(e)
        kind = "truncated" if "truncated" in msg.lower() or "broken data stream" in msg else "undecodable"
        raise ImageProblem(kind, f"{name}: {msg}") from e
    except Exception as e:
        raise ImageProblem("undecodable", f"{name}: {type(e).__name__}: {e}") from e


def check_image(path: str | os.PathLike[str], perceptual: bool = False) -> ImageInfo:
    """Read, hash and fully decode one image file (``perceptual``: also its phash).
    Picklable, so it runs in a process pool."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as e:
        raise ImageProblem("missing", f"{p} does not exist") from e
    except OSError as e:
        raise ImageProblem("missing", f"{p}: {e}") from e
    w, h, fmt, ph = _decode(data, str(p), perceptual)
    return ImageInfo(str(p), sha256_bytes(data), w, h, fmt, ph)


def check_image_safe(path: str, perceptual: bool = False) -> tuple[str, ImageInfo | None, str | None, str | None]:
    """Pool-friendly wrapper: ``(path, info, problem_kind, detail)``; never raises."""
    try:
        return path, check_image(path, perceptual), None, None
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
