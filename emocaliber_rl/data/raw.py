"""Adapters for the six source datasets, each reading a user's local copy in its published layout.

Every adapter lists ``RawSample`` rows (dataset, id, path, canonical label in the dataset's own
label set) and reports, per file, anything it cannot use: unknown label spellings, files that are
not images, listed-but-absent files, ties in vote tables. Decoding and hashing happen later, in a
process pool (:mod:`emocaliber_rl.data.splits`), so adapters stay fast and simple.

Layouts (``ROOT`` is the folder the user passes):

- **FI** (You et al. 2016, the ``emotion_dataset`` zip): ``ROOT/<emotion>/<emotion>_NNNN.jpg``;
  the folder name is the label. Files directly in ``ROOT`` use the name prefix before ``_``.
- **EmoSet** (EmoSet-118K release): ``ROOT/image/<emotion>/*.jpg`` plus ``train.json``,
  ``val.json``, ``test.json`` (lists of ``[emotion, "image/<emotion>/x.jpg", "annotation/..."]``)
  and ``info.json`` (``label2idx``). With the json lists, exactly the listed images are used (the
  union of the three lists: VECBench re-splits); without them, every image under ``image/``.
- **WebEmo** (URL lists ``train25.txt``/``test25.txt``: lines ``URL label_index``; ``category.txt``):
  images downloaded as ccivit/download_webEmo's ``download_dataset.py`` does, into
  ``ROOT/{train,test}/<label_index>/<URL basename>``. The folder index is the label (index order of
  ``category.txt`` when present, else :data:`~emocaliber_rl.taxonomy.WEBEMO_25`); listed URLs with
  no downloaded file are reported as ``not_downloaded``. Lists rewritten to local paths
  (``images/x.jpg 7``, relative to ``ROOT``) are read as well: the path's image, the index's label.
- **Abstract** (Machajdik & Hanbury 2010, ``testImages_abstract``): images plus
  ``ABSTRACT_groundTruth.csv`` (``'Filename','Amusement',...,'Sad'`` vote counts, single-quoted
  names). The label is the unique majority; ties and all-zero rows are reported and left out.
- **ArtPhoto** (``testImages_artphoto``): ``ROOT/**/<emotion>_<n>.jpg`` with spellings such as
  ``sad`` and ``content``.
- **UnbiasedEmo** (Panda et al. 2018): ``ROOT/<emotion>/<object>/*.jpg``; the top folder is the label.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from emocaliber_rl.data.images import IMAGE_SUFFIXES
from emocaliber_rl.data.report import ProblemReport
from emocaliber_rl.taxonomy import WEBEMO_25, UnknownLabelError, canonical_label

# The subtask whose label set is each dataset's own.
NATIVE_SUBTASK: dict[str, str] = {
    "FI": "FI-8",
    "EmoSet": "EmoSet-8",
    "WebEmo": "WebEmo-25",
    "Abstract": "Abstract-8",
    "ArtPhoto": "Artphoto-8",
    "UnbiasedEmo": "UnbiasedEmo-6",
}
# Files that belong to a layout and are not images; anything else non-image is reported.
_METADATA = {"train.json", "val.json", "test.json", "info.json", "category.txt", "train25.txt",
             "test25.txt", "abstract_groundtruth.csv", "readme.txt", "readme.md", "license.txt"}


@dataclass(frozen=True)
class RawSample:
    dataset: str
    id: str
    path: str
    label: str


def _label(dataset: str, word: str) -> str:
    return canonical_label(NATIVE_SUBTASK[dataset], word)


def _files(root: Path, report: ProblemReport, dataset: str, skip: set[str] | None = None) -> list[Path]:
    """Sorted image files under ``root``; other files are reported (metadata files excepted)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root)
        if skip and rel_dir.parts and rel_dir.parts[0] in skip:
            continue
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.suffix.lower() in IMAGE_SUFFIXES:
                out.append(p)
            elif name.lower() not in _METADATA and not name.endswith((".report.jsonl",)):
                report.add(str(root), "not_an_image", "file has no image suffix; ignored",
                           item=str(p.relative_to(root)))
    return out


