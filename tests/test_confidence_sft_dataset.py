"""ConfidenceOnlySFTDataset: exactly the confidence tokens carry loss (paper Eq. 3), on Qwen2.5-VL's
real vocabulary (the tiny model's tokenizer, checked against published tokenizations in
test_qwen_tokenizer.py).

Expected masks are written out by hand as (token, loss) lists: on Qwen's BPE the tags are text and
merge across boundaries (``</answer><confidence>`` is ``</ answer >< confidence >``), so each list
says which straddling token carries loss. Everything but the mask is compared with veRL's own
``MultiTurnSFTDataset`` on the same rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import draw_image, png_bytes

RESPONSE = (
    "<think><element>a red balloon over a grey street</element><human>a child reaches up</human>"
    "<context>wet pavement at dusk</context><interaction>the balloon stands out</interaction>"
    "<analysis>a light, playful feeling</analysis></think><answer>amusement</answer>"
)
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
USER = {"role": "user", "content": "<image>Which emotion does this image evoke?"}


def _row(i: int, assistant: str | list[dict[str, str]], *, rid: str | None = None) -> dict[str, Any]:
    turns = [{"role": "assistant", "content": assistant}] if isinstance(assistant, str) else assistant
    return {"messages": [SYSTEM, USER, *turns], "images": [{"bytes": png_bytes(draw_image(i)), "path": None}],
            "id": rid or f"row-{i}", "subtask": "FI-8", "label": "amusement"}


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from emocaliber_rl.data.exports import sft_schema

    pq.write_table(pa.Table.from_pylist(rows, schema=sft_schema()), path)
    return path


def _cfg(**kw: Any):
    mask = kw.pop("confidence_mask", {})
    base = {"pad_mode": "no_padding", "max_length": 512, "truncation": "error", "messages_key": "messages",
            "confidence_mask": mask}
    cfg = OmegaConf.create({**base, **kw})
    OmegaConf.set_struct(cfg, True)  # as in veRL: unknown keys would raise
    return cfg


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    return processor.tokenizer, processor


def _ours(path: Path, tiny, **cfg: Any):
    from emocaliber_rl.verl_plugins.confidence_sft_dataset import ConfidenceOnlySFTDataset

    tok, processor = tiny
    return ConfidenceOnlySFTDataset(str(path), tok, _cfg(**cfg), processor=processor)


def _stock(path: Path, tiny, **cfg: Any):
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    tok, processor = tiny
    return MultiTurnSFTDataset(str(path), tok, _cfg(**cfg), processor=processor)


# ------------------------------------------------------------------------------------------------
# Exact loss tokens

# The tail of every CASES row after "...<answer>amusement": veRL renders the turn as
# "<|im_start|>assistant\n" + content + "<|im_end|>\n".
ANSWER_END = [("</", 0), ("answer", 0)]

# (id, assistant turn, (token, loss) from the end of </answer> to the end of the sequence) with the
# value-only mask (the class default): only whole tokens inside the value.
CASES = [
    ("c083", RESPONSE + "<confidence>0.83</confidence>",
     [("><", 0), ("confidence", 0), (">", 0), ("0", 1), (".", 1), ("8", 1), ("3", 1),
      ("</", 0), ("confidence", 0), (">", 0), ("<|im_end|>", 0), ("\n", 0)]),
    ("c100", RESPONSE + "<confidence>1.00</confidence>",
     [("><", 0), ("confidence", 0), (">", 0), ("1", 1), (".", 1), ("0", 1), ("0", 1),
      ("</", 0), ("confidence", 0), (">", 0), ("<|im_end|>", 0), ("\n", 0)]),
    # BPE merges the tag's ">" with the value's ".": that token stays out, only "5" is trained
    ("c05", RESPONSE + "<confidence>.5</confidence>",
     [("><", 0), ("confidence", 0), (">.", 0), ("5", 1),
      ("</", 0), ("confidence", 0), (">", 0), ("<|im_end|>", 0), ("\n", 0)]),
    ("c0", RESPONSE + "<confidence>0</confidence>",
     [("><", 0), ("confidence", 0), (">", 0), ("0", 1),
      ("</", 0), ("confidence", 0), (">", 0), ("<|im_end|>", 0), ("\n", 0)]),
    # spaces inside the tags belong to the value; the last one is merged into " </" and stays out
    ("cspace", RESPONSE + "<confidence> 0.7 </confidence>",
     [("><", 0), ("confidence", 0), (">", 0), (" ", 1), ("0", 1), (".", 1), ("7", 1),
      (" </", 0), ("confidence", 0), (">", 0), ("<|im_end|>", 0), ("\n", 0)]),
    # several pairs: only the last is the target; the earlier one is part of the response y
    ("several", RESPONSE.replace("playful feeling", "playful feeling <confidence>0.40</confidence>")
     + "<confidence>0.83</confidence>",
     [("><", 0), ("confidence", 0), (">", 0), ("0", 1), (".", 1), ("8", 1), ("3", 1),
      ("</", 0), ("confidence", 0), (">", 0), ("<|im_end|>", 0), ("\n", 0)]),
    # text after the closing tag carries no loss (here BPE merges it with the tag: ">\n")
    ("trailing", RESPONSE + "<confidence>0.61</confidence>\n",
     [("><", 0), ("confidence", 0), (">", 0), ("0", 1), (".", 1), ("6", 1), ("1", 1),
      ("</", 0), ("confidence", 0), (">\n", 0), ("<|im_end|>", 0), ("\n", 0)]),
]


def _flags(tok, sample, n: int) -> list[tuple[str, int]]:
    """The last ``n`` real (non-padding) tokens of a sample with their loss flags."""
    ids, mask = sample["input_ids"], sample["loss_mask"]
    if "attention_mask" in sample:
        keep = sample["attention_mask"].bool()
        ids, mask = ids[keep], mask[keep]
    return [(tok.decode([int(i)]), int(m)) for i, m in zip(ids[-n:], mask[-n:], strict=True)]


def _check_flags(tok, sample, expected: list[tuple[str, int]], label: str) -> None:
    assert _flags(tok, sample, len(expected)) == expected, label
    # nothing before the listed tail carries loss
    assert int(sample["loss_mask"].sum()) == sum(f for _, f in expected), label


@pytest.fixture(scope="module")
def cases_parquet(tmp_path_factory) -> Path:
    rows = [_row(i, text, rid=rid) for i, (rid, text, _) in enumerate(CASES)]
    return _write(tmp_path_factory.mktemp("conf-sft") / "cases.parquet", rows)


@pytest.mark.parametrize("pad_mode", ["no_padding", "right"])
@pytest.mark.parametrize("locate", ["auto", "char_offsets"])
def test_value_only_trains_exactly_the_value_tokens(cases_parquet, tiny, pad_mode, locate):
    tok, _ = tiny
    ours = _ours(cases_parquet, tiny, pad_mode=pad_mode, confidence_mask={"locate": locate})
    stock = _stock(cases_parquet, tiny, pad_mode=pad_mode)
    assert ours.use_token_ids is False  # Qwen's vocabulary: the tags are text, found by characters
    for i, (rid, _, tail) in enumerate(CASES):
        mine, ref = ours[i], stock[i]
        ids, mask = mine["input_ids"], mine["loss_mask"]
        _check_flags(tok, mine, ANSWER_END + tail, rid)
        assert set(mask.unique().tolist()) <= {0, 1} and mask.dtype == ref["loss_mask"].dtype

        # everything but the mask is veRL's: ids, mrope position ids (4, L), images
        assert torch.equal(ids, ref["input_ids"]), rid
        assert torch.equal(mine["position_ids"], ref["position_ids"]), rid
        assert mine["position_ids"].shape == (4, ids.shape[0])
        assert set(mine["multi_modal_inputs"]) >= {"pixel_values", "image_grid_thw"}
        for k, v in ref["multi_modal_inputs"].items():
            assert torch.equal(mine["multi_modal_inputs"][k], v), (rid, k)
        # ... and the new mask is a subset of veRL's (inside the assistant turn)
        assert bool((ref["loss_mask"][mask.bool()] == 1).all())
        if pad_mode == "right":
            assert ids.shape[0] == 512 and torch.equal(mine["attention_mask"], ref["attention_mask"])
            assert int(mask[mine["attention_mask"] == 0].sum()) == 0
        else:
            assert "attention_mask" not in mine


# (mask keys, (token, loss) after "</ answer" for c083, c05, cspace, trailing)
WITH_TAGS = [
    # the recipe's default (stage2_sft.yaml): "><" holds the "<" of <confidence> and carries loss
    ({"include_open_tag": True, "include_close_tag": True, "include_end_of_turn": True}, {
        "c083": [("><", 1), ("confidence", 1), (">", 1), ("0", 1), (".", 1), ("8", 1), ("3", 1),
                 ("</", 1), ("confidence", 1), (">", 1), ("<|im_end|>", 1), ("\n", 0)],
        "c05": [("><", 1), ("confidence", 1), (">.", 1), ("5", 1),
                ("</", 1), ("confidence", 1), (">", 1), ("<|im_end|>", 1), ("\n", 0)],
        "cspace": [("><", 1), ("confidence", 1), (">", 1), (" ", 1), ("0", 1), (".", 1), ("7", 1),
                   (" </", 1), ("confidence", 1), (">", 1), ("<|im_end|>", 1), ("\n", 0)],
        # "\n" between </confidence> and <|im_end|>: the end of turn does not follow the tag, no loss
        "trailing": [("><", 1), ("confidence", 1), (">", 1), ("0", 1), (".", 1), ("6", 1), ("1", 1),
                     ("</", 1), ("confidence", 1), (">\n", 1), ("<|im_end|>", 0), ("\n", 0)],
    }),
    ({"include_open_tag": True}, {
        "c083": [("><", 1), ("confidence", 1), (">", 1), ("0", 1), (".", 1), ("8", 1), ("3", 1),
                 ("</", 0), ("confidence", 0), (">", 0), ("<|im_end|>", 0), ("\n", 0)],
        "c05": [("><", 1), ("confidence", 1), (">.", 1), ("5", 1),
                ("</", 0), ("confidence", 0), (">", 0), ("<|im_end|>", 0), ("\n", 0)],
        # the value's last space is inside " </": it overlaps the value, so it carries loss
        "cspace": [("><", 1), ("confidence", 1), (">", 1), (" ", 1), ("0", 1), (".", 1), ("7", 1),
                   (" </", 1), ("confidence", 0), (">", 0), ("<|im_end|>", 0), ("\n", 0)],
        "trailing": [("><", 1), ("confidence", 1), (">", 1), ("0", 1), (".", 1), ("6", 1), ("1", 1),
                     ("</", 0), ("confidence", 0), (">\n", 0), ("<|im_end|>", 0), ("\n", 0)],
    }),
    ({"include_close_tag": True}, {
        "c083": [("><", 0), ("confidence", 0), (">", 0), ("0", 1), (".", 1), ("8", 1), ("3", 1),
                 ("</", 1), ("confidence", 1), (">", 1), ("<|im_end|>", 0), ("\n", 0)],
        # ">." overlaps the value: with any tag trained, straddling tokens carry loss
        "c05": [("><", 0), ("confidence", 0), (">.", 1), ("5", 1),
                ("</", 1), ("confidence", 1), (">", 1), ("<|im_end|>", 0), ("\n", 0)],
        "cspace": [("><", 0), ("confidence", 0), (">", 0), (" ", 1), ("0", 1), (".", 1), ("7", 1),
                   (" </", 1), ("confidence", 1), (">", 1), ("<|im_end|>", 0), ("\n", 0)],
        "trailing": [("><", 0), ("confidence", 0), (">", 0), ("0", 1), (".", 1), ("6", 1), ("1", 1),
                     ("</", 1), ("confidence", 1), (">\n", 1), ("<|im_end|>", 0), ("\n", 0)],
    }),
    # the end of turn alone: the value and <|im_end|>, not the close tag between them
    ({"include_end_of_turn": True}, {
        "c083": [("><", 0), ("confidence", 0), (">", 0), ("0", 1), (".", 1), ("8", 1), ("3", 1),
                 ("</", 0), ("confidence", 0), (">", 0), ("<|im_end|>", 1), ("\n", 0)],
        "c05": [("><", 0), ("confidence", 0), (">.", 1), ("5", 1),
                ("</", 0), ("confidence", 0), (">", 0), ("<|im_end|>", 1), ("\n", 0)],
        "cspace": [("><", 0), ("confidence", 0), (">", 0), (" ", 1), ("0", 1), (".", 1), ("7", 1),
                   (" </", 1), ("confidence", 0), (">", 0), ("<|im_end|>", 1), ("\n", 0)],
        "trailing": [("><", 0), ("confidence", 0), (">", 0), ("0", 1), (".", 1), ("6", 1), ("1", 1),
                     ("</", 0), ("confidence", 0), (">\n", 0), ("<|im_end|>", 0), ("\n", 0)],
    }),
]


@pytest.mark.parametrize(("mask", "tails"), WITH_TAGS, ids=["recipe-default", "open", "close", "end-of-turn"])
def test_with_tags_every_overlapping_token_carries_loss(cases_parquet, tiny, mask, tails):
    tok, _ = tiny
    rids = [rid for rid, _, _ in CASES]
    for pad_mode in ("no_padding", "right"):
        ds = _ours(cases_parquet, tiny, pad_mode=pad_mode, confidence_mask=mask)
        for rid, tail in tails.items():
            _check_flags(tok, ds[rids.index(rid)], ANSWER_END + tail, f"{rid} {pad_mode}")


def test_include_response_trains_the_whole_content_and_not_the_role_header(cases_parquet, tiny):
    # The demo's anchor (not Eq. 3): the scaffold's own text before <confidence> carries loss too.
    tok, _ = tiny
    rids = [rid for rid, _, _ in CASES]
    mask = {"include_open_tag": True, "include_close_tag": True, "include_end_of_turn": True,
            "include_response": True}
    for pad_mode in ("no_padding", "right"):
        ds = _ours(cases_parquet, tiny, pad_mode=pad_mode, confidence_mask=mask)
        stock = _stock(cases_parquet, tiny, pad_mode=pad_mode)
        sample, ref = ds[rids.index("c083")], stock[rids.index("c083")]
        keep = sample["attention_mask"].bool() if "attention_mask" in sample else torch.ones_like(sample["loss_mask"]).bool()
        ids, flags = sample["input_ids"][keep].tolist(), sample["loss_mask"][keep].tolist()
        pieces = [(tok.decode([i]), f) for i, f in zip(ids, flags, strict=True)]
        # the role header and everything before it: no loss; "<|im_start|>assistant\n" is 3 tokens
        start = max(i for i, (t, _) in enumerate(pieces) if t == "<|im_start|>")
        assert [p for p in pieces[start:start + 3]] == [("<|im_start|>", 0), ("assistant", 0), ("\n", 0)], pad_mode
        assert not any(f for _, f in pieces[:start + 3]), pad_mode
        # from the first token of the content to <|im_end|>: all loss, then the template's "\n" none
        body = pieces[start + 3:]
        assert body[0] == ("<th", 1) and body[-2:] == [("<|im_end|>", 1), ("\n", 0)], pad_mode
        assert all(f == 1 for _, f in body[:-1]), pad_mode
        assert "".join(t for t, _ in body[:-2]) == RESPONSE + "<confidence>0.83</confidence>"
        # veRL's stock mask trains the same content tokens (it also trains the trailing "\n")
        ref_keep = ref["attention_mask"].bool() if "attention_mask" in ref else keep
        assert int(sample["loss_mask"].sum()) == len(body) - 1
        assert int(ref["loss_mask"][ref_keep].sum()) >= len(body) - 1


# exclude_answer: (id, assistant turn, the body's tokens that carry no loss, and the trained text as
# hand-made replacements of the turn), located by hand on Qwen's vocabulary. A token sharing any character
# with an <answer> content is out, tag characters merged into it included: "< answer >s ad ness" loses ">s"
# (the tag's ">" goes with it), "> Sad .</ answer" loses ".</" (the close tag keeps only "answer>").
EXCLUDE_CASES = [
    ("amuse", RESPONSE + "<confidence>0.83</confidence>", ["am", "usement"],
     [("<answer>amusement</answer>", "<answer></answer>")]),
    ("sad", RESPONSE.replace(">amusement<", ">sadness<") + "<confidence>0.22</confidence>", [">s", "ad", "ness"],
     [("<answer>sadness</answer>", "<answer</answer>")]),
    ("spaced", RESPONSE.replace(">amusement<", "> Sad.<") + "<confidence>0.22</confidence>", [" Sad", ".</"],
     [("<answer> Sad.</answer>", "<answer>answer>")]),
    # every answer block of the response is left out, not only the last (the one the label is read from)
    ("two", RESPONSE.replace("playful feeling", "playful feeling, so not <answer>awe</answer> yet")
     + "<confidence>0.83</confidence>", ["awe", "am", "usement"],
     [("<answer>awe</answer>", "<answer></answer>"), ("<answer>amusement</answer>", "<answer></answer>")]),
]


def test_exclude_answer_keeps_the_answer_content_out_of_the_anchor(tmp_path, tiny):
    # The anchor without the tokens that decide the emotion (paper 4.7): response and confidence in,
    # <answer> content out.
    tok, _ = tiny
    rows = [_row(i, text, rid=rid) for i, (rid, text, _, _) in enumerate(EXCLUDE_CASES)]
    path = _write(tmp_path / "answers.parquet", rows)
    anchor = {"include_open_tag": True, "include_close_tag": True, "include_end_of_turn": True,
              "include_response": True}
    for pad_mode in ("no_padding", "right"):
        ds = _ours(path, tiny, pad_mode=pad_mode, confidence_mask={**anchor, "exclude_answer": True})
        full = _ours(path, tiny, pad_mode=pad_mode, confidence_mask=anchor)
        for i, (rid, text, out, replacements) in enumerate(EXCLUDE_CASES):
            sample, ref = ds[i], full[i]
            keep = (sample["attention_mask"].bool() if "attention_mask" in sample
                    else torch.ones_like(sample["loss_mask"]).bool())
            pieces = [(tok.decode([t]), f) for t, f in zip(sample["input_ids"][keep].tolist(),
                                                          sample["loss_mask"][keep].tolist(), strict=True)]
            # after "<|im_start|>assistant\n": the turn's content, <|im_end|> and the template's "\n"
            start = max(k for k, (t, _) in enumerate(pieces) if t == "<|im_start|>") + 3
            body = pieces[start:-1]
            assert not any(f for _, f in pieces[:start]) and pieces[-1] == ("\n", 0), (rid, pad_mode)
            assert "".join(t for t, _ in body) == text + "<|im_end|>", rid
            # the answer content's tokens, and only they, carry no loss
            assert [t for t, f in body if not f] == out, (rid, pad_mode)
            # decoded, the trained tokens are the whole turn with each answer content cut out
            expected = text + "<|im_end|>"
            for old, new in replacements:
                assert expected.count(old) == 1
                expected = expected.replace(old, new)
            assert "".join(t for t, f in body if f) == expected, (rid, pad_mode)
            # otherwise the plain anchor's sample: same ids, its mask minus the answer tokens
            assert torch.equal(sample["input_ids"], ref["input_ids"])
            assert int(ref["loss_mask"].sum()) - int(sample["loss_mask"].sum()) == len(out), rid
            assert bool((sample["loss_mask"] <= ref["loss_mask"]).all()), rid


def test_exclude_answer_changes_nothing_without_include_response(cases_parquet, tiny):
    tags = {"include_open_tag": True, "include_close_tag": True, "include_end_of_turn": True}
    ours = _ours(cases_parquet, tiny, confidence_mask={**tags, "exclude_answer": True})
    plain = _ours(cases_parquet, tiny, confidence_mask=tags)
    assert ours.exclude_answer is True
    for i in range(len(CASES)):
        assert torch.equal(ours[i]["loss_mask"], plain[i]["loss_mask"])


def test_include_response_refuses_token_ids(tmp_path, tok_with_tag_tokens):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from emocaliber_rl.verl_plugins.confidence_sft_dataset import ConfidenceOnlySFTDataset

    path = tmp_path / "text.parquet"
    pq.write_table(pa.Table.from_pylist([_text_row("c083", CASES[0][1])]), path)
    with pytest.raises(ValueError, match="include_response needs locate=char_offsets"):
        ConfidenceOnlySFTDataset(str(path), tok_with_tag_tokens,
                                 _cfg(confidence_mask={"locate": "token_ids", "include_response": True}), processor=None)
    # auto picks character offsets: the response is found by characters, the tags stay whole ids
    ds = ConfidenceOnlySFTDataset(str(path), tok_with_tag_tokens,
                                  _cfg(confidence_mask={"include_response": True}), processor=None)
    assert ds.use_token_ids is False
    masked = [tok_with_tag_tokens.decode([t]) for t in ds[0]["input_ids"][ds[0]["loss_mask"].bool()].tolist()]
    # the tags were not chosen: as whole ids they carry no loss, the response and the value do
    assert "".join(masked) == RESPONSE + "0.83"


def test_only_the_last_assistant_turn_counts(tmp_path, tiny):
    tok, _ = tiny
    turns = [
        {"role": "assistant", "content": "<answer>amusement</answer><confidence>0.20</confidence>"},
        {"role": "user", "content": "Look again."},
        {"role": "assistant", "content": RESPONSE + "<confidence>0.90</confidence>"},
    ]
    path = _write(tmp_path / "multi.parquet", [_row(0, turns)])
    sample = _ours(path, tiny)[0]
    stock = _stock(path, tiny)[0]
    masked = [tok.decode([t]) for t in sample["input_ids"][sample["loss_mask"].bool()].tolist()]
    assert masked == ["0", ".", "9", "0"]
    # veRL's stock mask trains both assistant turns: far more tokens
    assert int(stock["loss_mask"].sum()) > 40 > int(sample["loss_mask"].sum())


# ------------------------------------------------------------------------------------------------
# Rows without a trainable confidence: an error naming the rows, before any training


def test_rows_without_confidence_are_an_error_naming_them(tmp_path, tiny):
    from emocaliber_rl.verl_plugins.confidence_sft_dataset import ConfidenceSpanError

    bad = [
        ("none", RESPONSE, "the last assistant message has no <confidence>"),
        ("unclosed", RESPONSE + "<confidence>0.5",
         "the last <confidence> of the last assistant message is not closed by </confidence>"),
        ("word", RESPONSE + "<confidence>high</confidence>", "the confidence 'high' is not a number"),
        ("range", RESPONSE + "<confidence>1.5</confidence>", "the confidence '1.5' is outside [0, 1]"),
        ("empty", RESPONSE + "<confidence></confidence>", "the confidence '' is not a number"),
        ("in-user-only", [], "no assistant message"),
    ]
    rows = [_row(0, RESPONSE + "<confidence>0.83</confidence>", rid="good")]
    rows += [_row(i + 1, text, rid=rid) for i, (rid, text, _) in enumerate(bad)]
    path = _write(tmp_path / "bad.parquet", rows)
    with pytest.raises(ConfidenceSpanError) as err:
        _ours(path, tiny)
    msg = str(err.value)
    assert f"{len(bad)} of {len(rows)} rows" in msg
    for i, (rid, _, why) in enumerate(bad):
        assert f"row {i + 1} (id '{rid}'): {why}" in msg, msg
    assert "'good'" not in msg


def test_truncated_confidence_is_an_error(tmp_path, tiny):
    from emocaliber_rl.verl_plugins.confidence_sft_dataset import ConfidenceSpanError

    tok, _ = tiny
    path = _write(tmp_path / "long.parquet", [_row(0, RESPONSE + "<confidence>0.83</confidence>", rid="long")])
    ids = _stock(path, tiny)[0]["input_ids"].tolist()
    pieces = [tok.decode([t]) for t in ids]
    value_start = max(i for i in range(len(pieces) - 2) if pieces[i : i + 3] == ["><", "confidence", ">"]) + 3
    assert pieces[value_start : value_start + 4] == ["0", ".", "8", "3"]
    cut = value_start + 1  # keeps "0" only
    for pad_mode in ("no_padding", "right"):
        ds = _ours(path, tiny, pad_mode=pad_mode, truncation="right", max_length=cut)
        with pytest.raises(ConfidenceSpanError, match=r"row 0 \(id 'long'\): 1 of 4 confidence tokens left"):
            ds[0]
        # with enough room the same row is fine
        assert int(_ours(path, tiny, pad_mode=pad_mode, truncation="right", max_length=cut + 4)[0]["loss_mask"]
                   .sum()) == 4


def test_bad_locate_value(cases_parquet, tiny):
    with pytest.raises(ValueError, match="locate must be one of"):
        _ours(cases_parquet, tiny, confidence_mask={"locate": "regex"})


# ------------------------------------------------------------------------------------------------
# token_ids: Qwen's tokenizer extended with the tags as added tokens (no merge can straddle a tag)


@pytest.fixture(scope="module")
def tok_with_tag_tokens(tiny_model_dir):
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ("<confidence>", "</confidence>")])
    return tok


def _text_row(rid: str, assistant: str) -> dict[str, Any]:
    return {"messages": [SYSTEM, {"role": "user", "content": "Which emotion does this image evoke?"},
                         {"role": "assistant", "content": assistant}], "id": rid}


def test_token_ids_with_added_tags_equals_char_offsets(tmp_path, tok_with_tag_tokens):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from emocaliber_rl.verl_plugins.confidence_sft_dataset import ConfidenceOnlySFTDataset

    tok = tok_with_tag_tokens
    rows = [_text_row(rid, text) for rid, text, _ in CASES]
    path = tmp_path / "text.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    recipe = {"include_open_tag": True, "include_close_tag": True, "include_end_of_turn": True}

    def dataset(**mask: Any):
        return ConfidenceOnlySFTDataset(str(path), tok, _cfg(confidence_mask=mask), processor=None)

    by_id = dataset(**recipe)
    assert by_id.use_token_ids is True
    # the tag is one id, so "</answer>" ends with its own ">" and nothing straddles
    _check_flags(tok, by_id[0], [("</", 0), ("answer", 0), (">", 0), ("<confidence>", 1), ("0", 1), (".", 1),
                                 ("8", 1), ("3", 1), ("</confidence>", 1), ("<|im_end|>", 1), ("\n", 0)], "c083")
    assert by_id[0]["position_ids"].shape == by_id[0]["input_ids"].shape  # text-only: 1-D positions
    for mask in ({}, {"include_open_tag": True}, {"include_close_tag": True}, {"include_end_of_turn": True},
                 recipe):
        ids_mode, chars_mode = dataset(locate="token_ids", **mask), dataset(locate="char_offsets", **mask)
        assert chars_mode.use_token_ids is False
        for i, (rid, _, _) in enumerate(CASES):
            assert torch.equal(ids_mode[i]["loss_mask"], chars_mode[i]["loss_mask"]), (rid, mask)


def test_token_ids_needs_the_tags_as_added_tokens(cases_parquet, tiny):
    with pytest.raises(ValueError, match="locate=token_ids needs"):
        _ours(cases_parquet, tiny, confidence_mask={"locate": "token_ids"})


# ------------------------------------------------------------------------------------------------
# The contract with `emocaliber stage2 label`: its parquet trains as is


def test_stage2_label_output_trains_on_its_targets(tmp_path, tiny):
    from emocaliber_rl.data.exports import prompt_messages
    from emocaliber_rl.prompts import format_response
    from emocaliber_rl.stage2 import label_generations

    tok, _ = tiny
    steps = {"element": "a red balloon", "human": "a child", "context": "a street", "interaction": "contrast",
             "analysis": "playful"}
    lines = []
    for i, (subtask, label, pred) in enumerate([("FI-8", "amusement", "amusement"), ("FI-8", "anger", "awe"),
                                                ("FI-2", "positive", "negative")]):
        image = tmp_path / f"img{i}.png"
        draw_image(i).save(image)
        lines.append({"id": f"g{i}", "subtask": subtask, "label": label, "image": str(image),
                      "messages": prompt_messages(subtask, ask_confidence=False),
                      "response": format_response(steps, pred), "logprobs": [-0.1, -0.3 * i, -0.2]})
    (tmp_path / "gen.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    result = label_generations(tmp_path / "gen.jsonl", tmp_path / "stage2.parquet", plot=False)
    assert result.kept == len(lines)

    targets = {json.loads(x)["id"]: json.loads(x)["confidence"]
               for x in (tmp_path / "stage2.parquet.targets.jsonl").read_text().splitlines()}
    ds = _ours(tmp_path / "stage2.parquet", tiny)
    for i in range(len(ds)):
        sample = ds[i]
        rid = str(ds.dataframe["id"].iloc[i])
        masked = sample["input_ids"][sample["loss_mask"].bool()].tolist()
        assert masked == tok.encode(f"{targets[rid]:.2f}", add_special_tokens=False), rid
