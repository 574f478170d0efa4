"""One I(e): stage-2 labelling, the stage-3 reward (its default preset), evaluation's default parse
and the validation calibration metrics give the same verdict on every answer phrasing.

The expected verdicts are written by hand. The reward reads ``extra_info`` as veRL hands it over:
from the real stage-3 parquet (``export rl3``), whose ``aliases`` struct holds every subtask's keys
with nulls for the others.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image

from emocaliber_rl.data.exports import export_rl_stage3
from emocaliber_rl.data.records import Record
from emocaliber_rl.evaluation.scoring import samples_from_rows
from emocaliber_rl.prompts import format_response
from emocaliber_rl.stage2 import label_row
from emocaliber_rl.verl_plugins.validation_calibration import calibration_metrics
from reward_fns.emocaliber import compute_score

STEPS = {"element": "a wide canyon", "human": "none", "context": "dusk light",
         "interaction": "scale dwarfs the viewer", "analysis": "a vast quiet scene"}

# (subtask, ground truth as the dataset spells it, answer inside <answer>, correct?)
PHRASINGS: list[tuple[str, str, str, bool]] = [
    ("FI-8", "awe", "awe", True),
    ("FI-8", "awe", "Awe", True),
    ("FI-8", "awe", "AWE.", True),
    ("FI-8", "awe", "It is awe", True),
    ("FI-8", "awe", "the emotion is awe", True),
    ("FI-8", "awe", "awe, I think", True),
    ("FI-8", "awe", "\u201cAwe\u201d\u3002", True),             # curly quotes, CJK full stop
    ("FI-8", "awe", "The image evokes a sense of awe.", True),
    ("FI-8", "awe", "The content of this image evokes awe", True),  # 'content' the noun, not the alias
    ("FI-8", "awe", "I'm afraid the answer is awe", True),      # 'afraid' the idiom
    ("FI-8", "awe", "awe or fear", False),                      # two candidate labels
    ("FI-8", "awe", "awe and amusement", False),
    ("FI-8", "awe", "fear", False),
    ("FI-8", "awe", "awesome", False),                          # 'awe' is not a whole word
    ("FI-8", "awe", "joy", False),                              # not a candidate of FI-8
    ("FI-8", "awe", "I cannot tell", False),
    ("FI-8", "awe", "...", False),
    ("FI-8", "sadness", "sad", True),                           # alias sad -> sadness
    ("FI-8", "sadness", "Sadness", True),
    ("FI-8", "sadness", "sad, maybe sadness", True),            # two spellings of one label
    ("FI-8", "sadness", "saddened", False),
    ("FI-8", "sadness", "sad or angry", False),                 # two labels through aliases
    ("Abstract-8", "content", "content", True),                 # the dataset's own spelling
    ("Abstract-8", "content", "contentment", True),
    ("WebEmo-25", "irritabilty", "irritabilty", True),          # WebEmo's misspelling
    ("WebEmo-25", "irritabilty", "Irritability!", True),
    ("WebEmo-25", "irritabilty", "rage", False),
    ("WebEmo-25", "irritabilty", "courage", False),             # 'rage' only as a substring
    ("FI-2", "positive", "Positive.", True),
    ("FI-2", "positive", "pos", True),
    ("FI-2", "positive", "positive, not negative", False),
    ("FI-2", "positive", "The sentiment is negative", False),
]


def _records(tmp: Path) -> list[Record]:
    image = tmp / "img.png"
    Image.new("RGB", (64, 48), (90, 120, 200)).save(image)
    return [Record.make(str(i), task, image, label, steps=STEPS)
            for i, (task, label, _, _) in enumerate(PHRASINGS)]


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list]:
    import pandas as pd

    tmp = tmp_path_factory.mktemp("agree")
    records = _records(tmp)
    parquet = export_rl_stage3(records, tmp / "rl.parquet").path
    rl_rows = pd.read_parquet(parquet).to_dict(orient="records")
    assert len(rl_rows) == len(PHRASINGS)

    reward, stage2, reasons, infos = [], [], [], []
    for rec, row, (_, _, answer, _) in zip(records, rl_rows, PHRASINGS):
        out = compute_score(row["data_source"], format_response(STEPS, answer, 0.8),
                            row["reward_model"]["ground_truth"], row["extra_info"])
        infos.append(out)
        reward.append(out["correct"] == 1.0)
        target, reason, _ = label_row({"id": rec.id, "subtask": rec.subtask, "label": rec.label,
                                       "candidates": rec.candidates,
                                       "response": format_response(STEPS, answer),
                                       "logprobs": [math.log(0.9)] * 4})
        # a row stage 2 cannot label (no single label named) is a wrong answer, left out
        stage2.append(target is not None and target["correct"] and target["confidence"] >= 0.5)
        reasons.append(reason)
    samples = samples_from_rows(
        [(i + 1, {"subtask": rec.subtask, "label": rec.label, "candidates": rec.candidates,
                  "response": format_response(STEPS, answer, 0.8)})
         for i, (rec, (_, _, answer, _)) in enumerate(zip(records, PHRASINGS))])
    evaluation = [bool(c) for c in samples.correct.tolist()]
    return {"reward": reward, "stage2": stage2, "reasons": reasons, "evaluation": evaluation,
            "infos": infos, "data_sources": [r["data_source"] for r in rl_rows]}


def test_at_least_twenty_phrasings() -> None:
    assert len(PHRASINGS) >= 20
    assert {ok for *_, ok in PHRASINGS} == {True, False}


@pytest.mark.parametrize("consumer", ["reward", "stage2", "evaluation"])
def test_every_consumer_gives_the_hand_written_verdict(verdicts: dict, consumer: str) -> None:
    wrong = [(p[0], p[2], p[3]) for p, got in zip(PHRASINGS, verdicts[consumer]) if got != p[3]]
    assert wrong == []


def test_stage2_rejects_exactly_the_answers_naming_no_single_label(verdicts: dict) -> None:
    got = {p[2]: r for p, r in zip(PHRASINGS, verdicts["reasons"]) if r}
    assert got == {
        "awe or fear": "several_labels", "awe and amusement": "several_labels",
        "awesome": "unknown_label", "joy": "unknown_label", "I cannot tell": "unknown_label",
        "...": "empty_answer", "saddened": "unknown_label", "sad or angry": "several_labels",
        "courage": "unknown_label", "positive, not negative": "several_labels",
    }


def test_validation_calibration_counts_the_same_correct_answers(verdicts: dict) -> None:
    infos = verdicts["infos"]
    extra = {k: [info[k] for info in infos] for k in infos[0]}
    metrics = calibration_metrics(verdicts["data_sources"], extra)
    n_right = sum(ok for *_, ok in PHRASINGS)
    assert metrics["val-calib/all/accuracy"] == pytest.approx(n_right / len(PHRASINGS))
    fi8 = [ok for task, _, _, ok in PHRASINGS if task == "FI-8"]
    assert metrics["val-calib/FI-8/accuracy"] == pytest.approx(sum(fi8) / len(fi8))
