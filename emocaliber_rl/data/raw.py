"""Adapters for the six source datasets, each reading a user's local copy in its published layout.

Every adapter lists ``RawSample`` rows (dataset, id, path, canonical label in the dataset's own
label set) and reports, per file, anything it cannot use: unknown label spellings, files that are
not images, listed-but-absent files, ties in vote tables. A metadata file that cannot be read as
published (a ``category.txt`` that does not parse or disagrees with the WebEmo hierarchy, an
``info.json`` without ``emotion.label2idx``, a vote table without its eight columns) raises
:class:`LayoutError`: every label would depend on it, so the build stops instead of guessing.
Decoding and hashing happen later, in a process pool (:mod:`emocaliber_rl.data.splits`).

The layouts, with the published file each fact comes from, are in ``docs/data.md``. In short
(``ROOT`` is the folder the user passes; one level above it is accepted when exactly one folder
inside holds the layout, e.g. the folder FI's ``emotion_dataset/`` was unzipped into):

- **FI**: ``ROOT/<emotion>/<file>.jpg``; the folder name is the label. Files directly in ``ROOT``
  use the name prefix before ``_``.
- **EmoSet** (EmoSet-118K): ``ROOT/image/<emotion>/*.jpg``, ``train.json``/``val.json``/``test.json``
  (lists of ``[emotion, id, "image/<emotion>/x.jpg", "annotation/<emotion>/x.json"]``; the
  3-element ``[emotion, image, annotation]`` of some third-party copies too) and ``info.json``
  (``emotion.label2idx``). With the lists, exactly the listed images are used (the union of the
  three: VECBench re-splits); without them, every image under ``image/``.
- **WebEmo**: ``category.txt`` (a comment line, then ``labels=[('affection', 'love', '+'), ...]``),
  ``train25.txt``/``test25.txt`` (``URL index`` lines) and the images as ccivit/download_webEmo's
  ``download_dataset.py`` saves them, ``ROOT/{train,test}/<index>/<URL basename>``. The index maps
  through the order of ``category.txt`` (the published order when the file is absent). Lists
  rewritten to local paths (``images/x.jpg 7``, relative to ``ROOT``) are read as well.
- **Abstract** (``testImages_abstract``): images plus ``ABSTRACT_groundTruth.csv`` (a name column,
  then the eight vote columns ``'Amusement'`` ... ``'Sad'``, single-quoted). The label is the
  unique majority; ties, all-zero rows and malformed rows are reported per line.
- **ArtPhoto** (``testImages_artphoto``): ``ROOT/<emotion>_<n>.jpg`` (spellings such as ``sad``).
- **UnbiasedEmo**: ``ROOT/<emotion>/<object>/*.jpg`` (the zip's ``images/`` folder); the top
  folder is the label.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from emocaliber_rl.data.images import IMAGE_SUFFIXES
from emocaliber_rl.data.report import ProblemReport
from emocaliber_rl.taxonomy import (
    MIKELS_8,
    WEBEMO_25,
    WEBEMO_PARENT,
    WEBEMO_POLARITY,
    UnknownLabelError,
    canonical_label,
)

# The subtask whose label set is each dataset's own.
NATIVE_SUBTASK: dict[str, str] = {
    "FI": "FI-8",
    "EmoSet": "EmoSet-8",
    "WebEmo": "WebEmo-25",
    "Abstract": "Abstract-8",
    "ArtPhoto": "Artphoto-8",
    "UnbiasedEmo": "UnbiasedEmo-6",
}
# What each root must hold; quoted in the error when it does not.
EXPECTED_LAYOUT: dict[str, str] = {
    "FI": "<emotion>/<file>.jpg folders named by the eight Mikels emotions (FI's emotion_dataset/)",
    "EmoSet": "image/<emotion>/*.jpg with train.json, val.json, test.json and info.json",
    "WebEmo": "category.txt, train25.txt/test25.txt and train/<index>/, test/<index>/ image folders",
    "Abstract": "ABSTRACT_groundTruth.csv next to the images (testImages_abstract/)",
    "ArtPhoto": "<emotion>_<n>.jpg files (testImages_artphoto/)",
    "UnbiasedEmo": "<emotion>/<object>/*.jpg folders named by the six emotions (the zip's images/)",
}
# Files that belong to a layout and are not images; anything else non-image is reported.
_METADATA = {"train.json", "val.json", "test.json", "info.json", "category.txt", "train25.txt",
             "test25.txt", "abstract_groundtruth.csv", "readme.txt", "readme.md", "readme.rtf",
             "license.txt", "download_dataset.py"}
ABSTRACT_CSV = "ABSTRACT_groundTruth.csv"
_POLARITY_SIGN = {"+": "positive", "-": "negative"}


class LayoutError(ValueError):
    """A dataset root or metadata file that cannot be read as published; names file and line."""


@dataclass(frozen=True)
class RawSample:
    dataset: str
    id: str
    path: str
    label: str
    origin: str | None = None  # the list file entry that named the image, e.g. 'train.json[12]'


def _label(dataset: str, word: str) -> str:
    return canonical_label(NATIVE_SUBTASK[dataset], word)


def _is_label(dataset: str, word: str) -> bool:
    try:
        _label(dataset, word)
        return True
    except UnknownLabelError:
        return False


def _hidden(name: str) -> bool:
    # macOS archive debris (.DS_Store, ._x.jpg resource forks, __MACOSX/) is not data.
    return name.startswith(".") or name == "__MACOSX"


def _files(root: Path, report: ProblemReport) -> list[Path]:
    """Sorted image files under ``root``; other files are reported (metadata files excepted)."""
    out = []
    hidden = 0
    for dirpath, dirnames, filenames in os.walk(root):
        hidden += sum(1 for d in dirnames if _hidden(d))
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        for name in sorted(filenames):
            if _hidden(name):
                hidden += name != ".DS_Store"
                continue
            p = Path(dirpath) / name
            if p.suffix.lower() in IMAGE_SUFFIXES:
                out.append(p)
            elif name.lower() not in _METADATA and not name.endswith(".report.jsonl"):
                report.add(str(root), "not_an_image", "file has no image suffix; ignored",
                           item=str(p.relative_to(root)))
    if hidden:
        report.note(f"{root}: skipped {hidden} hidden files/folders (names starting with '.', "
                    "__MACOSX/: archive debris such as ._x.jpg resource forks)")
    return out


def _sample(dataset: str, root: Path, path: Path, label: str, origin: str | None = None) -> RawSample:
    rel = path.relative_to(root).as_posix()
    return RawSample(dataset, f"{dataset}/{rel}", str(path), label, origin)


def _try_label(dataset: str, word: str, report: ProblemReport, source: Path | str, item: str,
               line: int | None = None) -> str | None:
    try:
        return _label(dataset, word)
    except UnknownLabelError as e:
        report.add(str(source), "unknown_label", str(e), item=item, line=line)
        return None


# ---------------------------------------------------------------------------------------------
# roots


def _subdirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not _hidden(d.name))


def _label_prefix(stem: str) -> str:
    return re.split(r"[_\-\s\d]", stem, maxsplit=1)[0]


def holds_layout(name: str, root: Path) -> bool:
    """Whether ``root`` itself looks like ``name``'s published layout (not a folder above it)."""
    if name == "FI":
        return (any(_is_label("FI", d.name) for d in _subdirs(root))
                or any(p.suffix.lower() in IMAGE_SUFFIXES and _is_label("FI", p.stem.split("_")[0])
                       for p in root.iterdir() if p.is_file()))
    if name == "EmoSet":
        return (root / "image").is_dir() or any((root / f"{s}.json").is_file()
                                                 for s in ("train", "val", "test", "info"))
    if name == "WebEmo":
        return any((root / f).exists() for f in ("category.txt", "train25.txt", "test25.txt",
                                                  "train", "test"))
    if name == "Abstract":
        return any(p.name.lower() == ABSTRACT_CSV.lower() for p in root.iterdir() if p.is_file())
    if name == "ArtPhoto":
        return any(p.suffix.lower() in IMAGE_SUFFIXES and _is_label("ArtPhoto", _label_prefix(p.stem))
                   for p in root.iterdir() if p.is_file())
    if name == "UnbiasedEmo":
        return any(_is_label("UnbiasedEmo", d.name) for d in _subdirs(root))
    raise ValueError(f"unknown dataset {name!r}")


