"""Parse one jsonl row of the published layouts into a :class:`Record`.

Accepted row layouts (one JSON object per line; first match wins):

1. **Our manifest rows**: ``id``, ``subtask`` (or ``task``), ``image``, ``label`` and optionally
   ``steps`` (dict of the five steps) or ``response`` (full response string).
2. **ms-swift** (the layout of the authors' ``VEC-CoT/stage*.jsonl`` and VECBench test file):
   ``messages``: list of ``{"role", "content"}`` (content a string with ``<image>``, or a list of
   parts) and ``images``: list of paths (or ``{"path": ...}``).
3. **ShareGPT**: ``conversations``: list of ``{"from": "human"|"gpt"|"system", "value"}`` (or
   ``{"role", "content"}``) and ``image`` (a path) or ``images`` (list of paths).

For layouts 2 and 3 these optional fields are read: ``id``; the subtask from ``task``, ``subtask``
or ``data_source``; the label from ``label``, ``ground_truth`` or ``solution`` (else from the
assistant's last ``<answer>``, read by the reward's ``extract_answer``); ``candidates`` (checked against the subtask's labels). Without a subtask
field the subtask comes from ``default_subtask`` or, failing that, from the candidate list (given,
or found in the user turn): the first VECBench subtask with exactly that label set, flagged in
``extra["subtask_inferred"]`` (FI-8/EmoSet-8/Abstract-8/Artphoto-8 and FI-2/WebEmo-2 share label
sets, so only the prompt, which depends on the label set alone, is certain then).

Content parts are read as qwen-vl-utils 0.0.14 reads them (``vision_process.extract_vision_info``
and ``fetch_image``; what veRL and the release feed the model): a part is an image when it has an
``image`` or ``image_url`` key or ``type`` ``image``/``image_url``; its source is ``part["image"]``,
else ``part["image_url"]`` (also OpenAI's ``{"url": ...}`` object there). Sources, in
``images`` lists too: a local path, ``file://`` + path (the prefix dropped, as ``fetch_image``
does), ``http(s)://`` URLs and ``data:image/...;base64,`` URIs (both kept as given: `bench import`
saves data URIs as files and reports URLs, which ``--path-map`` can turn into local paths).
Video parts are refused (VECBench rows are single images).

Only single-image rows are accepted. The first user turn is the question; the last assistant turn
(if any) is the response. Relative image paths are resolved against ``image_root``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emocaliber_rl.data.image_paths import resolve_image
from emocaliber_rl.data.records import Record
from emocaliber_rl.data.rows import row_subtask
from emocaliber_rl.taxonomy import (
    SUBTASKS,
    UnknownLabelError,
    UnknownSubtaskError,
    canonical_label,
    get_subtask,
)
from reward_fns.emocaliber import extract_answer

_USER_ROLES = {"user", "human"}
_ASSISTANT_ROLES = {"assistant", "gpt", "model", "bot"}


class RowError(ValueError):
    """A row that cannot become a record; ``kind`` is a short machine-readable reason."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass
class ParsedRow:
    record: Record
    user_text: str | None = None  # the published user turn (with ``<image>``), when there was one
    source: str = ""  # file the row came from, for problem reports
    line: int | None = None


def image_ref(src: str) -> str:
    """A path, URL or data URI as qwen-vl-utils' ``fetch_image`` reads it: ``file://`` dropped."""
    return src.removeprefix("file://")


def _part_source(part: dict[str, Any]) -> Any:
    # fetch_image: ele["image"] if "image" in ele else ele["image_url"]; earlier layouts of ours
    # named the path "path" or "url" in a {"type": "image"} part.
    src = part["image"] if "image" in part else part.get("image_url")
    if isinstance(src, dict):  # OpenAI chat format: {"image_url": {"url": ...}}
        src = src.get("url")
    if src is None:
        src = part.get("path") or part.get("url")
    return src


def _is_image_part(part: dict[str, Any]) -> bool:
    return "image" in part or "image_url" in part or part.get("type") in ("image", "image_url")


def _turns(obj: dict[str, Any]) -> tuple[list[tuple[str, str]], list[str]] | None:
    """``([(role, text)], inline_image_paths)`` of a conversation row, or None if not one."""
    if isinstance(obj.get("messages"), list):
        raw = obj["messages"]
    elif isinstance(obj.get("conversations"), list):
        raw = obj["conversations"]
    else:
        return None
    turns: list[tuple[str, str]] = []
    inline_images: list[str] = []
    for t in raw:
        if not isinstance(t, dict):
            raise RowError("bad_conversation", f"turn is {type(t).__name__}, not an object")
        role = str(t.get("role", t.get("from", ""))).lower()
        content = t.get("content", t.get("value", ""))
        if isinstance(content, list):  # OpenAI/Qwen style parts
            parts = []
            for part in content:
                if isinstance(part, dict) and ("video" in part or part.get("type") == "video"):
                    raise RowError("video_part", "a video content part; VECBench rows hold one image")
                if isinstance(part, dict) and _is_image_part(part):
                    parts.append("<image>")
                    src = _part_source(part)
                    if isinstance(src, str) and src:
                        inline_images.append(image_ref(src))
                    elif src is not None:
                        raise RowError("bad_image_field", "an image part's image/image_url must be a "
                                       f"path, file:// path, URL or data URI, got {type(src).__name__}")
                elif isinstance(part, dict):
                    parts.append(str(part.get("text", "")))
                else:
                    parts.append(str(part))
            content = "".join(parts)
        turns.append((role, str(content)))
    return turns, inline_images


