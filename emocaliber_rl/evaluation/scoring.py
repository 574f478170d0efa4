"""Prediction rows -> the score JSON (``emocaliber eval score``).

Input: JSON lines, one per test sample, with at least ``subtask`` (``task`` is accepted for files
written before the field was renamed), ``label`` (``ground_truth`` is accepted for the official
release's files), ``candidates`` and ``response``; optionally
``conf_verb``, ``conf_ans``, ``conf_avg``. Without a ``conf_verb`` key the verbalised confidence is
parsed from the response's ``<confidence>``.

Output (all metric values are fractions in [0, 1]; ``null`` = undefined or not available)::

    {"tasks":  {TASK:  {"acc", "macro_f1", "weighted_f1", "n", "parsed", "n_unparsed", "group",
                        "calibration": {SOURCE: CAL}}},
     "groups": {GROUP: {"acc", "macro_f1", "weighted_f1", "pooled_weighted_f1", "n", "parsed",
                        "tasks", SOURCE: CAL + {"auc_within", "auc_within_n"}}},
     "average": {"acc", "macro_f1", "weighted_f1"},
     "meta":   {..., "n_dropped", "dropped", "ece_binning"}}
    CAL = {"ece", "brier", "auc", "aucc", "mean_conf", "acc", "conf_parsed", "n_conf",
           "n_missing_conf", "n_used"}

Group ``acc`` / ``macro_f1`` / ``weighted_f1`` are means over the group's tasks (the paper's
"Average" columns; the paper's F1 columns are weighted-F1, see ``docs/correctness-and-presets.md``);
group calibration metrics pool the group's samples (as the official script does), and CAL's
``acc`` is the accuracy of the samples they used (the official script's group "Acc");
``pooled_weighted_f1`` is the weighted F1 of the group's pooled samples (its group "F1").
A group's ``auc_within`` is the mean of its tasks' own ``auc`` (tasks where it is undefined left
out; ``auc_within_n`` counts those averaged): the pooled ``auc`` is high for a confidence that only
knows the subtask, ``auc_within`` is 0.5 for it.
``average`` is the mean of the group averages (the paper's Tables 7-9). SOURCE is ``verb`` always,
``ans`` / ``avg`` when any row carries ``conf_ans`` / ``conf_avg``.

``parse="official"`` runs the release's whole pipeline (``inference/extract_verb_confidence.py``
then ``inference/evaluate_multi_task_conf_from_merged.py``): the verbalised confidence is the
first single-line ``<confidence>`` read by ``float()`` and clipped to [0, 1] (``conf_verb`` keys
are ignored); a row whose confidence ``float()`` rejects is dropped, as the release's
``except Exception: continue`` drops it, and counted in ``meta.n_dropped`` / ``meta.dropped``;
predictions follow the first-substring rule; ECE uses the release's binning
(:func:`metrics.expected_calibration_error_official`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emocaliber_rl.data.rows import row_error, row_subtask, validate_row
from emocaliber_rl.evaluation import metrics
from emocaliber_rl.evaluation.parsing import (
    PARSE_MODES,
    NotAFloat,
    allowed_labels,
    canonical_or_none,
    extractor_name,
    official_candidate,
    official_confidence,
    parse_confidence,
    parse_prediction,
    valid_confidence,
)
from emocaliber_rl.jsonl import InputFileError, read_jsonl, write_jsonl
from emocaliber_rl.taxonomy import (
    GROUPS,
    SUBTASKS,
    UnknownLabelError,
    UnknownSubtaskError,
    canonical_label,
    get_subtask,
)
from reward_fns.emocaliber import extract_confidence_number

CONF_SOURCES: tuple[str, ...] = ("verb", "ans", "avg")
MISSING_CONF_POLICIES: tuple[str, ...] = ("exclude", "zero", "half")
# What a missing confidence becomes under each policy (None: the sample leaves the calibration
# metrics; its prediction still counts for accuracy and F1).
_MISSING_VALUE: dict[str, float | None] = {"exclude": None, "zero": 0.0, "half": 0.5}
SCHEMA_VERSION = 1
# meta.dropped lists this many rows at most (meta.n_dropped counts them all)
_MAX_DROPPED_LISTED = 100


class PredictionFileError(InputFileError):
    """A bad input row; the message names the file, the line and the field."""


@dataclass
class Samples:
    """Per-sample parsed predictions, column-wise.

    ``pred`` holds the canonical predicted label or ``None`` (unparsed); ``conf[source]`` holds the
    confidence or ``nan`` where it was missing / unparseable.
    """

    subtask: np.ndarray
    label: np.ndarray
    pred: np.ndarray
    conf: dict[str, np.ndarray]
    parse: str = "strict"
    source_path: str | None = None
    extractor: str = field(default_factory=extractor_name)
    n_duplicates_dropped: int = 0
    # rows left out under parse="official" (confidence not a float): {"line", "subtask", "detail"}
    dropped: list[dict[str, Any]] = field(default_factory=list)
    # parse="official": ground truth and prediction as the release's F1 sees them (lower-cased
    # raw spellings, "unknown"), so that a task spelling one label two ways scores as there
    f1_label: np.ndarray | None = None
    f1_pred: np.ndarray | None = None
    # each sample's input id (None where the row has none) and line, so a samples row traces back
    ids: np.ndarray | None = None
    lines: np.ndarray | None = None
    # per source, True where the row states a confidence outside [0, 1] (1.5, 150%): unusable like
    # a missing one (nan in ``conf``), but reported as what it is
    out_of_range: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.subtask.size)

    @property
    def correct(self) -> np.ndarray:
        """1.0 where the parsed prediction equals the label (an unparsed one never does)."""
        return (self.pred == self.label).astype(np.float64)

    @property
    def group(self) -> np.ndarray:
        return np.array([SUBTASKS[t].group for t in self.subtask.tolist()], dtype=object)

    def to_rows(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per sample (what ``--samples`` writes and ``eval report`` reads)."""
        groups = self.group.tolist()
        correct = self.correct.tolist()
        out = []
        ids = self.ids.tolist() if self.ids is not None else None
        lines = self.lines.tolist() if self.lines is not None else None
        for i, (t, lab, p) in enumerate(zip(self.subtask.tolist(), self.label.tolist(), self.pred.tolist())):
            row: dict[str, Any] = {}
            if ids is not None:
                row["id"] = ids[i]
            if lines is not None:
                row["line"] = lines[i]
            row.update(subtask=t, group=groups[i], label=lab, pred=p, correct=bool(correct[i]))
            for src, arr in self.conf.items():
                v = float(arr[i])
                row[f"conf_{src}"] = None if math.isnan(v) else v
            bad = [src for src, mask in self.out_of_range.items() if mask[i]]
            if bad:  # which null confidences were stated out of range (read back by read_samples)
                row["conf_out_of_range"] = bad
            out.append(row)
        return out