def resolve_root(name: str, root: Path, report: ProblemReport) -> Path:
    """``root`` itself, or the one folder inside it that holds the layout (noted in the report)."""
    if holds_layout(name, root):
        return root
    inner = [d for d in _subdirs(root) if holds_layout(name, d)]
    if len(inner) == 1:
        report.note(f"{name}: {root} does not hold the layout itself; reading {inner[0]} "
                    "(one level down, the only folder there laid out as expected)")
        return inner[0]
    if inner:
        raise LayoutError(f"{name}: {root} holds {len(inner)} folders laid out as {name} "
                          f"({', '.join(d.name for d in inner)}); pass one of them")
    raise LayoutError(f"{name}: {root} is not laid out as expected (nor is any folder directly "
                      f"inside it): need {EXPECTED_LAYOUT[name]}")


# ---------------------------------------------------------------------------------------------
# adapters


def read_fi(root: Path, report: ProblemReport) -> list[RawSample]:
    out = []
    for p in _files(root, report):
        rel = p.relative_to(root)
        word = rel.parts[0] if len(rel.parts) > 1 else p.stem.split("_")[0]
        label = _try_label("FI", word, report, root, rel.as_posix())
        if label is not None:
            out.append(_sample("FI", root, p, label))
    return out


def read_emoset_info(path: Path) -> dict[str, int]:
    """``info.json``'s ``emotion.label2idx`` (canonical label -> index), checked to be the eight
    EmoSet emotions; raises :class:`LayoutError` otherwise."""
    try:
        info = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise LayoutError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
    emotion = info.get("emotion") if isinstance(info, dict) else None
    l2i = emotion.get("label2idx") if isinstance(emotion, dict) else None
    if not isinstance(l2i, dict):
        raise LayoutError(f"{path}: no emotion.label2idx; the release nests the eight emotions as "
                          '{"emotion": {"label2idx": {"amusement": 0, ...}, "idx2label": ...}, ...}')
    out: dict[str, int] = {}
    for word, idx in l2i.items():
        try:
            out[_label("EmoSet", word)] = idx
        except UnknownLabelError as e:
            raise LayoutError(f"{path}: emotion.label2idx key {word!r}: {e}") from e
    missing = [m for m in MIKELS_8 if m not in out]
    if missing:
        raise LayoutError(f"{path}: emotion.label2idx lacks {', '.join(missing)} "
                          f"(has {', '.join(map(str, l2i))})")
    return out


