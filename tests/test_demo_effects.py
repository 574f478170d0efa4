"""The demo index's effects table and goals, on hand-made scores (numbers computed by hand)."""

from __future__ import annotations

import math

import pytest

from emocaliber_rl.demo_effects import chance, confidence_values, effects_table, goals, parse_rate

ID_VER = ["FI-8", "EmoSet-8", "WebEmo-7", "WebEmo-25"]
# (1/8 + 1/8 + 1/7 + 1/25) / 4
ID_VER_CHANCE = (0.125 + 0.125 + 1 / 7 + 0.04) / 4


def _cal(ece, brier, parsed, auc=0.5):
    return {"ece": ece, "brier": brier, "auc": auc, "auc_within": 0.5, "conf_parsed": parsed}


def _scores(acc_ver, parsed=(1.0, 1.0, 1.0), ece=(0.1, 0.1, 0.1), brier=(0.2, 0.2, 0.2), auc=(0.5, 0.5, 0.5),
            task_acc=0.5):
    tasks = {"ID VER": ID_VER, "ID VSA": ["FI-2", "WebEmo-2"], "OOD VER": ["Abstract-8", "Artphoto-8", "UnbiasedEmo-6"]}
    ns = {"ID VER": 200, "ID VSA": 100, "OOD VER": 114}
    groups = {}
    for i, g in enumerate(tasks):
        groups[g] = {"acc": acc_ver if g == "ID VER" else 0.5, "n": ns[g], "tasks": tasks[g],
                     "verb": _cal(ece[i], brier[i], parsed[i], auc[i])}
    return {"groups": groups, "tasks": {t: {"acc": task_acc} for ts in tasks.values() for t in ts}}


def test_chance_is_the_mean_of_one_over_k():
    assert chance(ID_VER) == pytest.approx(ID_VER_CHANCE)
    assert chance(["FI-2", "WebEmo-2"]) == 0.5
    assert chance(["UnbiasedEmo-6"]) == pytest.approx(1 / 6)


def test_parse_rate_weights_groups_by_their_size():
    s = _scores(0.3, parsed=(1.0, 0.5, 0.0))
    assert parse_rate(s) == pytest.approx((200 * 1.0 + 100 * 0.5 + 0) / 414)


def test_goals_met_and_missed():
    runs = {"oracle": _scores(0.80), "scaffold": _scores(0.46, task_acc=0.6),
            "cold-start": _scores(0.43, parsed=(1.0, 0.9, 0.9), auc=(0.66, 0.59, 0.5)),
            "EmoCaliber": _scores(0.25, ece=(0.05, 0.1, 0.2), brier=(0.1, 0.2, 0.2))}
    values = {"ID VER": [(0.9, 0.5), (0.7, 0.3), (0.4, 0.15), (0.1, 0.05)],
              "ID VSA": [(0.9, 0.6), (0.1, 0.4)], "OOD VER": [(0.9, 0.96), (0.8, 0.04)]}
    gs = goals(runs, wall_s=16 * 60, cold_start_values=values)
    met = {g.what: g.met for g in gs}
    # scaffold: chance 10.82% + 0.5 x (80 - 10.82) = 45.41% <= 46%: met; FI-8 and EmoSet-8 at 60%: met
    assert gs[0].what.endswith("= 45.4%)") and gs[0].met
    assert [g.met for g in gs[1:3]] == [True, True]
    # parse (200 + 90 + 102.6) / 414 = 0.948 < 0.95: missed; ID VER AUC 0.66 >= 0.65, ID VSA 0.59 < 0.60
    assert [g.met for g in gs[3:6]] == [False, True, False]
    # values on >= 5% of answers: ID VER 4 (0.05 counts), ID VSA 2, OOD VER 1
    assert [g.met for g in gs[6:9]] == [True, False, False]
    assert gs[8].measured == "0.90 (96%)"
    # accuracy 46% -> 43%: exactly 3 points, met
    assert gs[9].met
    # ECE worse in OOD VER (0.1 -> 0.2): missed; Brier equal or better everywhere: met; 16 min: missed
    assert [g.met for g in gs[10:]] == [False, True, False]
    assert len(met) == len(gs)  # every goal has its own description
    runs["scaffold"] = _scores(0.45, task_acc=0.59)
    assert [g.met for g in goals(runs, 0)[:3]] == [False, False, False]


def test_confidence_values_share_of_the_group():
    rows = ([{"group": "ID VER", "conf_verb": 0.9}] * 6 + [{"group": "ID VER", "conf_verb": 0.404}] * 3
            + [{"group": "ID VER", "conf_verb": None}] + [{"group": "ID VSA", "conf_verb": 0.1}])
    got = confidence_values(rows)
    assert got == {"ID VER": [(0.9, 0.6), (0.4, 0.3)], "ID VSA": [(0.1, 1.0)]}


def test_effects_table_has_a_row_per_run_and_group():
    rows = effects_table({"oracle": _scores(0.875), "scaffold": _scores(0.25)})
    assert len(rows) == 2 + 2 * 3
    assert rows[2].startswith("| oracle | ID VER | 87.5 | 10.8 | 100.0 | 0.100 | 0.200 | 0.500 | 0.500 | 200 |")
    assert not math.isnan(parse_rate(_scores(0.1)))