def _err(path: str, lineno: int, fld: str | None, msg: str, row_id: Any = None) -> PredictionFileError:
    """The row schema's error line (data/rows.py): file, line, field and, where known, the row's id."""
    return row_error(path, lineno, row_id, fld, msg, PredictionFileError)


def _conf_field(row: Mapping[str, Any], key: str, path: str, lineno: int) -> tuple[float, bool]:
    """``(confidence or nan, stated but out of range)`` of a ``conf_*`` field."""
    value = row[key]
    if value is None:
        return math.nan, False
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _err(path, lineno, key, f"expected a number or null, got {value!r}", row.get("id"))
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            raise _err(path, lineno, key, f"expected a number or null, got {value!r}", row.get("id")) from None
    # a number outside [0, 1] is unusable, counted and reported as out of range, not an error
    v = valid_confidence(value)
    if v is None:
        return math.nan, math.isfinite(float(value))
    return v, False


def _verb_confidence(response: str) -> tuple[float, bool]:
    """``(confidence or nan, stated but out of range)`` of a response's ``<confidence>`` block."""
    c = parse_confidence(response)
    if c is not None:
        return c, False
    stated = extract_confidence_number(response)
    return math.nan, stated is not None


def samples_from_rows(
    rows: Iterable[tuple[int, Any]], *, parse: str = "strict", path: str = "<rows>"
) -> Samples:
    """Validate and parse ``(line_number, row)`` pairs into :class:`Samples`.

    Raises:
        PredictionFileError: on a row that is not an object, lacks a field, or names an unknown
            subtask, label or candidate; the message gives ``path:line: field 'x': problem`` (the
            row's checks are :func:`~emocaliber_rl.data.rows.validate_row`'s; an old file's ``task``
            is read as ``subtask``).
    """
    if parse not in PARSE_MODES:
        raise ValueError(f"unknown parse mode {parse!r}; choose from {', '.join(PARSE_MODES)}")
    tasks: list[str] = []
    labels: list[str] = []
    preds: list[str | None] = []
    conf: dict[str, list[float]] = {s: [] for s in CONF_SOURCES}
    seen_key = {s: False for s in CONF_SOURCES}
    dropped: list[dict[str, Any]] = []
    raw_labels: list[str] = []
    raw_preds: list[str] = []
    ids: list[Any] = []
    lines: list[int] = []
    out_of_range: dict[str, list[bool]] = {s: [] for s in CONF_SOURCES}
    for lineno, row in rows:
        # the official release's test file names the label `ground_truth`
        label_key = "ground_truth" if isinstance(row, dict) and "label" not in row and "ground_truth" in row \
            else "label"
        # the one row validator: an object, a known subtask (an old file's `task` read as one), a
        # label of it; ids are optional in a predictions file
        validate_row(row, path=path, line=lineno, required=(), label_key=label_key, error=PredictionFileError)
        task = row["subtask"]
        label = canonical_or_none(task, row[label_key]) or canonical_label(task, row[label_key])
        cands = row.get("candidates")
        if "candidates" not in row:
            raise _err(path, lineno, "candidates", "missing", row.get("id"))
        if not isinstance(cands, list) or not cands or not all(isinstance(c, str) for c in cands):
            raise _err(path, lineno, "candidates", f"expected a non-empty list of strings, got {cands!r}", row.get("id"))
        try:
            allowed = allowed_labels(task, cands)  # cached: one check per distinct candidate list
        except UnknownLabelError as e:
            raise _err(path, lineno, "candidates", str(e), row.get("id")) from None
        if label not in allowed:
            # the answer could never be right: a data bug, not a model error to count silently
            raise _err(path, lineno, label_key, f"label {label!r} is not among the row's candidates "
                                                f"{cands!r}", row.get("id"))
        if "response" not in row:
            raise _err(path, lineno, "response", "missing", row.get("id"))
        response = row["response"]
        if not isinstance(response, str):
            raise _err(path, lineno, "response", f"expected a string, got {response!r}", row.get("id"))
        official_verb: float | None = None
        if parse == "official":
            try:
                official_verb = official_confidence(response)
            except NotAFloat as e:
                dropped.append({"line": lineno, "subtask": task, "detail": str(e)})
                continue
        tasks.append(task)
        ids.append(row.get("id"))
        lines.append(lineno)
        labels.append(label)
        preds.append(parse_prediction(response, task, cands, mode=parse, ground_truth=row[label_key]))
        if parse == "official":
            cand = official_candidate(response, cands)
            raw_labels.append(row[label_key].lower())
            raw_preds.append("unknown" if cand is None else cand.lower())
        for src in CONF_SOURCES:
            key = f"conf_{src}"
            if src == "verb" and parse == "official":
                # the release clips to [0, 1]; a NaN ("nan" parses) would make its Brier NaN and
                # is counted missing here
                v, bad = (math.nan if official_verb is None else min(max(official_verb, 0.0), 1.0)), False
            elif key in row:
                seen_key[src] = True
                v, bad = _conf_field(row, key, path, lineno)
            elif src == "verb":
                v, bad = _verb_confidence(response)
            else:
                v, bad = math.nan, False
            conf[src].append(v)
            out_of_range[src].append(bad)
    if not tasks:
        why = f" ({len(dropped)} dropped: confidence not a float)" if dropped else ""
        raise PredictionFileError(f"{path}: no prediction rows{why}")
    sources = [s for s in CONF_SOURCES if s == "verb" or seen_key[s]]
    return Samples(
        subtask=np.array(tasks, dtype=object),
        label=np.array(labels, dtype=object),
        pred=np.array(preds, dtype=object),
        conf={s: np.array(conf[s], dtype=np.float64) for s in sources},
        parse=parse,
        source_path=path,
        dropped=dropped,
        f1_label=np.array(raw_labels, dtype=object) if parse == "official" else None,
        f1_pred=np.array(raw_preds, dtype=object) if parse == "official" else None,
        ids=np.array(ids, dtype=object),
        lines=np.array(lines, dtype=np.int64),
        out_of_range={s: np.array(out_of_range[s], dtype=bool) for s in sources},
    )