def _emoset_entry(entry: object) -> tuple[str, str] | None:
    """``(emotion, image path)`` of one list entry, or None when it has neither published form."""
    if not isinstance(entry, list):
        return None
    if len(entry) == 4:  # official: [emotion, id, image, annotation]
        word, rel = entry[0], entry[2]
    elif len(entry) == 3:  # third-party copies: [emotion, image, annotation]
        word, rel = entry[0], entry[1]
    else:
        return None
    if not (isinstance(word, str) and isinstance(rel, str) and Path(rel).suffix.lower() in IMAGE_SUFFIXES):
        return None
    return word, rel


def read_emoset(root: Path, report: ProblemReport) -> list[RawSample]:
    lists = [root / f"{s}.json" for s in ("train", "val", "test") if (root / f"{s}.json").is_file()]
    info = root / "info.json"
    if info.is_file():
        read_emoset_info(info)
    elif lists:
        report.note(f"EmoSet: {info} is absent; entries are checked against the eight emotions only")
    if not lists:
        report.note(f"EmoSet: no train/val/test.json in {root}; every image under image/ is used, "
                    "labelled by its folder")
        out = []
        base = root / "image" if (root / "image").is_dir() else root
        for p in _files(base, report):
            rel = p.relative_to(root)
            word = rel.parts[-2] if len(rel.parts) > 1 else p.stem.split("_")[0]
            label = _try_label("EmoSet", word, report, root, rel.as_posix())
            if label is not None:
                out.append(_sample("EmoSet", root, p, label))
        return out
    seen: dict[str, str] = {}
    out = []
    for lst in lists:
        try:
            entries = json.loads(lst.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as e:
            raise LayoutError(f"{lst}:{e.lineno}: not valid JSON ({e.msg})") from e
        if not isinstance(entries, list):
            raise LayoutError(f"{lst}: expected a JSON list of entries, got {type(entries).__name__}")
        for i, entry in enumerate(entries):
            where = f"{lst.name}[{i}]"
            got = _emoset_entry(entry)
            if got is None:
                report.add(str(lst), "bad_entry", "expected [emotion, id, 'image/<emotion>/x.jpg', "
                           f"'annotation/<emotion>/x.json'] (or [emotion, image, annotation]), got {entry!r}",
                           item=where)
                continue
            word, rel = got
            if rel in seen:
                report.add(str(lst), "duplicate_entry", f"{rel} already listed at {seen[rel]}",
                           item=f"{where} {rel}")
                continue
            seen[rel] = where
            label = _try_label("EmoSet", word, report, lst, f"{where} {rel}")
            if label is None:
                continue
            parts = Path(rel).parts
            if len(parts) >= 3 and parts[0] == "image":
                # The release files images under their emotion's folder: a disagreement means the
                # list and the tree are from different copies; neither is trusted.
                folder = _try_label("EmoSet", parts[1], report, lst, f"{where} {rel}")
                if folder is None:
                    continue
                if folder != label:
                    report.add(str(lst), "label_mismatch", f"entry says {word!r} but the image is "
                               f"in image/{parts[1]}/", item=f"{where} {rel}")
                    continue
            out.append(_sample("EmoSet", root, root / rel, label, origin=f"{lst}[{i}]"))
    if (root / "image").is_dir():
        # VECBench uses the listed images; one on disk that no list names is said, not dropped.
        for p in _files(root / "image", report):
            rel = p.relative_to(root).as_posix()
            if rel not in seen:
                report.add(str(root), "unlisted", "image in no train/val/test.json entry; not used",
                           item=rel)
    return out


def read_webemo_categories(path: Path) -> list[str]:
    """The 25 canonical WebEmo labels in ``category.txt``'s order (index order of the lists).

    The file is a Python assignment (``# comment`` then ``labels=[('affection', 'love', '+'),
    ...]``), so it is parsed as one: every tuple must name a WebEmo-25 category once, with its
    Parrott parent and polarity sign as in the published hierarchy. Raises :class:`LayoutError`
    naming the line otherwise.
    """
    text = path.read_text(encoding="utf-8-sig")
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as e:
        raise LayoutError(f"{path}:{e.lineno}: does not parse as the published "
                          f"labels=[('name', 'parent', '+'), ...] list ({e.msg})") from e
    body = tree.body
    if (len(body) != 1 or not isinstance(body[0], ast.Assign)
            or not isinstance(body[0].value, (ast.List, ast.Tuple))):
        line = body[0].lineno if body else 1
        raise LayoutError(f"{path}:{line}: expected one assignment labels=[('name', 'parent', '+'), "
                          "...] (after the comment line)")
    names: list[str] = []
    where: dict[str, int] = {}
    for elt in body[0].value.elts:
        line = elt.lineno
        try:
            tup = ast.literal_eval(elt)
        except ValueError as e:
            raise LayoutError(f"{path}:{line}: not a literal ('name', 'parent', '+') tuple") from e
        if not (isinstance(tup, tuple) and len(tup) == 3 and all(isinstance(x, str) for x in tup)):
            raise LayoutError(f"{path}:{line}: expected ('name', 'parent', '+' or '-'), got {tup!r}")
        name, parent, sign = tup
        try:
            leaf = _label("WebEmo", name)
        except UnknownLabelError as e:
            raise LayoutError(f"{path}:{line}: {name!r} is not a WebEmo-25 category ({e})") from e
        if leaf in where:
            raise LayoutError(f"{path}:{line}: {name!r} is listed twice (first at line {where[leaf]})")
        if parent.strip().lower() != WEBEMO_PARENT[leaf]:
            raise LayoutError(f"{path}:{line}: {name!r} has parent {parent!r}; the WebEmo hierarchy "
                              f"puts it under {WEBEMO_PARENT[leaf]!r}")
        if _POLARITY_SIGN.get(sign.strip()) != WEBEMO_POLARITY[leaf]:
            raise LayoutError(f"{path}:{line}: {name!r} has polarity {sign!r}; the WebEmo hierarchy "
                              f"has {'+' if WEBEMO_POLARITY[leaf] == 'positive' else '-'}")
        where[leaf] = line
        names.append(leaf)
    if len(names) != len(WEBEMO_25):
        missing = [w for w in WEBEMO_25 if w not in where]
        raise LayoutError(f"{path}: {len(names)} categories, the release has {len(WEBEMO_25)} "
                          f"(missing: {', '.join(missing)})")
    return names


def _webemo_names(root: Path, report: ProblemReport) -> list[str]:
    cat = root / "category.txt"
    if not cat.is_file():
        report.note(f"WebEmo: no category.txt in {root}; folder and list indices follow the "
                    "published order (0 = affection ... 24 = zest)")
        return list(WEBEMO_25)
    names = read_webemo_categories(cat)
    if names != list(WEBEMO_25):
        report.note(f"WebEmo: {cat} orders the categories differently from the published file; "
                    "indices follow this file")
    return names


def read_webemo(root: Path, report: ProblemReport) -> list[RawSample]:
    for wrong in ("train25", "test25"):
        if (root / "images" / wrong).is_dir():
            # slifer0918/WEBEmo's download.py files each image under its label's LAST digit
            # (label = url[-1]), so 10..24 land in folders 0..9: no folder index can be trusted.
            raise LayoutError(f"WebEmo: {root / 'images' / wrong} is the layout of slifer0918/WEBEmo's "
                              "download.py, which names folders by the last digit of the label "
                              "index; download with ccivit/download_webEmo's download_dataset.py "
                              "(train/<index>/, test/<index>/) or give lists of local paths")
    names = _webemo_names(root, report)
    out = []
    found: set[str] = set()
    for split in ("train", "test"):
        if not (root / split).is_dir():
            continue
        for p in _files(root / split, report):
            rel = p.relative_to(root)
            found.add(rel.as_posix())
            idx = rel.parts[1] if len(rel.parts) > 2 else ""
            if not idx.isdigit() or int(idx) >= len(names):
                report.add(str(root), "unknown_label", f"folder {idx!r} is not a category index "
                           f"0..{len(names) - 1}", item=rel.as_posix())
                continue
            out.append(_sample("WebEmo", root, p, names[int(idx)]))
    for split, lst in (("train", "train25.txt"), ("test", "test25.txt")):
        path = root / lst
        if not path.is_file():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                if line.strip():
                    report.add(str(path), "bad_entry", f"expected 'URL_or_path label_index', got {line!r}",
                               line=n)
                continue
            src, idx = parts[0], int(parts[1])
            if idx >= len(names):
                report.add(str(path), "unknown_label", f"index {idx} is not a category index "
                           f"0..{len(names) - 1}", line=n, item=src)
                continue
            if "://" in src:
                # The released URL lists: the download script files images by split/index/basename.
                rel = f"{split}/{idx}/{src.rsplit('/', 1)[-1]}"
                if rel not in found:
                    report.add(str(path), "not_downloaded", f"{rel} is listed but absent", line=n)
                continue
            # Lists rewritten to local paths (relative to ROOT), e.g. 'images/000123.jpg 7'.
            rel = Path(src).as_posix()
            if rel in found:
                continue
            found.add(rel)
            p = root / rel
            if not p.is_file():
                report.add(str(path), "missing", f"{rel} is listed but absent", line=n, item=rel)
                continue
            out.append(_sample("WebEmo", root, p, names[idx], origin=f"{path}:{n}"))
    return out


def _abstract_columns(gt: Path, header: list[str]) -> list[str]:
    """Canonical label of each vote column (header order); :class:`LayoutError` unless the header
    is a name column plus the eight emotions, once each."""
    cols = [h.strip().strip("'\"").strip() for h in header[1:]]
    labels = []
    for c in cols:
        try:
            labels.append(_label("Abstract", c))
        except UnknownLabelError as e:
            raise LayoutError(f"{gt}:1: column {c!r} is not one of the eight vote columns "
                              f"'Amusement' ... 'Sad' ({e})") from e
    dup = sorted({c for c, lab in zip(cols, labels, strict=True) if labels.count(lab) > 1})
    missing = [m for m in MIKELS_8 if m not in labels]
    if dup or missing:
        raise LayoutError(f"{gt}:1: the vote table needs each of the eight emotions once"
                          + (f"; missing: {', '.join(missing)}" if missing else "")
                          + (f"; repeated: {', '.join(dup)}" if dup else ""))
    return labels


def read_abstract(root: Path, report: ProblemReport) -> list[RawSample]:
    gt = next((p for p in sorted(root.iterdir()) if p.name.lower() == ABSTRACT_CSV.lower()), None)
    if gt is None:
        raise LayoutError(f"Abstract: {root / ABSTRACT_CSV} not found; the labels are in it")
    files = _files(root, report)
    by_name: dict[str, Path] = {}
    for p in files:
        if p.name in by_name:
            report.add(str(root), "ambiguous_name", f"{p.name} is also at "
                       f"{by_name[p.name].relative_to(root)}; the vote table names images by file name",
                       item=p.relative_to(root).as_posix())
            continue
        by_name[p.name] = p
    with open(gt, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f, quotechar="'", skipinitialspace=True))
    if not rows:
        raise LayoutError(f"{gt}: empty file")
    columns = _abstract_columns(gt, rows[0])
    width = 1 + len(columns)
    listed: dict[str, int] = {}
    out = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        name = row[0].strip().strip("'\"")
        if len(row) != width:
            report.add(str(gt), "bad_row", f"{len(row)} cells, the header has {width}: {row!r}",
                       line=n, item=name or None)
            continue
        if name in listed:
            report.add(str(gt), "duplicate_entry", f"{name} already listed at line {listed[name]}",
                       line=n, item=name)
            continue
        listed[name] = n
        try:
            votes = [int(v.strip()) for v in row[1:]]
        except ValueError:
            report.add(str(gt), "bad_row", f"votes are not whole numbers: {row[1:]!r}", line=n, item=name)
            continue
        if min(votes) < 0:
            report.add(str(gt), "bad_row", f"negative vote count in {row[1:]!r}", line=n, item=name)
            continue
        top = max(votes)
        winners = [lab for lab, v in zip(columns, votes, strict=True) if v == top]
        if top == 0:
            report.add(str(gt), "inconclusive", "no votes", line=n, item=name)
            continue
        if len(winners) > 1:
            report.add(str(gt), "inconclusive", f"tie between {', '.join(winners)} ({top} votes each)",
                       line=n, item=name)
            continue
        if name not in by_name:
            report.add(str(gt), "missing", f"{name} is in the vote table but not on disk", line=n,
                       item=name)
            continue
        out.append(_sample("Abstract", root, by_name[name], winners[0], origin=f"{gt}:{n}"))
    for name, p in by_name.items():
        if name not in listed:
            report.add(str(root), "unlabelled", f"image not in {gt.name}",
                       item=p.relative_to(root).as_posix())
    return out