def test_a_stage3_run_that_changed_no_weight_misses_its_goal():
    runs = {"scaffold": _scores(0.25)}
    assert [g.met for g in goals(runs, 0, weight_change=0.0)][-2] is False
    assert [g.met for g in goals(runs, 0, weight_change=1.4e-6)][-2] is True


def test_weight_change_is_the_largest_absolute_difference(tmp_path):
    import torch
    from safetensors.torch import save_file

    from emocaliber_rl.demo import weight_change

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    save_file({"w": torch.tensor([1.0, 2.0, 3.0]), "v": torch.zeros(2)}, str(a / "model.safetensors"))
    save_file({"w": torch.tensor([1.0, 2.5, 2.0]), "v": torch.tensor([0.0, -0.25])}, str(b / "model.safetensors"))
    assert weight_change(a, b) == 1.0  # |2.0 - 3.0|
    assert weight_change(a, a) == 0.0


def test_demo_fails_a_stage_whose_model_writes_no_confidence(tmp_path):
    import json

    from emocaliber_rl.demo import require_confidence
    from emocaliber_rl.pipeline_runner import StageFailed

    path = tmp_path / "scores.json"
    path.write_text(json.dumps(_scores(0.3, parsed=(0.0, 0.0, 0.0))))
    with pytest.raises(StageFailed, match=r"stage 'stage2': the cold-start model .* on 0 of 414 test answers"):
        require_confidence(path, "stage2", "the cold-start model")
    # one group with a confidence on a tenth of its 100 answers: usable, the rate is 10/414
    path.write_text(json.dumps(_scores(0.3, parsed=(0.0, 0.1, 0.0))))
    assert require_confidence(path, "stage2", "the cold-start model") == pytest.approx(10 / 414)


def test_demo_fails_a_stage3_that_changed_no_weight(tmp_path):
    import torch
    from safetensors.torch import save_file

    from emocaliber_rl.demo import require_weight_change
    from emocaliber_rl.pipeline_runner import StageFailed

    before, same, moved = (tmp_path / n for n in ("before", "same", "moved"))
    w = {"a": torch.zeros(3), "b": torch.ones(2, 2)}
    for folder, tensors in ((before, w), (same, w), (moved, {"a": torch.tensor([0.0, -0.25, 0.0]), "b": w["b"]})):
        folder.mkdir()
        save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(StageFailed, match="stage 'stage3': 2 GRPO steps left every weight"):
        require_weight_change(before, same, "2 GRPO steps")
    assert require_weight_change(before, moved, "2 GRPO steps") == 0.25


def _record(i: int, task: str, label: str, tmp_path):
    from emocaliber_rl.data.records import Record

    image = tmp_path / f"{i}.jpg"
    image.write_bytes(b"")
    return Record.make(f"img{i}", task, str(image), label)


def test_parity_subset_spreads_over_each_subtask_and_is_scored_by_id(tmp_path):
    """The rollout-parity images: ``per_task`` evenly spaced records of each subtask; ``eval run``'s
    accuracy over exactly those ids (hand-counted below), and a missing prediction is an error."""
    import json

    from emocaliber_rl.data.records import write_manifest
    from emocaliber_rl.demo import _write_parity_manifest, eval_accuracy_on
    from emocaliber_rl.pipeline_runner import StageFailed

    fi8 = ["amusement", "anger", "awe", "contentment", "disgust", "excitement", "fear", "sadness"]
    recs = [_record(i, "FI-8", fi8[i // 2], tmp_path) for i in range(16)]  # two per label, label order
    recs += [_record(100 + i, "FI-2", ("positive", "negative")[i % 2], tmp_path) for i in range(3)]
    write_manifest(tmp_path / "test.jsonl", recs)
    n = _write_parity_manifest(tmp_path / "test.jsonl", tmp_path / "parity.jsonl", 4)
    kept = [json.loads(line)["id"] for line in (tmp_path / "parity.jsonl").read_text().splitlines()]
    # FI-8: indices 0, 4, 8, 12 of 16 (amusement, awe, disgust, fear); FI-2 has only 3, all kept
    assert n == 7 and kept == ["img0", "img4", "img8", "img12", "img100", "img101", "img102"]

    def row(rec, pred):
        return {"id": rec.id, "subtask": rec.subtask, "label": rec.label, "candidates": list(rec.candidates),
                "response": f"<answer>{pred}</answer>"}

    # right on img0 and img8 of the four FI-8 parity images (the others wrong or unparsed), right on
    # img100 only of FI-2; every non-parity image answered right, which must not count
    preds = [row(r, r.label) for r in recs]
    by_id = {r["id"]: r for r in preds}
    by_id["img4"]["response"] = "<answer>anger</answer>"
    by_id["img12"]["response"] = "no answer"
    by_id["img101"]["response"] = "<answer>positive</answer>"  # its label is negative
    by_id["img102"]["response"] = "<answer>negative</answer>"  # and this one positive
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in preds))
    assert eval_accuracy_on(path, tmp_path / "parity.jsonl") == {"FI-2": (1 / 3, 3), "FI-8": (0.5, 4)}
    path.write_text("".join(json.dumps(r) + "\n" for r in preds if r["id"] != "img8"))
    with pytest.raises(StageFailed, match="1 of the 7 images .* have no prediction"):
        eval_accuracy_on(path, tmp_path / "parity.jsonl")