DUPLICATE_POLICIES: tuple[str, ...] = ("error", "first")


def _checked_rows(path: str | Path, duplicates: str, dropped: list[int]) -> Iterable[tuple[int, Any]]:
    """The file's rows, refusing a mix of runs (``run_id``) and handling repeated ``id``s:
    ``error`` refuses them, ``first`` keeps the first and counts the rest into ``dropped``."""
    from emocaliber_rl.run_manifest import check_single_run

    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"unknown duplicates policy {duplicates!r}; choose from {DUPLICATE_POLICIES}")
    seen: dict[str, int] = {}
    try:
        for n, row in check_single_run(read_jsonl(path, objects=False), str(path)):
            rid = row.get("id") if isinstance(row, dict) else None
            if rid is not None:
                if str(rid) in seen:
                    if duplicates == "error":
                        raise _err(str(path), n, "id", f"{rid!r} already at line {seen[str(rid)]}: "
                                   "a sample counted twice (--duplicates first keeps the first)")
                    dropped.append(n)
                    continue
                seen[str(rid)] = n
            yield n, row
    except InputFileError as e:
        if isinstance(e, PredictionFileError):
            raise
        raise PredictionFileError(str(e)) from None


def read_predictions(path: str | Path, *, parse: str = "strict", duplicates: str = "error") -> Samples:
    """Read a predictions JSONL file (see the module docstring) into :class:`Samples`.

    Refuses a file whose rows carry different ``run_id``s (two runs mixed) and, unless
    ``duplicates="first"``, one that repeats an ``id``; ``Samples.n_duplicates_dropped`` counts
    the repeats left out under ``first``.
    """
    dropped: list[int] = []
    samples = samples_from_rows(_checked_rows(path, duplicates, dropped), parse=parse, path=str(path))
    samples.n_duplicates_dropped = len(dropped)
    # absolute, so that `eval report` finds the predictions from any working directory
    samples.source_path = str(Path(path).resolve())
    return samples