def read_artphoto(root: Path, report: ProblemReport) -> list[RawSample]:
    out = []
    for p in _files(root, report):
        label = _try_label("ArtPhoto", _label_prefix(p.stem), report, root, p.relative_to(root).as_posix())
        if label is not None:
            out.append(_sample("ArtPhoto", root, p, label))
    return out


def read_unbiasedemo(root: Path, report: ProblemReport) -> list[RawSample]:
    out = []
    for p in _files(root, report):
        rel = p.relative_to(root)
        if len(rel.parts) < 2:
            report.add(str(root), "no_label", "image outside an <emotion>/ folder", item=rel.as_posix())
            continue
        label = _try_label("UnbiasedEmo", rel.parts[0], report, root, rel.as_posix())
        if label is not None:
            out.append(_sample("UnbiasedEmo", root, p, label))
    return out


ADAPTERS: dict[str, Callable[[Path, ProblemReport], list[RawSample]]] = {
    "FI": read_fi,
    "EmoSet": read_emoset,
    "WebEmo": read_webemo,
    "Abstract": read_abstract,
    "ArtPhoto": read_artphoto,
    "UnbiasedEmo": read_unbiasedemo,
}


def read_dataset(name: str, root: str | os.PathLike[str], report: ProblemReport) -> list[RawSample]:
    """List one dataset's samples (no decoding); problems go to ``report``.

    Raises :class:`LayoutError` when ``root`` (or the one folder inside it) is not the dataset's
    published layout, or a metadata file every label depends on cannot be read as published.
    """
    if name not in ADAPTERS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(ADAPTERS)}")
    # Absolute paths: manifests are read later from other folders (relative paths in a manifest
    # resolve against the manifest's own folder).
    root = Path(root).resolve()
    if not root.is_dir():
        raise LayoutError(f"{name}: root {root} is not a folder")
    return ADAPTERS[name](resolve_root(name, root, report), report)
