"""Loader for a user-supplied NRC VAD lexicon (Mohammad 2018; v2.1 2025).

The lexicon's licence forbids redistribution, so this project never ships it: the user downloads
it from https://saifmohammad.com/WebPages/nrc-vad.html and passes its path with ``--lexicon`` or
the ``EMOCALIBER_VAD_LEXICON`` environment variable. Only ``emocaliber loops build`` reads it; the
loops it derives are shipped as package data, so nothing needs the lexicon at run time.

Two formats are recognised by their header line (tab-separated, four columns):

* v1 (``NRC-VAD-Lexicon.txt``): ``Word  Valence  Arousal  Dominance``, values in [0, 1].
* v2.1 (``NRC-VAD-Lexicon-v2.1.txt``): ``term  valence  arousal  dominance``, values in [-1, 1].
  They are rescaled with ``(x + 1) / 2`` so that both versions live in the same [0, 1]^3 cube:
  the rescaling is affine and equal on every axis, so it divides every Euclidean distance by 2
  and leaves the optimal loops and the normalised perimeter distances unchanged.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from emocaliber_rl.taxonomy import ALIASES

ENV_VAR = "EMOCALIBER_VAD_LEXICON"
HOME_PAGE = "https://saifmohammad.com/WebPages/nrc-vad.html"

VAD = tuple[float, float, float]

# header (lower case) -> (version, lowest allowed value, highest allowed value)
_FORMATS: dict[tuple[str, ...], tuple[str, float, float]] = {
    ("word", "valence", "arousal", "dominance"): ("v1", 0.0, 1.0),
    ("term", "valence", "arousal", "dominance"): ("v2.1", -1.0, 1.0),
}
_FIELDS = ("valence", "arousal", "dominance")


class LexiconError(ValueError):
    """The lexicon file is missing, unreadable or malformed (the message names file and line)."""


class MissingWordsError(LexiconError):
    """Category words (and all their alias spellings) that the lexicon does not contain."""

    def __init__(self, path: Path, missing: dict[str, tuple[str, ...]]) -> None:
        self.missing = missing
        lines = [
            f"  {label} (tried: {', '.join(tried)})" for label, tried in sorted(missing.items())
        ]
        super().__init__(
            f"{path}: {len(missing)} category word(s) missing from the VAD lexicon:\n"
            + "\n".join(lines)
        )


@dataclass(frozen=True)
class VADLexicon:
    """Word -> (valence, arousal, dominance) in [0, 1], plus where it came from."""

    path: Path
    version: str  # "v1" or "v2.1"
    entries: dict[str, VAD]

    def __len__(self) -> int:
        return len(self.entries)

    def spellings(self, label: str) -> tuple[str, ...]:
        """Spellings tried for a category word: itself, then its taxonomy aliases.

        The aliases come from ``taxonomy.ALIASES`` (alias -> canonical), e.g. ``enthrallment``
        is absent from NRC VAD v1 but its alias ``enthralled`` is present.
        """
        return (label, *(alias for alias, target in ALIASES.items() if target == label))

    def lookup(self, label: str) -> tuple[str, VAD] | None:
        """The first spelling of ``label`` found in the lexicon and its VAD, or None."""
        for word in self.spellings(label):
            if word in self.entries:
                return word, self.entries[word]
        return None

    def vectors(self, labels: list[str] | tuple[str, ...]) -> dict[str, tuple[str, VAD]]:
        """label -> (lexicon word used, VAD) for every label.

        Raises:
            MissingWordsError: listing every label none of whose spellings is in the lexicon.
        """
        found: dict[str, tuple[str, VAD]] = {}
        missing: dict[str, tuple[str, ...]] = {}
        for label in labels:
            hit = self.lookup(label)
            if hit is None:
                missing[label] = self.spellings(label)
            else:
                found[label] = hit
        if missing:
            raise MissingWordsError(self.path, missing)
        return found


def resolve_lexicon_path(flag: str | os.PathLike[str] | None) -> Path:
    """The lexicon path: the ``--lexicon`` flag if given, else ``$EMOCALIBER_VAD_LEXICON``."""
    value = os.fspath(flag) if flag else os.environ.get(ENV_VAR, "")
    if not value:
        raise LexiconError(
            f"no NRC VAD lexicon given: pass --lexicon FILE or set {ENV_VAR}. The lexicon may not "
            f"be redistributed, so it is not shipped; download it from {HOME_PAGE}"
        )
    return Path(value).expanduser()


def _parse_value(path: Path, lineno: int, field: str, text: str, lo: float, hi: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LexiconError(
            f"{path}:{lineno}: field {field!r} is not a number: {text!r}"
        ) from None
    # float() accepts 'nan' and 'inf'; a lexicon never holds them and they would poison every
    # distance, so they are errors like any out-of-range value.
    if not math.isfinite(value) or not lo <= value <= hi:
        raise LexiconError(
            f"{path}:{lineno}: field {field!r} = {text!r} is outside [{lo:g}, {hi:g}]"
        )
    return value


def load_lexicon(path: str | os.PathLike[str]) -> VADLexicon:
    """Read an NRC VAD lexicon (v1 or v2.1, detected from the header) into the [0, 1] space.

    Words are lower-cased; blank lines are skipped; when a word occurs twice the first line wins.

    Raises:
        LexiconError: the file is missing or unreadable, the header is not one of the two known
            formats, or a line does not have four tab-separated fields with numbers in range
            (the message names file, line and field).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LexiconError(
            f"cannot read VAD lexicon {path}: {exc.strerror or exc}; download it from {HOME_PAGE}"
        ) from None
    lines = raw.splitlines()
    if not lines:
        raise LexiconError(f"{path}: empty file, expected an NRC VAD lexicon")

    def decode(lineno: int, data: bytes) -> str:
        try:
            # utf-8-sig on line 1 drops a byte-order mark some editors add.
            return data.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise LexiconError(f"{path}:{lineno}: not UTF-8 text ({exc.reason})") from None

    header = tuple(f.strip().lower() for f in decode(1, lines[0]).split("\t"))
    if header not in _FORMATS:
        known = " | ".join("\\t".join(h) for h in _FORMATS)
        raise LexiconError(
            f"{path}:1: unrecognised header {decode(1, lines[0])!r}; expected one of: {known} "
            "(NRC VAD v1 or v2.1, tab-separated)"
        )
    version, lo, hi = _FORMATS[header]
    entries: dict[str, VAD] = {}
    for lineno, data in enumerate(lines[1:], start=2):
        text = decode(lineno, data)
        if not text.strip():
            continue
        fields = text.split("\t")
        if len(fields) != 4:
            raise LexiconError(
                f"{path}:{lineno}: expected 4 tab-separated fields (word, valence, arousal, "
                f"dominance), got {len(fields)}: {text!r}"
            )
        word = fields[0].strip().lower()
        if not word:
            raise LexiconError(f"{path}:{lineno}: field 'word' is empty")
        values = [
            _parse_value(path, lineno, name, f.strip(), lo, hi)
            for name, f in zip(_FIELDS, fields[1:], strict=True)
        ]
        if version == "v2.1":
            values = [(v + 1.0) / 2.0 for v in values]
        entries.setdefault(word, (values[0], values[1], values[2]))
    return VADLexicon(path=path, version=version, entries=entries)