def _image_list(obj: dict[str, Any], inline: list[str]) -> list[str]:
    imgs: Any = obj.get("images", obj.get("image"))
    if imgs is None:
        return inline
    if isinstance(imgs, (str, dict)):
        imgs = [imgs]
    out = []
    for im in imgs:
        if isinstance(im, dict):
            im = im.get("path") or im.get("image") or im.get("url")
        if not isinstance(im, str) or not im:
            raise RowError("bad_image_field", "image entries must be paths (or {'path': ...})")
        out.append(image_ref(im))
    return out


def _label_sets_by_size() -> list[tuple[str, tuple[str, ...]]]:
    seen: dict[frozenset[str], str] = {}
    for name, task in SUBTASKS.items():
        seen.setdefault(frozenset(task.labels), name)
    # Larger sets first: WebEmo-7's labels contain UnbiasedEmo-6's.
    return sorted(((n, SUBTASKS[n].labels) for n in seen.values()), key=lambda x: -len(x[1]))


def infer_subtask(candidates: list[str] | None, user_text: str | None) -> str | None:
    """The first subtask whose label set equals ``candidates`` (or is fully named in ``user_text``)."""
    if candidates:
        want = {c.strip().lower() for c in candidates}
        for name, labels in _label_sets_by_size():
            if set(labels) == want:
                return name
        return None
    if user_text:
        words = set(re.findall(r"[a-z]+", user_text.lower()))
        for name, labels in _label_sets_by_size():
            if set(labels) <= words:
                return name
    return None


def parse_row(
    obj: Any,
    *,
    lineno: int,
    source: str,
    image_root: Path | None = None,
    default_subtask: str | None = None,
) -> ParsedRow:
    """Turn one decoded jsonl object into a :class:`ParsedRow` or raise :class:`RowError`."""
    if not isinstance(obj, dict):
        raise RowError("bad_row", f"expected a JSON object, got {type(obj).__name__}")
    if "messages" not in obj and "conversations" not in obj:
        # Layout 1: our own manifest rows.
        try:
            rec = Record.from_dict(obj)
        except UnknownLabelError as e:
            raise RowError("unknown_label", str(e)) from e
        except UnknownSubtaskError as e:
            raise RowError("unknown_subtask", str(e)) from e
        except (ValueError, TypeError) as e:
            raise RowError("bad_row", str(e)) from e
        rec.image = resolve_image(rec.image, image_root)
        return ParsedRow(rec, None, source, lineno)

    got = _turns(obj)
    assert got is not None
    turns, inline = got
    user = next((text for role, text in turns if role in _USER_ROLES), None)
    assistant = next((text for role, text in reversed(turns) if role in _ASSISTANT_ROLES), None)
    if user is None:
        raise RowError("no_user_turn", "the conversation has no user/human turn")
    images = _image_list(obj, inline)
    if not images:
        raise RowError("no_image", "the row names no image")
    if len(images) > 1:
        raise RowError("multiple_images", f"{len(images)} images; VECBench rows have one")
    n_placeholders = user.count("<image>")
    if n_placeholders > 1:
        raise RowError("multiple_images", f"{n_placeholders} <image> placeholders in the user turn")

    candidates = obj.get("candidates")
    if isinstance(candidates, str):
        candidates = [c.strip() for c in re.split(r"[,;/|]", candidates) if c.strip()]
    subtask_name = row_subtask(obj) or obj.get("data_source") or default_subtask
    inferred = False
    if not subtask_name:
        subtask_name = infer_subtask(candidates, user)
        inferred = True
        if subtask_name is None:
            raise RowError(
                "unknown_subtask",
                "no task/subtask field and the candidate labels match no VECBench subtask "
                "(pass a default subtask)",
            )
    try:
        task = get_subtask(str(subtask_name))
    except UnknownSubtaskError as e:
        raise RowError("unknown_subtask", str(e)) from e
    if candidates and not inferred:
        cand_set = set()
        for c in candidates:
            try:
                cand_set.add(canonical_label(task.name, str(c)))
            except UnknownLabelError as e:
                raise RowError("unknown_label", f"candidate {c!r}: {e}") from e
        if cand_set != set(task.labels):
            raise RowError(
                "candidates_mismatch",
                f"candidates {sorted(cand_set)} differ from {task.name}'s labels {list(task.labels)}",
            )

    label = obj.get("label", obj.get("ground_truth", obj.get("solution")))
    answer = extract_answer(assistant) if assistant else None
    if label is None:
        label = answer
    if label is None:
        raise RowError("no_label", "no label/ground_truth field and no <answer> in the response")
    if isinstance(label, list):  # some exports wrap the label in a list
        label = label[0] if len(label) == 1 else str(label)
    try:
        rec = Record.make(
            obj.get("id") if obj.get("id") is not None else f"{Path(source).stem}:{lineno}",
            task.name,
            resolve_image(images[0], image_root),
            str(label),
            response=assistant,
            source=Path(source).name,
        )
    except UnknownLabelError as e:
        raise RowError("unknown_label", str(e)) from e
    if inferred:
        rec.extra["subtask_inferred"] = True
    return ParsedRow(rec, user, source, lineno)
