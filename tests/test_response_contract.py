"""One response grammar across the stages: every reader of a response reads the block the reward
reads (the last one, tags in lower case) and accepts the confidences the reward accepts.

The expected (answer, confidence) of each tricky response is written by hand from the grammar in
``reward_fns/emocaliber.py``'s docstring; the reward's own parse is checked against it first, then
each stage's reader: data import (a conversation row without a label field takes its label from the
answer), the stage-1 export, evaluation, stage-2 labelling, the answer-token probability and stage 2's
confidence-only SFT row check.
"""

from __future__ import annotations

import pytest

from emocaliber_rl.data.conversations import RowError, parse_row
from emocaliber_rl.data.exports import stage1_response
from emocaliber_rl.data.records import Record
from emocaliber_rl.evaluation.parsing import parse_confidence, parse_strict
from emocaliber_rl.inference.probs import answer_content_start
from emocaliber_rl.stage2 import predicted_label
from reward_fns.emocaliber import extract_answer, extract_confidence, parse_response

THINK = ("<think><element>a grey sky</element><human>nobody</human><context>a beach</context>"
         "<interaction>calm</interaction><analysis>quiet</analysis></think>")

# name -> (response, expected answer, expected confidence), by hand.
CASES: dict[str, tuple[str, str | None, float | None]] = {
    # two answers: the last is read (the first is a draft the model corrected)
    "two_answers": (THINK + "<answer>fear</answer> no, <answer>awe</answer><confidence>0.70</confidence>",
                    "awe", 0.70),
    # tags are spelled in lower case; upper-case tags are no tags
    "upper_case_tags": (THINK + "<ANSWER>awe</ANSWER><CONFIDENCE>0.70</CONFIDENCE>", None, None),
    # a percentage is a valid confidence
    "percent": (THINK + "<answer>awe</answer><confidence>83%</confidence>", "awe", 0.83),
    # out of [0, 1]: stated, but not a valid confidence
    "out_of_range": (THINK + "<answer>awe</answer><confidence>1.5</confidence>", "awe", None),
    # an unclosed trailing block: the last *closed* block is read
    "unclosed_last": (THINK + "<answer>awe</answer><confidence>0.40</confidence><confidence>0.9", "awe", 0.40),
}
IDS = list(CASES)


@pytest.mark.parametrize("name", IDS)
def test_reward_reads_the_hand_expected_block(name: str) -> None:
    text, answer, conf = CASES[name]
    parsed = parse_response(text)
    assert (parsed.answer, parsed.confidence) == (answer, conf)
    assert (extract_answer(text), extract_confidence(text)) == (answer, conf)


@pytest.mark.parametrize("name", IDS)
def test_import_takes_the_label_the_reward_reads(name: str, tmp_path) -> None:
    text, answer, _ = CASES[name]
    row = {"id": "r1", "subtask": "FI-8", "image": "x.jpg",
           "conversations": [{"from": "human", "value": "<image>Which emotion?"}, {"from": "gpt", "value": text}]}
    if answer is None:
        with pytest.raises(RowError) as e:
            parse_row(row, lineno=1, source=str(tmp_path / "a.jsonl"), image_root=tmp_path)
        assert e.value.kind == "no_label"
    else:
        rec = parse_row(row, lineno=1, source=str(tmp_path / "a.jsonl"), image_root=tmp_path).record
        assert rec.label == answer


@pytest.mark.parametrize("name", IDS)
def test_stage1_export_keeps_the_answer_the_reward_reads(name: str) -> None:
    text, answer, _ = CASES[name]
    rec = Record.make("r1", "FI-8", "x.jpg", "awe", response=text)
    if answer is None:
        with pytest.raises(RowError) as e:
            stage1_response(rec)
        assert e.value.kind == "no_answer"
        return
    out = stage1_response(rec)
    # the turn ends with the block the reward reads and states no confidence
    assert out.endswith("<answer>awe</answer>") and "confidence>" not in out
    assert extract_answer(out) == answer


@pytest.mark.parametrize("name", IDS)
def test_evaluation_and_stage2_read_what_the_reward_reads(name: str) -> None:
    text, answer, conf = CASES[name]
    assert parse_strict(text, "FI-8") == answer
    assert parse_confidence(text) == conf
    assert predicted_label("FI-8", text)[0] == answer


@pytest.mark.parametrize("name", IDS)
def test_answer_token_starts_inside_the_block_the_reward_reads(name: str) -> None:
    text, answer, _ = CASES[name]
    pos = answer_content_start(text)
    if answer is None:
        assert pos is None
    else:
        assert pos == text.rindex("<answer>") + len("<answer>")


@pytest.mark.parametrize("name", IDS)
def test_confidence_sft_trains_only_confidences_the_reward_accepts(name: str) -> None:
    from emocaliber_rl.verl_plugins.confidence_sft_dataset import last_confidence_span, row_problem

    text, _, conf = CASES[name]
    problem = row_problem([{"role": "user", "content": "q"}, {"role": "assistant", "content": text}])
    assert (problem is None) == (conf is not None), problem
    if conf is not None:
        _, lo, hi, _ = last_confidence_span(text)
        assert extract_confidence(f"<confidence>{text[lo:hi]}</confidence>") == conf