def _sample(dataset: str, root: Path, path: Path, label: str) -> RawSample:
    rel = path.relative_to(root).as_posix()
    return RawSample(dataset, f"{dataset}/{rel}", str(path), label)


def _try_label(dataset: str, word: str, report: ProblemReport, root: Path, item: str) -> str | None:
    try:
        return _label(dataset, word)
    except UnknownLabelError as e:
        report.add(str(root), "unknown_label", str(e), item=item)
        return None


def read_fi(root: Path, report: ProblemReport) -> list[RawSample]:
    out = []
    for p in _files(root, report, "FI"):
        rel = p.relative_to(root)
        word = rel.parts[0] if len(rel.parts) > 1 else p.stem.split("_")[0]
        label = _try_label("FI", word, report, root, rel.as_posix())
        if label is not None:
            out.append(_sample("FI", root, p, label))
    return out


def read_emoset(root: Path, report: ProblemReport) -> list[RawSample]:
    lists = [root / f"{s}.json" for s in ("train", "val", "test") if (root / f"{s}.json").is_file()]
    if not lists:
        out = []
        for p in _files(root / "image" if (root / "image").is_dir() else root, report, "EmoSet"):
            rel = p.relative_to(root)
            word = rel.parts[-2] if len(rel.parts) > 1 else p.stem.split("_")[0]
            label = _try_label("EmoSet", word, report, root, rel.as_posix())
            if label is not None:
                out.append(_sample("EmoSet", root, p, label))
        return out
    if (root / "info.json").is_file():
        # Check the release's label names once: an unknown one would make every entry fail.
        info = json.loads((root / "info.json").read_text(encoding="utf-8"))
        for word in (info.get("label2idx") or {}):
            _try_label("EmoSet", word, report, root / "info.json", f"label2idx:{word}")
    seen: dict[str, str] = {}
    out = []
    for lst in lists:
        try:
            entries = json.loads(lst.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            report.add(str(lst), "bad_json", f"{e.msg} at line {e.lineno}")
            continue
        for i, entry in enumerate(entries):
            where = f"{lst.name}[{i}]"
            if not (isinstance(entry, list) and len(entry) >= 2):
                report.add(str(lst), "bad_entry", f"expected [emotion, image, annotation], got {entry!r}",
                           item=where)
                continue
            word, rel = str(entry[0]), str(entry[1])
            if rel in seen:
                report.add(str(lst), "duplicate_entry", f"{rel} already listed in {seen[rel]}", item=where)
                continue
            seen[rel] = where
            label = _try_label("EmoSet", word, report, lst, where)
            if label is not None:
                out.append(_sample("EmoSet", root, root / rel, label))
    return out


def _webemo_names(root: Path, report: ProblemReport) -> list[str]:
    cat = root / "category.txt"
    if not cat.is_file():
        return list(WEBEMO_25)
    names = []
    for n, line in enumerate(cat.read_text(encoding="utf-8").splitlines(), start=1):
        m = re.search(r"[A-Za-z]+", line)
        if m:
            try:
                names.append(_label("WebEmo", m.group(0)))
            except UnknownLabelError as e:
                report.add(str(cat), "unknown_label", str(e), line=n)
                names.append("")
    return names


def read_webemo(root: Path, report: ProblemReport) -> list[RawSample]:
    names = _webemo_names(root, report)
    out = []
    found: set[str] = set()
    for split in ("train", "test"):
        if not (root / split).is_dir():
            continue
        for p in _files(root / split, report, "WebEmo"):
            rel = p.relative_to(root)
            found.add(rel.as_posix())
            idx = rel.parts[1] if len(rel.parts) > 2 else ""
            if not idx.isdigit() or int(idx) >= len(names) or not names[int(idx)]:
                report.add(str(root), "unknown_label", f"folder {idx!r} is not a category index "
                           f"0..{len(names) - 1}", item=rel.as_posix())
                continue
            out.append(_sample("WebEmo", root, p, names[int(idx)]))
    for split, lst in (("train", "train25.txt"), ("test", "test25.txt")):
        path = root / lst
        if not path.is_file():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                if line.strip():
                    report.add(str(path), "bad_entry", f"expected 'URL_or_path label_index', got {line!r}",
                               line=n)
                continue
            src, idx = parts[0], int(parts[1])
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
            if idx >= len(names) or not names[idx]:
                report.add(str(path), "unknown_label", f"index {idx} is not a category index "
                           f"0..{len(names) - 1}", line=n, item=rel)
                continue
            p = root / rel
            if not p.is_file():
                report.add(str(path), "missing", f"{rel} is listed but absent", line=n, item=rel)
                continue
            out.append(_sample("WebEmo", root, p, names[idx]))
    return out


def read_abstract(root: Path, report: ProblemReport) -> list[RawSample]:
    csvs = sorted(root.rglob("ABSTRACT_groundTruth.csv"))
    files = _files(root, report, "Abstract")
    if not csvs:
        report.add(str(root), "no_ground_truth", "ABSTRACT_groundTruth.csv not found; no labels")
        return []
    gt = csvs[0]
    by_name = {p.name: p for p in files}
    used: set[str] = set()
    out = []
    with open(gt, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, quotechar="'", skipinitialspace=True))
    header = [h.strip().strip("'\"") for h in rows[0]]
    emotions = header[1:]
    for n, row in enumerate(rows[1:], start=2):
        if not row or not row[0].strip():
            continue
        name = row[0].strip().strip("'\"")
        used.add(name)
        try:
            votes = [int(float(v)) for v in row[1:1 + len(emotions)]]
        except ValueError:
            report.add(str(gt), "bad_entry", f"non-numeric votes {row[1:]!r}", line=n, item=name)
            continue
        top = max(votes) if votes else 0
        winners = [e for e, v in zip(emotions, votes, strict=False) if v == top]
        if top == 0:
            report.add(str(gt), "inconclusive", "no votes", line=n, item=name)
            continue
        if len(winners) > 1:
            report.add(str(gt), "inconclusive", f"tie between {', '.join(winners)} ({top} votes each)",
                       line=n, item=name)
            continue
        label = _try_label("Abstract", winners[0], report, gt, name)
        if label is None:
            continue
        if name not in by_name:
            report.add(str(gt), "missing", f"{name} is in the vote table but not on disk", line=n,
                       item=name)
            continue
        out.append(_sample("Abstract", root, by_name[name], label))
    for name, p in by_name.items():
        if name not in used:
            report.add(str(root), "unlabelled", "image not in ABSTRACT_groundTruth.csv",
                       item=p.relative_to(root).as_posix())
    return out


def read_artphoto(root: Path, report: ProblemReport) -> list[RawSample]:
    out = []
    for p in _files(root, report, "ArtPhoto"):
        word = re.split(r"[_\-\s\d]", p.stem, maxsplit=1)[0]
        label = _try_label("ArtPhoto", word, report, root, p.relative_to(root).as_posix())
        if label is not None:
            out.append(_sample("ArtPhoto", root, p, label))
    return out


def read_unbiasedemo(root: Path, report: ProblemReport) -> list[RawSample]:
    out = []
    for p in _files(root, report, "UnbiasedEmo"):
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
    """List one dataset's samples (no decoding); problems go to ``report``."""
    if name not in ADAPTERS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(ADAPTERS)}")
    # Absolute paths: manifests are read later from other folders (relative paths in a manifest
    # resolve against the manifest's own folder).
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{name} root {root} is not a folder")
    return ADAPTERS[name](root, report)
