"""Inference over an evaluation manifest (``emocaliber eval run``): one prediction row per test
sample, in exactly the format ``emocaliber eval score`` reads.

Input: the manifest ``emocaliber export eval`` writes (jsonl rows: id, subtask, group, image, label,
candidates, system, prompt with ``<image>``). Output rows (resumable jsonl, see
``inference.resumable``)::

    {"id", "subtask", "group", "label", "candidates", "model", "response", "pred",
     "conf_verb", "conf_ans", "conf_avg", "num_tokens", "finish_reason", "run_id"}

``run_id`` names the run (its settings are in ``OUT.run.json``, see
:mod:`emocaliber_rl.run_manifest`); ``eval score`` refuses a file that mixes runs.

``pred`` is the strict parse (``evaluation.parsing``; null = unparsed), ``conf_verb`` the
verbalized confidence (null when the response has none), ``conf_ans`` the probability of the first
decisive answer token, ``conf_avg`` the mean token probability (paper section 4.5).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from emocaliber_rl.data.image_paths import resolve_image
from emocaliber_rl.inference.engine import Engine, GenerationRequest, SamplingConfig, request_seed
from emocaliber_rl.inference.probs import confidences
from emocaliber_rl.inference.resumable import (
    ResumableJsonl,
    engine_settings,
    generation_settings,
    run_batches,
    start_run,
)

# Where `emocaliber bench build -o data/vecbench` + `emocaliber export eval` put the VECBench
# test manifest by convention (docs/evaluation.md gives the commands).
DEFAULT_MANIFEST = Path("data/vecbench/test.eval.jsonl")


def read_eval_manifest(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of an evaluation manifest, each checked by :func:`~emocaliber_rl.data.rows.validate_row`:
    InputFileError (a ValueError) names the line, field and id of a bad row, an unknown subtask or
    label included (refused before the model runs)."""
    from emocaliber_rl.data.rows import validate_row
    from emocaliber_rl.jsonl import read_jsonl

    out = []
    for n, obj in read_jsonl(path):
        validate_row(obj, path=path, line=n)  # an old manifest's `task` is read as `subtask`
        obj["image"] = resolve_image(str(obj["image"]), Path(path).parent)  # the one path rule
        out.append(obj)
    return out


EVAL_RUN_KIND = "eval run"


def eval_settings(engine: dict[str, Any], sampling: SamplingConfig, manifest: str | os.PathLike[str],
                  ask_confidence: bool | None) -> dict[str, Any]:
    """What defines an ``eval run`` (its run manifest): :func:`generation_settings` of
    ``engine`` (:func:`engine_settings`, or the same keys from the command line) plus the
    confidence-prompt switch."""
    return generation_settings(**engine, sampling=sampling, prompts=manifest,
                               ask_confidence=ask_confidence)


def eval_messages(row: dict[str, Any], ask_confidence: bool | None) -> list[dict[str, str]]:
    """System + user turn of one manifest row.

    ``ask_confidence=None`` keeps the manifest's prompt verbatim; True / False rebuild it with
    :func:`emocaliber_rl.prompts.task_question` with / without the confidence request (Table 5's
    "Verb" for a baseline needs the request; a model trained to emit ``<confidence>`` does not).
    """
    from emocaliber_rl.prompts import SYSTEM_PROMPT, task_question

    if ask_confidence is None and row.get("prompt"):
        prompt = row["prompt"]
        if "<image>" not in prompt:
            prompt = "<image>" + prompt
    else:
        prompt = task_question(row["subtask"], ask_confidence=bool(ask_confidence))
    return [{"role": "system", "content": row.get("system") or SYSTEM_PROMPT},
            {"role": "user", "content": prompt}]


def run_eval(
    engine: Engine,
    manifest: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    sampling: SamplingConfig | None = None,
    ask_confidence: bool | None = None,
    batch_size: int = 64,
    limit: int | None = None,
    progress: bool = True,
    settings: dict[str, Any] | None = None,
    force_new: bool = False,
) -> dict[str, Any]:
    """Predict every manifest row (the first ``limit`` rows if given) into ``out_path``.

    The run manifest (``OUT.run.json``) records ``settings`` (default: :func:`eval_settings`);
    resuming with other settings raises ``RunMismatchError`` unless ``force_new``.
    """
    from emocaliber_rl.evaluation.parsing import parse_prediction

    rows = read_eval_manifest(manifest)
    if limit is not None:
        rows = rows[:limit]
    base = sampling or SamplingConfig()
    if base.n != 1:
        raise ValueError("eval run draws one response per sample (n=1)")
    if settings is None:
        settings = eval_settings(engine_settings(engine), base, manifest, ask_confidence)
    run_id = start_run(out_path, EVAL_RUN_KIND, settings, force_new=force_new)
    tokenizer = engine.tokenizer

    def process(batch: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        reqs = [GenerationRequest(eval_messages(r, ask_confidence), [r["image"]],
                                  replace(base, seed=request_seed(base.seed, r["id"])))
                for r in batch]
        gens = engine.generate(reqs)
        out = []
        failures = []
        for r, g in zip(batch, gens):
            if g.error is not None:  # e.g. a missing image: reported, retried by a rerun
                failures.append({"id": r["id"], "error": g.error})
                continue
            cands = list(r.get("candidates") or [])
            out.append({
                "id": r["id"],
                "subtask": r["subtask"],
                "group": r.get("group"),
                "label": r["label"],
                "candidates": cands,
                "model": engine.model_path,
                "response": g.text,
                "pred": parse_prediction(g.text, r["subtask"], cands or None),
                **confidences(g.text, g.token_ids, g.logprobs, tokenizer),
                "num_tokens": g.num_tokens,
                "finish_reason": g.finish_reason,
            })
        return out, sum(g.num_tokens for g in gens), failures

    with ResumableJsonl(out_path, run_id=run_id) as sink:
        stats = run_batches(rows, sink, process, key=lambda r: r["id"], batch_size=batch_size,
                            desc="eval run", progress=progress)
        stats["run_id"] = run_id
        stats["torn_bytes_dropped"] = sink.torn_bytes
    return stats
