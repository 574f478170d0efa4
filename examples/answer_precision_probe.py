"""Before retraining stage 2: could a confidence keyed on the answered label tell right from wrong?

Offline, on a finished demo folder: each stage-2 generation (``data/stage2_generations.jsonl``) is
read as ``stage2 label`` reads it (answered label by the reward's grammar), and the targets of
``--target binned --bin-rows 1000`` are computed for each ``--bin-by`` key with
:func:`emocaliber_rl.stage2.binned_accuracy` and :func:`emocaliber_rl.stage2.bin_group`, the code
the command runs. Each key's values are then *applied to the scaffold's own test answers*
(``eval/scaffold/samples.jsonl``): a test answer gets the value of its (prompt, answered label)
group, or its prompt's accuracy when that label was never answered in stage 2 (answers naming no
label form one group per prompt here; ``stage2 label`` keys them by their text). The table is what a
cold-start would score if it said those values back perfectly (ECE, Brier, pooled AUC, AUC within
subtasks, values on >= 5% of answers), per VECBench group, with evaluation/metrics.py's functions::

    python examples/answer_precision_probe.py --demo runs/demo [--prior-rows 2]

docs/demo-world.md ("Stage 2's target") records what it measured. Nothing is trained or written.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

from emocaliber_rl.evaluation.metrics import brier_score, expected_calibration_error, roc_auc, within_group_auc
from emocaliber_rl.stage2 import BIN_KEYS, bin_group, group_targets, predicted_label

GROUPS = ("ID VER", "ID VSA", "OOD VER")


def stage2_values(gen_path: Path, bin_by: str, prior_rows: float) -> tuple[dict, dict]:
    """(group key -> target, prompt key -> accuracy) over the stage-2 generations, one bin per group."""
    groups: dict[tuple, list[tuple[str, float, bool]]] = defaultdict(list)
    for n, line in enumerate(gen_path.read_text(encoding="utf-8").splitlines()):
        row = json.loads(line)
        pred, _ = predicted_label(row["subtask"], row["response"], row.get("candidates"))
        groups[bin_group(row, pred or "", bin_by)].append((str(n), 0.0, pred is not None and pred == row["label"]))
    targets = group_targets(groups, 1000, prior_rows=prior_rows if bin_by == "answer" else 0.0)
    prompt: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for key, members in groups.items():
        prompt[key[:2]][0] += sum(ok for _, _, ok in members)
        prompt[key[:2]][1] += len(members)
    return ({key: targets[members[0][0]] for key, members in groups.items()},
            {k: right / rows for k, (right, rows) in prompt.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", type=Path, required=True, help="a finished `emocaliber demo --out` folder")
    ap.add_argument("--prior-rows", type=float, default=2.0, help="stage2 label --prior-rows (default 2)")
    args = ap.parse_args()
    gen = args.demo / "data" / "stage2_generations.jsonl"
    manifest = {json.loads(x)["id"]: json.loads(x)
                for x in (args.demo / "data" / "test.eval.jsonl").read_text(encoding="utf-8").splitlines()}
    test = [json.loads(x) for x in (args.demo / "eval" / "scaffold" / "samples.jsonl").read_text().splitlines()]
    print("| --bin-by | group | ECE | Brier | AUC | AUC within | values on >= 5% |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for bin_by in BIN_KEYS:
        values, prompt_acc = stage2_values(gen, bin_by, args.prior_rows)
        for group in GROUPS:
            rows = [r for r in test if r["group"] == group]
            conf, correct, subtasks = [], [], []
            for r in rows:
                src = {**manifest[r["id"]], "subtask": r["subtask"]}
                key = bin_group(src, r["pred"] or "", bin_by)
                conf.append(round(values.get(key, prompt_acc.get(key[:2], 0.0)), 2))
                correct.append(bool(r["correct"]))
                subtasks.append(r["subtask"])
            big = sum(1 for n in Counter(conf).values() if n >= 0.05 * len(conf))
            within, _ = within_group_auc(conf, correct, subtasks)
            print(f"| {bin_by} | {group} | {expected_calibration_error(conf, correct):.3f} | "
                  f"{brier_score(conf, correct):.3f} | {roc_auc(conf, correct):.3f} | {within:.3f} | {big} |")


if __name__ == "__main__":
    main()