def write_samples(samples: Samples, path: str | Path) -> None:
    """Write one JSON line per sample: id and line of its input row, task, group, label, pred (null =
    unparsed), correct, conf_* (and conf_out_of_range: the sources whose null was stated outside
    [0, 1])."""
    write_jsonl(path, samples.to_rows(), sort_keys=False)


def read_samples(path: str | Path) -> Samples:
    """Read a file written by :func:`write_samples`, or a predictions file (parsed ``strict``)."""
    from emocaliber_rl.run_manifest import check_single_run

    try:
        rows = list(check_single_run(read_jsonl(path, objects=False), str(path)))
    except InputFileError as e:
        raise PredictionFileError(str(e)) from None
    if not rows:
        raise PredictionFileError(f"{path}: no rows")
    if isinstance(rows[0][1], dict) and "response" in rows[0][1]:
        return samples_from_rows(rows, path=str(path))
    sources = [s for s in CONF_SOURCES if f"conf_{s}" in rows[0][1]]
    try:
        return Samples(
            subtask=np.array([get_subtask(str(row_subtask(r))).name for _, r in rows], dtype=object),  # old: `task`
            label=np.array([r["label"] for _, r in rows], dtype=object),
            pred=np.array([r["pred"] for _, r in rows], dtype=object),
            conf={s: np.array([math.nan if r[f"conf_{s}"] is None else r[f"conf_{s}"]
                               for _, r in rows], dtype=np.float64) for s in sources},
            parse="(from samples file)",
            source_path=str(path),
            ids=np.array([r.get("id") for _, r in rows], dtype=object) if "id" in rows[0][1] else None,
            lines=np.array([r.get("line") for _, r in rows], dtype=object) if "line" in rows[0][1] else None,
            out_of_range={s: np.array([s in (r.get("conf_out_of_range") or ()) for _, r in rows], dtype=bool)
                          for s in sources},
        )
    except (KeyError, TypeError, UnknownSubtaskError) as e:
        raise PredictionFileError(f"{path}: not a samples file ({e})") from None


