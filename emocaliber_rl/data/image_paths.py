"""The one path rule for image paths in the files the commands write and read.

- **Writing**: a file stores each image path as an absolute path, or relative to the file's own
  folder when the image lies inside that folder (:func:`stored_image`). Never relative to the
  working directory, which the next command need not share.
- **Reading**: a relative image path resolves against the folder of the file that names it
  (:func:`resolve_image`); ``--image-root`` replaces that folder where a command offers it.

In memory an image path is usable from the working directory (absolute, or relative to it).
URLs and ``data:`` URIs pass through both untouched.
"""

from __future__ import annotations

import os
from pathlib import Path


def is_remote_or_inline(src: str) -> bool:
    return src.startswith(("http://", "https://", "data:"))


def resolve_image(image: str, base: str | os.PathLike[str] | None) -> str:
    """The image path as the reading process can open it: relative paths join ``base`` (the
    folder of the file that names them; ``None`` leaves them as they are)."""
    if is_remote_or_inline(image) or base is None or Path(image).is_absolute():
        return image
    return str(Path(base) / image)


def stored_image(image: str, file: str | os.PathLike[str]) -> str:
    """How ``file`` stores ``image``: relative to ``file``'s folder (``/``-separated) when the
    image lies inside it, else absolute."""
    if is_remote_or_inline(image):
        return image
    absolute = os.path.abspath(image)
    folder = os.path.abspath(os.path.dirname(os.path.abspath(file)))
    if os.path.commonpath([absolute, folder]) == folder:
        return Path(os.path.relpath(absolute, folder)).as_posix()
    return absolute
