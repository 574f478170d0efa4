"""Stage 2 (paper section 3.2): the scaffold model answers the VEC-CoT-2 prompts, and each answer
gets a confidence target by Eq. 2, appended as ``<confidence>c</confidence>``.

Generation (:func:`generate_stage2`, ``emocaliber stage2 generate``) reads the prompt set written
by ``emocaliber export prompts2`` (jsonl or parquet rows: id, subtask, image, label, candidates,
messages) and writes one resumable jsonl line per prompt: the response, its token ids and the
log-probability of every sampled token.

Labelling (:func:`label_generations`, ``emocaliber stage2 label``), Eq. 2::

    c* = 0.5 * (1 + p)   if e == e*        (in [0.5, 1])
    c* = 0.5 - d * p     otherwise         (in [0, 0.5], since d in [0, 0.5] and p in [0, 1])

with ``e`` the label named inside ``<answer>`` (the reward's I(e), ``reward_fns.emocaliber.answer_label``:
exactly one of the row's candidate labels, aliases and a short sentence allowed), ``e*`` the annotated label, ``p`` the mean probability
of the response's tokens and ``d`` the normalised distance on the subtask's emotion loop
(:func:`emocaliber_rl.loops.distance`). ``c*`` is rounded half-up to two decimals. The result is a
veRL SFT parquet in the stage-1 schema (``emocaliber_rl.data.exports.sft_schema``).

Where ``p`` comes from is an option, ``p_source`` (``stage2 label --p-source``):

* ``"mean"`` (the default): **the paper's Eq. 2**, ``p`` = the mean probability of every token of
  the response (:func:`~emocaliber_rl.inference.probs.mean_token_prob`, the evaluation's Avg).
* ``"answer"``: **this project's named alternative, not the paper's Eq. 2**: ``p`` = the
  probability of the first decisive answer token, the token that writes the first character inside
  the last ``<answer>`` (:func:`~emocaliber_rl.inference.probs.answer_token_prob`, the evaluation's
  Ans). Why: on data whose reasoning tokens are forced (the CPU demo's), the mean is ~0.98 for every
  image and the targets say nothing about the model's own uncertainty; the answer token's
  probability is that uncertainty. It needs the model's tokenizer (``stage2 label --tokenizer``) and
  each row's ``token_ids``; a row whose answer token cannot be located (its ``token_ids`` do not
  decode to its response, e.g. another model's tokenizer) is a ``no_answer_token`` reject.

What the target is, is a second option, ``target`` (``stage2 label --target``):

* ``"eq2"`` (the default): Eq. 2 above, per row.
* ``"binned"``: **this project's named alternative, not the paper's**: ``c*`` = the accuracy of the
  labelled rows of the same subtask (the prompt names it) whose p falls in the same bin, the bins
  holding ``bin_rows`` rows each in order of p (histogram binning, Zadrozny & Elkan 2001), pooled
  where a higher-p bin is less accurate until the map rises with p (pool-adjacent-violators, so
  the map is isotonic). ``c*`` estimates P(correct | subtask, p): every row of a bin gets the same
  value. An answer that names no candidate (or several) is a wrong row here, not a reject: it is
  the very answer a confidence must learn to doubt (Eq. 2 has no loop distance for it).
  Why: Eq. 2 splits the targets by the sampled answer's correctness (``>= 0.5`` right, ``< 0.5``
  wrong), a coin the model cannot see, so a model that can only estimate its odds learns a mixture
  of two target clusters, and greedy decoding writes the digits of the larger cluster, one value
  for every image (docs/demo-world.md, "Stage 2's target"). A target that is a function of what
  the model has (its own answer probability) can be said back.

Which rows share bins is a third option, ``bin_by`` (``stage2 label --bin-by``), for ``"binned"``:

* ``"subtask"`` (the default): the rows of one subtask.
* ``"prompt"``: the rows whose prompt offers the same candidate labels (FI-8 and EmoSet-8 ask the same
  eight; FI-2 and WebEmo-2 the same two). A model can only say back what its input tells apart: two
  subtasks behind one prompt with two targets teach it a mixture, and greedy decoding writes one of
  them for both.
* ``"answer"``: the rows of one prompt that **answered the same label**. The confidence is written
  after the answer, so the answer is in the model's context: P(correct | prompt, answered label) is
  the precision of that answer, a number the model can look up rather than compute. Each group's
  bins are shrunk toward the accuracy of its prompt's rows by ``prior_rows`` pseudo-rows
  (``(right + m*a)/(rows + m)``), so an answer seen twice does not get 0.00 or 1.00. Measured on the
  demo's scaffold, offline (docs/demo-world.md, "Stage 2's target"): on its test answers the precision
  of the same label among its 240 stage-2 answers separates right from wrong within a subtask (AUC
  0.74 on ID VER, 0.80 on ID VSA), where one bin per subtask cannot (0.50).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emocaliber_rl.data.image_paths import resolve_image, stored_image
from emocaliber_rl.data.rows import missing_fields, row_subtask
from emocaliber_rl.inference.probs import answer_token_prob, mean_token_prob
from emocaliber_rl.limits import OFFICIAL_PIXEL_BOUNDS, SFT_MAX_LENGTH
from emocaliber_rl.taxonomy import UnknownLabelError, aliases_for, canonical_label, get_subtask
from reward_fns.emocaliber import answer_label, extract_answer, format_confidence, label_set, open_tag, parse_response

if TYPE_CHECKING:
    from emocaliber_rl.inference.engine import Engine, SamplingConfig

# ----------------------------------------------------------------------------------------------
# Eq. 2

# Where Eq. 2's p comes from (module docstring): "mean" is the paper's, "answer" this project's.
P_SOURCES = ("mean", "answer")
# What the target is (module docstring): "eq2" is the paper's, "binned" this project's.
TARGETS = ("eq2", "binned")
# Which rows share the bins of "binned" (module docstring).
BIN_KEYS = ("subtask", "prompt", "answer")


def confidence_target(correct: bool, p: float, d: float) -> float:
    """Eq. 2 before rounding: ``0.5*(1+p)`` if correct, else ``0.5 - d*p``.

    Raises ValueError when ``p`` is outside [0, 1] or ``d`` outside [0, 0.5]: the range
    guarantees of Eq. 2 (correct in [0.5, 1], wrong in [0, 0.5]) rest on them.
    """
    if not (0.0 <= p <= 1.0) or math.isnan(p):
        raise ValueError(f"mean token probability must lie in [0, 1], got {p}")
    if not (0.0 <= d <= 0.5) or math.isnan(d):
        raise ValueError(f"loop distance must lie in [0, 0.5], got {d}")
    return 0.5 * (1.0 + p) if correct else 0.5 - d * p


def binned_accuracy(points: Sequence[tuple[float, bool]], bin_rows: int,
                    prior: tuple[float, float] = (0.0, 0.0)) -> list[float]:
    """The ``"binned"`` target of each of ``points`` (``(p, correct)``, one group's rows), in input
    order: the accuracy of its bin, bins of ``len // bin_rows`` near-equal counts in order of p
    (at least one), adjacent bins pooled while a higher-p bin is less accurate (isotonic).
    ``prior`` ``(m, a)`` adds ``m`` pseudo-rows of accuracy ``a`` to every bin after pooling:
    ``(right + m*a) / (rows + m)``.

    >>> binned_accuracy([(0.1, False), (0.2, False), (0.8, True), (0.9, False)], 2)
    [0.0, 0.0, 0.5, 0.5]
    >>> binned_accuracy([(0.1, True), (0.2, True)], 5, prior=(2.0, 0.5))
    [0.75, 0.75]
    """
    if bin_rows < 1:
        raise ValueError(f"bin_rows must be >= 1, got {bin_rows}")
    weight, mean = prior
    if weight < 0 or not (0.0 <= mean <= 1.0):
        raise ValueError(f"prior must be (rows >= 0, accuracy in [0, 1]), got {prior}")
    n = len(points)
    if n == 0:
        return []
    order = sorted(range(n), key=lambda i: points[i][0])
    n_bins = max(1, n // bin_rows)
    # [rows, correct, member indices] per bin, then pool adjacent violators
    blocks: list[list[Any]] = []
    for b in range(n_bins):
        members = order[b * n // n_bins:(b + 1) * n // n_bins]
        blocks.append([len(members), sum(bool(points[i][1]) for i in members), members])
        while len(blocks) > 1 and blocks[-2][1] * blocks[-1][0] > blocks[-1][1] * blocks[-2][0]:
            last = blocks.pop()
            blocks[-1] = [blocks[-1][0] + last[0], blocks[-1][1] + last[1], blocks[-1][2] + last[2]]
    out = [0.0] * n
    for rows, right, members in blocks:
        for i in members:
            out[i] = (right + weight * mean) / (rows + weight)
    return out


def round_confidence(c: float) -> float:
    """Round half-up to two decimals on the decimal spelling (``0.745 -> 0.75``).

    ``round(0.745, 2)`` gives 0.74 because the binary double is 0.74499..; the paper rounds the
    number it writes, so we round ``repr(c)``, the shortest decimal that reads back as ``c``.
    """
    return float(Decimal(repr(float(c))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def confidence_tag(c: float) -> str:
    """``c``'s confidence block, as the grammar writes it (two decimals)."""
    return format_confidence(c)


def with_confidence(response: str, c: float) -> str:
    """The stage-2 assistant turn: the scaffold's response, right-stripped, then ``c``'s tag."""
    return response.rstrip() + confidence_tag(c)


# ----------------------------------------------------------------------------------------------
# Prediction

def predicted_label(
    subtask: str, response: str, candidates: Sequence[str] | None = None
) -> tuple[str | None, str]:
    """``(canonical label, "")`` or ``(None, reason)`` for the answer in ``response``.

    The answer is the content of the last ``<answer>..</answer>``, read by the reward's I(e)
    (``reward_fns.emocaliber.answer_label``) against the row's ``candidates`` (default: the
    subtask's labels) and the subtask's aliases: ``"Sad."`` -> ``sadness``, ``"It is awe"`` ->
    ``awe``. Reasons: ``no_answer``, ``empty_answer``, ``too_long``, ``unknown_label``,
    ``several_labels``.
    """
    task_labels = get_subtask(subtask).labels
    labels = label_set(list(candidates) if candidates else list(task_labels), aliases_for(subtask))
    label, reason = answer_label(extract_answer(response), labels)
    if label is not None and label not in task_labels:
        # a row candidate outside the subtask has no place on its emotion loop (Eq. 2's d)
        return None, "unknown_label"
    return label, reason


# ----------------------------------------------------------------------------------------------
# Generation


def read_prompt_set(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a stage-2 prompt set (``export prompts2``): jsonl, or parquet by suffix.

    Each row is checked by :func:`~emocaliber_rl.data.rows.validate_row` (``messages`` required
    too, and a list): InputFileError (a ValueError) names the line, field and id of a bad row, which
    is refused before any generation, not found out at labelling time.
    """
    from emocaliber_rl.data.rows import row_error, validate_row
    from emocaliber_rl.jsonl import read_jsonl

    p = Path(path)
    if p.suffix == ".parquet":
        import pandas as pd

        rows = [_plain(r) for r in pd.read_parquet(p).to_dict(orient="records")]
        numbered = list(enumerate(rows, start=1))
    else:
        numbered = list(read_jsonl(p))
    out = []
    for n, row in numbered:
        validate_row(row, path=p, line=n, required=("id", "subtask", "image", "label", "messages"))
        if not isinstance(row["messages"], list):
            raise row_error(p, n, row["id"], "messages", f"expected a list, got {type(row['messages']).__name__}")
        row["image"] = resolve_image(str(row["image"]), p.parent)
        out.append(row)
    return out


def _plain(value: Any) -> Any:
    """numpy arrays / scalars from a parquet round trip -> plain lists / Python values."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


STAGE2_RUN_KIND = "stage2 generate"


def generate_stage2(
    engine: Engine,
    prompts: str | os.PathLike[str] | Sequence[dict[str, Any]],
    out_path: str | os.PathLike[str],
    *,
    batch_size: int = 64,
    sampling: SamplingConfig | None = None,
    progress: bool = True,
    settings: dict[str, Any] | None = None,
    force_new: bool = False,
) -> dict[str, Any]:
    """Generate one response per prompt into a resumable jsonl (see ``inference.resumable``).

    Each line: ``id, subtask, label, candidates, image, messages, response, token_ids, logprobs,
    finish_reason, num_tokens, mean_prob, backend, model, temperature, seed, run_id``. The run
    manifest (``OUT.run.json``, :mod:`emocaliber_rl.run_manifest`) records ``settings`` (default:
    :func:`~emocaliber_rl.inference.resumable.generation_settings` of the engine, the sampling
    and the prompts); resuming with other settings raises ``RunMismatchError`` unless
    ``force_new``. Returns the run's counts and throughput.
    """
    from dataclasses import replace

    from emocaliber_rl.inference.engine import GenerationRequest, SamplingConfig, request_seed
    from emocaliber_rl.inference.resumable import (
        ResumableJsonl,
        engine_settings,
        generation_settings,
        run_batches,
        start_run,
    )

    rows = read_prompt_set(prompts) if isinstance(prompts, (str, os.PathLike)) else list(prompts)
    base = sampling or SamplingConfig()
    if base.n != 1:
        raise ValueError("stage-2 generation draws one response per prompt (n=1)")
    if settings is None:
        settings = generation_settings(**engine_settings(engine), sampling=base,
                                       prompts=prompts if isinstance(prompts, (str, os.PathLike)) else rows)
    run_id = start_run(out_path, STAGE2_RUN_KIND, settings, force_new=force_new)

    def process(batch: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        reqs = [
            GenerationRequest(
                messages=r["messages"],
                images=[r["image"]],
                sampling=replace(base, seed=request_seed(base.seed, r["id"])),
            )
            for r in batch
        ]
        gens = engine.generate(reqs)
        out = []
        failures = []
        for r, req, g in zip(batch, reqs, gens):
            if g.error is not None:  # e.g. a missing image: reported, retried by a rerun
                failures.append({"id": r["id"], "error": g.error})
                continue
            out.append(
                {
                    "id": r["id"],
                    "subtask": r["subtask"],
                    "label": r["label"],
                    "candidates": r.get("candidates"),
                    "image": stored_image(r["image"], out_path),
                    "messages": r["messages"],
                    "response": g.text,
                    "token_ids": g.token_ids,
                    "logprobs": g.logprobs,
                    "finish_reason": g.finish_reason,
                    "num_tokens": g.num_tokens,
                    "mean_prob": mean_token_prob(g.logprobs),
                    "backend": engine.backend,
                    "model": engine.model_path,
                    "temperature": req.sampling.temperature,
                    "seed": req.sampling.seed,
                }
            )
        return out, sum(g.num_tokens for g in gens), failures

    with ResumableJsonl(out_path, run_id=run_id) as sink:
        stats = run_batches(rows, sink, process, key=lambda r: r["id"], batch_size=batch_size,
                            desc="stage2 generate", progress=progress)
        stats["run_id"] = run_id
        stats["torn_bytes_dropped"] = sink.torn_bytes
    return stats


# ----------------------------------------------------------------------------------------------
# Labelling


@dataclass
class LabelResult:
    """What :func:`label_generations` wrote and why rows were left out."""

    out_path: Path
    rejects_path: Path
    targets_path: Path
    summary_json: Path | None
    summary_png: Path | None
    kept: int = 0
    rejected: int = 0
    reasons: Counter = field(default_factory=Counter)
    summary: dict[str, Any] = field(default_factory=dict)


def check_p_source(p_source: str, tokenizer: Any) -> None:
    """ValueError for an unknown ``p_source``, or ``"answer"`` without a tokenizer."""
    if p_source not in P_SOURCES:
        raise ValueError(f"p_source must be one of {P_SOURCES}, got {p_source!r}")
    if p_source == "answer" and tokenizer is None:
        raise ValueError("p_source 'answer' needs the model's tokenizer (--tokenizer MODEL_DIR) to find the "
                         "answer token among the token ids")


# Answers that are wrong, not unreadable: kept as wrong rows by ``label_row(unnamed_wrong=True)``.
UNNAMED_WRONG = ("unknown_label", "several_labels")


def label_row(row: dict[str, Any], *, require_format: bool = False, p_source: str = "mean",
              tokenizer: Any = None, unnamed_wrong: bool = False) -> tuple[dict[str, Any] | None, str, str]:
    """Eq. 2 for one generation line: ``(target, "", "")`` or ``(None, reason, detail)``.

    ``target`` holds ``pred, correct, p, d, confidence`` (rounded) and ``assistant`` (response +
    confidence tag). ``p_source`` (module docstring): ``"mean"``, the paper's mean token probability,
    or ``"answer"``, the probability of the first decisive answer token, located with
    ``tokenizer`` (a loaded tokenizer object, required then) in the row's ``token_ids``.
    ``unnamed_wrong``: an answer that names no candidate or several (``UNNAMED_WRONG``) is a
    wrong row (``pred`` its text, ``d`` 0.5) instead of a reject.
    """
    check_p_source(p_source, tokenizer)
    required = ("id", "subtask", "label", "response", "logprobs") + (("token_ids",) if p_source == "answer" else ())
    missing = missing_fields(row, required)  # the row schema's rule (data/rows.py); here a reject, not a stop
    if missing:
        return None, "missing_field", f"no {missing[0]!r}"
    subtask, response = str(row_subtask(row)), row["response"]
    try:
        label = canonical_label(subtask, str(row["label"]))
    except (UnknownLabelError, ValueError) as e:
        return None, "bad_label", str(e)
    if open_tag("confidence") in response:
        return None, "has_confidence", f"the response already holds a {open_tag('confidence')} tag"
    pred, reason = predicted_label(subtask, response, row.get("candidates"))
    named = pred is not None
    if not named:
        if not (unnamed_wrong and reason in UNNAMED_WRONG):
            return None, reason, f"answer: {extract_answer(response)!r}"
        pred = (extract_answer(response) or "").strip()
    logprobs = row["logprobs"]
    if not isinstance(logprobs, list):
        return None, "bad_logprobs", f"'logprobs' must be a list, got {type(logprobs).__name__}"
    if not logprobs:
        return None, "no_tokens", "empty logprobs"
    # p is the mean over the response's tokens: a truncated list would give another p (the
    # issue's 3 logprobs for 33 tokens gave 0.88 instead of 0.90)
    token_ids = row.get("token_ids")
    if token_ids is not None and (not isinstance(token_ids, list) or len(token_ids) != len(logprobs)):
        n_ids = len(token_ids) if isinstance(token_ids, list) else type(token_ids).__name__
        return None, "token_mismatch", f"{len(logprobs)} logprobs for {n_ids} token_ids"
    num_tokens = row.get("num_tokens")
    if num_tokens is not None and num_tokens != len(logprobs):
        return None, "token_mismatch", f"{len(logprobs)} logprobs but num_tokens {num_tokens!r}"
    if not all(isinstance(x, (int, float)) and math.isfinite(x) and x <= 0 for x in logprobs):
        return None, "bad_logprobs", "log-probabilities must be finite and <= 0"
    from emocaliber_rl.loops import loop_for_subtask

    if p_source == "answer":
        # the answer token is found by prefix decodes, valid only if the ids decode to this very
        # response (what both engines wrote); anything else would read some other token's probability
        decoded = tokenizer.decode(list(token_ids), skip_special_tokens=True)
        p = answer_token_prob(response, token_ids, logprobs, tokenizer) if decoded == response else None
        if p is None:
            return None, "no_answer_token", (
                "token_ids do not decode to the response with this tokenizer (another model's?)"
                if decoded != response else "no token writes the first character of the answer")
    else:
        p = mean_token_prob(logprobs)
        assert p is not None
    p = min(max(p, 0.0), 1.0)  # fsum of exp(<=0) / n can overshoot 1 by an ulp
    correct = named and pred == label
    # an answer naming no candidate has no place on the loop: the farthest distance
    d = 0.0 if correct else loop_for_subtask(subtask).distance(pred, label) if named else 0.5
    c = round_confidence(confidence_target(correct, p, d))
    assistant = with_confidence(response, c)
    if require_format:
        parsed = parse_response(assistant)
        if not parsed.format_ok:
            return None, "format", parsed.reason
    return {"pred": pred, "label": label, "correct": correct, "p": p, "d": d, "confidence": c,
            "assistant": assistant}, "", ""


def bin_group(row: dict[str, Any], pred: str, bin_by: str) -> tuple:
    """The key of the rows that share the ``"binned"`` target's bins (module docstring):
    ``("subtask", name)``, ``("prompt", candidates)`` or ``("prompt", candidates, answered label)``;
    candidates are the row's, in the order the prompt offers them (the subtask's labels without)."""
    subtask = get_subtask(str(row_subtask(row)))
    if bin_by == "subtask":
        return ("subtask", subtask.name)
    cands = tuple(str(c) for c in (row.get("candidates") or subtask.labels))
    return ("prompt", cands) if bin_by == "prompt" else ("prompt", cands, str(pred).strip().lower())


def group_targets(groups: dict[tuple, list[tuple[str, float, bool]]], bin_rows: int, *,
                  prior_rows: float = 0.0) -> dict[str, float]:
    """The ``"binned"`` target (unrounded) of every member ``(id, p, correct)`` of ``groups``, keyed
    by :func:`bin_group`: each group's :func:`binned_accuracy`, every bin with ``prior_rows``
    pseudo-rows of the accuracy of its prompt's rows (the key's first two parts: a whole group
    unless the key names an answer)."""
    prompt_acc: dict[tuple, list[int]] = {}
    for key, members in groups.items():
        acc = prompt_acc.setdefault(key[:2], [0, 0])
        acc[0] += sum(ok for _, _, ok in members)
        acc[1] += len(members)
    out: dict[str, float] = {}
    for key, members in groups.items():
        right, rows = prompt_acc[key[:2]]
        accs = binned_accuracy([(p, ok) for _, p, ok in members], bin_rows, prior=(prior_rows, right / rows))
        out.update((rid, a) for (rid, _, _), a in zip(members, accs))
    return out


def histogram(targets: Sequence[tuple[float, bool]]) -> list[dict[str, Any]]:
    """Counts per 0.1 bin ``[lo, hi)`` (the last bin holds 1.0), correct vs wrong.

    Binning is on integer hundredths, so 0.3 goes to [0.3, 0.4) (float edges would put it in
    [0.2, 0.3)).
    """
    bins = [{"lo": k / 10, "hi": (k + 1) / 10, "correct": 0, "wrong": 0} for k in range(10)]
    for c, ok in targets:
        k = min(round(c * 100) // 10, 9)
        bins[k]["correct" if ok else "wrong"] += 1
    return bins


def _plot_histogram(bins: list[dict[str, Any]], path: Path, title: str,
                    xlabel: str = "confidence target c* (Eq. 2)") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    centers = [(b["lo"] + b["hi"]) / 2 for b in bins]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.bar(centers, [b["correct"] for b in bins], width=0.09, label="correct prediction",
           color="#2a9d8f")
    ax.bar(centers, [b["wrong"] for b in bins], width=0.09, bottom=[b["correct"] for b in bins],
           label="wrong prediction", color="#e76f51")
    ax.set_xlim(0, 1)
    ax.set_xticks([k / 10 for k in range(11)])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("responses")
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # counts, not fractions
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def label_generations(
    gen_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    summary_dir: str | os.PathLike[str] | None = None,
    require_format: bool = False,
    plot: bool = True,
    batch_rows: int = 256,
    duplicates: str = "first",
    pixel_bounds: tuple[int, int] | None = OFFICIAL_PIXEL_BOUNDS,
    max_length: int | None = SFT_MAX_LENGTH,
    tokenizer: str | None = None,
    p_source: str = "mean",
    target: str = "eq2",
    bin_rows: int = 25,
    bin_by: str = "subtask",
    prior_rows: float = 2.0,
) -> LabelResult:
    """Eq. 2 targets for every generation in ``gen_path`` -> veRL SFT parquet at ``out_path``.

    Beside the parquet: ``OUT.rejects.jsonl`` (id, reason, detail of every row left out),
    ``OUT.targets.jsonl`` (id, pred, label, correct, p, d, confidence, p_source per kept row) and, in
    ``summary_dir`` (default: the parquet's folder), ``OUT_STEM.summary.json`` / ``.png`` (the
    target distribution per 0.1 bin, correct vs wrong).
    ``pixel_bounds`` (default the official release's; ``None``: the processor's own) travel with
    every image, as in the stage-1 export; a row over ``max_length`` tokens (image tokens, plus text
    tokens with the model's ``tokenizer``) is rejected as ``overlong`` (``None``: no check).
    ``p_source`` is Eq. 2's p (module docstring): ``"mean"``, the paper's, or ``"answer"``, which
    needs ``tokenizer`` (ValueError before any row is read without one); it is recorded in every
    targets row and in the summary. ``target`` is ``"eq2"`` (the paper's) or ``"binned"`` (module
    docstring; bins of ``bin_rows`` rows per group of ``bin_by``, found in a first pass over the
    file; with ``bin_by="answer"`` each bin gets ``prior_rows`` pseudo-rows of its prompt's
    accuracy); every targets row holds the written ``confidence`` and the row's Eq. 2 value ``eq2``.

    A repeated id is a ``duplicate_id`` reject (``duplicates="first"``, the first line is kept)
    or, with ``duplicates="error"``, an InputFileError naming both lines. A file mixing run ids
    (two generation runs) is always refused.
    """
    from emocaliber_rl.jsonl import InputFileError
    from emocaliber_rl.run_manifest import check_single_run

    if duplicates not in ("first", "error"):
        raise ValueError(f"duplicates must be 'first' or 'error', got {duplicates!r}")
    check_p_source(p_source, tokenizer)
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if bin_rows < 1:
        raise ValueError(f"bin_rows must be >= 1, got {bin_rows}")
    if bin_by not in BIN_KEYS:
        raise ValueError(f"bin_by must be one of {BIN_KEYS}, got {bin_by!r}")
    if not (prior_rows >= 0 and math.isfinite(prior_rows)):
        raise ValueError(f"prior_rows must be a finite number >= 0, got {prior_rows}")
    from emocaliber_rl.data.exports import SFTRowWriter
    from emocaliber_rl.data.images import ImageProblem, image_bytes_for_parquet
    from emocaliber_rl.data.records import iter_jsonl

    out = Path(out_path)
    rejects_path = out.with_name(out.name + ".rejects.jsonl")
    targets_path = out.with_name(out.name + ".targets.jsonl")
    sdir = Path(summary_dir) if summary_dir is not None else out.parent
    sdir.mkdir(parents=True, exist_ok=True)
    stem = out.name.removesuffix(".parquet")
    result = LabelResult(out, rejects_path, targets_path, sdir / f"{stem}.summary.json",
                         sdir / f"{stem}.summary.png" if plot else None)
    # the stage-1 export's writer: same schema, image cell, length check and all-or-nothing file
    writer = SFTRowWriter(out, pixel_bounds=pixel_bounds, max_length=max_length, tokenizer=tokenizer,
                          batch_rows=batch_rows)
    answer_tok = None
    if p_source == "answer":
        from transformers import AutoTokenizer

        answer_tok = AutoTokenizer.from_pretrained(tokenizer)
    def rows_kept(on_reject: Any) -> Any:
        """(line, id, row, target, messages, image cell) of every row that is kept; each row left
        out goes to ``on_reject`` (a dict of line, id, reason, detail)."""
        seen: dict[str, int] = {}
        run_state: dict[str, Any] = {}
        for n, row, err in iter_jsonl(gen_path):
            if err is not None:
                on_reject({"line": n, "id": None, "reason": "bad_json", "detail": err})
                continue
            if not isinstance(row, dict):
                on_reject({"line": n, "id": None, "reason": "bad_json",
                           "detail": f"expected a JSON object, got {type(row).__name__}"})
                continue
            next(check_single_run([(n, row)], str(gen_path), state=run_state))
            rid = str(row.get("id"))
            if rid in seen:
                if duplicates == "error":
                    raise InputFileError(f"{gen_path}:{n}: field 'id': {rid!r} already at line "
                                         f"{seen[rid]} (--duplicates first keeps the first)")
                on_reject({"line": n, "id": rid, "reason": "duplicate_id", "detail": f"line {seen[rid]} has this id"})
                continue
            seen[rid] = n
            labelled, reason, detail = label_row(row, require_format=require_format, p_source=p_source,
                                                 tokenizer=answer_tok, unnamed_wrong=target == "binned")
            if labelled is None:
                on_reject({"line": n, "id": rid, "reason": reason, "detail": detail})
                continue
            messages = row.get("messages")
            if not messages or not isinstance(messages, list):
                on_reject({"line": n, "id": rid, "reason": "missing_field", "detail": "no 'messages'"})
                continue
            try:
                data, _ = image_bytes_for_parquet(resolve_image(str(row["image"]), Path(gen_path).parent))
            except (ImageProblem, KeyError, TypeError) as e:
                on_reject({"line": n, "id": rid, "reason": "image", "detail": str(e)})
                continue
            msgs = [{"role": m["role"], "content": m["content"]} for m in messages
                    if m["role"] in ("system", "user")]
            msgs.append({"role": "assistant", "content": labelled["assistant"]})
            # the length does not depend on which target is written: both are "0.xx"
            detail = writer.overlong(msgs, data)
            if detail is not None:
                on_reject({"line": n, "id": rid, "reason": "overlong", "detail": detail})
                continue
            yield n, rid, row, labelled, msgs, data

    binned: dict[str, float] = {}
    if target == "binned":
        # a first pass finds every row that will be kept, so the bins hold exactly those rows
        groups: dict[tuple, list[tuple[str, float, bool]]] = {}
        for _, rid, row, t, _, _ in rows_kept(lambda _r: None):
            groups.setdefault(bin_group(row, t["pred"], bin_by), []).append((rid, t["p"], t["correct"]))
        targets_of = group_targets(groups, bin_rows, prior_rows=prior_rows if bin_by == "answer" else 0.0)
        binned = {rid: round_confidence(a) for rid, a in targets_of.items()}

    hist_in: list[tuple[float, bool]] = []
    rejects: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    n_format_ok = 0
    try:
        for _n, rid, row, t, msgs, data in rows_kept(rejects.append):
            eq2 = t["confidence"]
            if target == "binned":
                t["confidence"] = binned[rid]
                t["assistant"] = with_confidence(row["response"], t["confidence"])
                msgs[-1] = {"role": "assistant", "content": t["assistant"]}
            writer.add(msgs, writer.images(data), id=rid, subtask=get_subtask(str(row_subtask(row))).name,
                       label=t["label"])
            n_format_ok += parse_response(t["assistant"]).format_ok
            hist_in.append((t["confidence"], t["correct"]))
            targets.append({"id": rid, **{k: t[k] for k in ("pred", "label", "correct", "p", "d", "confidence")},
                            "eq2": eq2, "p_source": p_source, "target": target,
                            **({"bin_by": bin_by} if target == "binned" else {})})
    except BaseException:
        writer.abort()
        raise
    kept = writer.rows
    writer.close()

    from emocaliber_rl.data.records import write_jsonl

    write_jsonl(rejects_path, rejects)
    write_jsonl(targets_path, targets)
    result.kept = kept
    result.rejected = len(rejects)
    result.reasons = Counter(r["reason"] for r in rejects)
    bins = histogram(hist_in)
    n_correct = sum(ok for _, ok in hist_in)
    result.summary = {
        "generations": str(Path(gen_path)),
        "parquet": str(out),
        "p_source": p_source,
        "target": target,
        **({"bin_by": bin_by, "prior_rows": prior_rows} if target == "binned" else {}),
        "kept": result.kept,
        "rejected": result.rejected,
        "reject_reasons": dict(sorted(result.reasons.items())),
        "correct": n_correct,
        "wrong": result.kept - n_correct,
        "accuracy": n_correct / result.kept if result.kept else None,
        "format_ok": n_format_ok,
        "mean_confidence": (math.fsum(c for c, _ in hist_in) / len(hist_in)) if hist_in else None,
        "bins": bins,
    }
    assert result.summary_json is not None
    result.summary_json.write_text(json.dumps(result.summary, indent=2) + "\n", encoding="utf-8")
    if result.summary_png is not None:
        _plot_histogram(bins, result.summary_png,
                        f"stage-2 targets ({target}, p: {p_source}): {result.kept} kept, {result.rejected} rejected",
                        "confidence target c* (Eq. 2)" if target == "eq2" else "confidence target c* (binned accuracy)")
    return result


def print_reject_counts(result: LabelResult, stream: Any = None) -> None:
    """Reject counts per reason on stderr (the rejects jsonl has every row)."""
    stream = stream or sys.stderr
    total = result.kept + result.rejected
    print(f"stage2 label: kept {result.kept} of {total}, rejected {result.rejected}", file=stream)
    for reason, count in sorted(result.reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {reason}: {count}", file=stream)
    if result.rejected:
        print(f"  (every rejected row with its reason: {result.rejects_path})", file=stream)