def _num(x: float) -> float | None:
    """JSON value of a metric: ``None`` for undefined (NaN)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def apply_missing_conf(conf: np.ndarray, policy: str) -> tuple[np.ndarray, np.ndarray]:
    """Which samples enter the calibration metrics, and with what confidence, under ``policy``.

    Returns ``(mask, filled)``: ``exclude`` keeps only samples with a confidence; ``zero`` / ``half``
    keep all, a missing confidence standing for 0.0 / 0.5 (``zero`` reads "no confidence stated"
    as "no confidence", penalising a model that omits it; ``half`` as "undecided").
    """
    if policy not in _MISSING_VALUE:
        raise ValueError(f"unknown missing-conf policy {policy!r}; choose from "
                         f"{', '.join(MISSING_CONF_POLICIES)}")
    missing = np.isnan(conf)
    fill = _MISSING_VALUE[policy]
    if fill is None:
        return ~missing, conf
    return np.ones(conf.size, dtype=bool), np.where(missing, fill, conf)


ECE_BINNINGS: dict[str, Any] = {
    "last-bin-closed": metrics.expected_calibration_error,
    "official": metrics.expected_calibration_error_official,
}


def calibration_summary(
    conf: np.ndarray, correct: np.ndarray, *, missing_conf: str = "exclude", n_bins: int = 10,
    ece_binning: str = "last-bin-closed", subtasks: np.ndarray | None = None,
) -> dict[str, Any]:
    """Calibration metrics of one sample set for one confidence source (``nan`` = missing).

    With ``subtasks`` (each sample's subtask: a group's samples) it adds ``auc_within``, the mean
    of the subtasks' own AUCs, and ``auc_within_n``, how many subtasks had one to average.
    """
    n = int(conf.size)
    n_missing = int(np.isnan(conf).sum())
    mask, filled = apply_missing_conf(conf, missing_conf)
    c, y = filled[mask], correct[mask]
    out: dict[str, Any] = {
        "ece": _num(ECE_BINNINGS[ece_binning](c, y, n_bins)),
        "brier": _num(metrics.brier_score(c, y)),
        "auc": _num(metrics.roc_auc(c, y)),
        "aucc": _num(metrics.area_under_accuracy_coverage(c, y)),
        "mean_conf": _num(metrics.mean_confidence(c)),
        "acc": _num(float(np.mean(y)) if y.size else math.nan),
        "conf_parsed": _num((n - n_missing) / n if n else math.nan),
        "n_conf": n - n_missing,
        "n_missing_conf": n_missing,
        "n_used": int(mask.sum()),
    }
    if subtasks is not None:
        # the pooled AUC also credits a confidence that only knows the subtask (high on an easy
        # one, low on a hard one); averaging each subtask's own AUC leaves only per-image knowledge
        auc_within, n_within = metrics.within_group_auc(c, y, subtasks[mask])
        out["auc_within"] = _num(auc_within)
        out["auc_within_n"] = n_within
    return out


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals and len(vals) == len(values) else None


def _weighted_f1(samples: Samples, idx: np.ndarray, labels: list[str]) -> float:
    if samples.f1_label is not None and samples.f1_pred is not None:
        y = samples.f1_label[idx]
        # sklearn's inferred labels; an "unknown" prediction has no support and weighs nothing
        return metrics.weighted_f1(y, samples.f1_pred[idx], list(dict.fromkeys(y.tolist())))
    return metrics.weighted_f1(samples.label[idx], samples.pred[idx], labels)


def score_samples(
    samples: Samples, *, missing_conf: str = "exclude", n_bins: int = 10
) -> dict[str, Any]:
    """The score JSON (module docstring) of parsed samples."""
    if missing_conf not in MISSING_CONF_POLICIES:
        raise ValueError(f"unknown missing-conf policy {missing_conf!r}; choose from "
                         f"{', '.join(MISSING_CONF_POLICIES)}")
    correct = samples.correct
    binning = "official" if samples.parse == "official" else "last-bin-closed"
    task_arr = samples.subtask
    group_arr = samples.group
    present = set(task_arr.tolist())
    tasks_out: dict[str, Any] = {}
    for name in SUBTASKS:  # taxonomy order, so outputs are stable whatever the row order
        if name not in present:
            continue
        idx = np.flatnonzero(task_arr == name)
        st = SUBTASKS[name]
        y, p = samples.label[idx], samples.pred[idx]
        n_unparsed = int(sum(v is None for v in p.tolist()))
        tasks_out[name] = {
            "acc": _num(metrics.accuracy(y, p)),
            "macro_f1": _num(metrics.macro_f1(y, p, st.labels)),
            "weighted_f1": _num(_weighted_f1(samples, idx, list(st.labels))),
            "n": int(idx.size),
            "parsed": (idx.size - n_unparsed) / idx.size,
            "n_unparsed": n_unparsed,
            "group": st.group,
            "calibration": {
                src: calibration_summary(arr[idx], correct[idx], missing_conf=missing_conf,
                                         n_bins=n_bins, ece_binning=binning)
                for src, arr in samples.conf.items()
            },
        }
    groups_out: dict[str, Any] = {}
    for group in GROUPS:
        members = [t for t in tasks_out if SUBTASKS[t].group == group]
        if not members:
            continue
        idx = np.flatnonzero(group_arr == group)
        n_parsed = sum(tasks_out[t]["n"] - tasks_out[t]["n_unparsed"] for t in members)
        group_labels = list(dict.fromkeys(lab for t in members for lab in SUBTASKS[t].labels))
        entry: dict[str, Any] = {
            "acc": _mean([tasks_out[t]["acc"] for t in members]),
            "macro_f1": _mean([tasks_out[t]["macro_f1"] for t in members]),
            "weighted_f1": _mean([tasks_out[t]["weighted_f1"] for t in members]),
            "pooled_weighted_f1": _num(_weighted_f1(samples, idx, group_labels)),
            "n": int(idx.size),
            "parsed": n_parsed / idx.size,
            "tasks": members,
        }
        for src, arr in samples.conf.items():
            entry[src] = calibration_summary(arr[idx], correct[idx], missing_conf=missing_conf,
                                             n_bins=n_bins, ece_binning=binning, subtasks=task_arr[idx])
            if src in samples.out_of_range:
                # of n_missing_conf, how many stated a value outside [0, 1] (the rest stated none)
                entry[src]["n_out_of_range"] = int(samples.out_of_range[src][idx].sum())
        groups_out[group] = entry
    return {
        "tasks": tasks_out,
        "groups": groups_out,
        "average": {
            "acc": _mean([g["acc"] for g in groups_out.values()]),
            "macro_f1": _mean([g["macro_f1"] for g in groups_out.values()]),
            "weighted_f1": _mean([g["weighted_f1"] for g in groups_out.values()]),
        },
        "meta": {
            "schema_version": SCHEMA_VERSION,
            "input": samples.source_path,
            "parse": samples.parse,
            "extractor": samples.extractor,
            "missing_conf": missing_conf,
            "n_bins": n_bins,
            "ece_binning": binning,
            "n": len(samples),
            "n_dropped": len(samples.dropped),
            "dropped": samples.dropped[:_MAX_DROPPED_LISTED],
            "sources": list(samples.conf),
            "units": "fractions in [0, 1]",
        },
    }


def score_file(
    path: str | Path, *, parse: str = "strict", missing_conf: str = "exclude", n_bins: int = 10,
    duplicates: str = "error",
) -> tuple[dict[str, Any], Samples]:
    """Read, parse and score a predictions file; returns ``(score_json, samples)``."""
    samples = read_predictions(path, parse=parse, duplicates=duplicates)
    scores = score_samples(samples, missing_conf=missing_conf, n_bins=n_bins)
    scores["meta"]["n_duplicates_dropped"] = samples.n_duplicates_dropped
    return scores, samples


def problems(scores: Mapping[str, Any]) -> list[str]:
    """Human-readable lines about unparsed answers and missing confidences (for stderr)."""
    out = []
    meta = scores.get("meta", {})
    policy = meta.get("missing_conf", "?")
    if meta.get("n_dropped"):
        lines = ", ".join(str(d["line"]) for d in meta.get("dropped", [])[:10])
        more = ", ..." if meta["n_dropped"] > 10 else ""
        out.append(f"{meta['n_dropped']} rows dropped, as the official pipeline drops them: their "
                   f"first <confidence> is not a float (lines {lines}{more}; meta.dropped)")
    for name, t in scores["tasks"].items():
        if t["n_unparsed"]:
            out.append(f"{name}: {t['n_unparsed']}/{t['n']} answers unparsed (counted as wrong)")
    for name, g in scores["groups"].items():
        for src in CONF_SOURCES:
            cal = g.get(src)
            if not cal or not cal["n_missing_conf"]:
                continue
            how = ("left out of" if policy == "exclude" else
                   f"set to {_MISSING_VALUE[policy]} in")
            bad = cal.get("n_out_of_range", 0)
            missing = cal["n_missing_conf"] - bad
            if missing:
                out.append(f"{name}: {src} confidence missing for {missing}/{g['n']} "
                           f"samples ({how} the calibration metrics: --missing-conf {policy})")
            if bad:
                out.append(f"{name}: {src} confidence out of range (not in [0, 1]) for {bad}/{g['n']} "
                           f"samples ({how} the calibration metrics like a missing one: "
                           f"--missing-conf {policy})")
    return out
