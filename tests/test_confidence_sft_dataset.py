"""ConfidenceOnlySFTDataset: exactly the confidence value tokens carry loss (paper Eq. 3).

Expected ids are computed independently: the value string tokenized alone, placed right after the
last ``<confidence>`` id of the sequence; everything else is compared with veRL's own
``MultiTurnSFTDataset`` on the same rows.
"""

from __future__ import annotations

import json
import re
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

# (id, assistant turn, the value that must carry loss)
CASES = [
    ("c083", RESPONSE + "<confidence>0.83</confidence>", "0.83"),
    ("c100", RESPONSE + "<confidence>1.00</confidence>", "1.00"),
    ("c05", RESPONSE + "<confidence>.5</confidence>", ".5"),
    ("c0", RESPONSE + "<confidence>0</confidence>", "0"),
    # spaces inside the tags are part of what lies strictly between them
    ("cspace", RESPONSE + "<confidence> 0.7 </confidence>", " 0.7 "),
    # several pairs: only the last is the target; the earlier one is part of the response y
    ("several", RESPONSE.replace("playful feeling", "playful feeling <confidence>0.40</confidence>")
     + "<confidence>0.83</confidence>", "0.83"),
    # text after the closing tag carries no loss
    ("trailing", RESPONSE + "<confidence>0.61</confidence>\n", "0.61"),
]


@pytest.fixture(scope="module")
def cases_parquet(tmp_path_factory) -> Path:
    rows = [_row(i, text, rid=rid) for i, (rid, text, _) in enumerate(CASES)]
    return _write(tmp_path_factory.mktemp("conf-sft") / "cases.parquet", rows)


@pytest.mark.parametrize("pad_mode", ["no_padding", "right"])
@pytest.mark.parametrize("locate", ["auto", "char_offsets"])
def test_loss_tokens_are_exactly_the_confidence_value(cases_parquet, tiny, pad_mode, locate):
    tok, _ = tiny
    open_id = tok.convert_tokens_to_ids("<confidence>")
    close_id = tok.convert_tokens_to_ids("</confidence>")
    ours = _ours(cases_parquet, tiny, pad_mode=pad_mode, confidence_mask={"locate": locate})
    stock = _stock(cases_parquet, tiny, pad_mode=pad_mode)
    assert ours.use_token_ids is (locate == "auto")  # the tiny tokenizer has the tags as added tokens
    for i, (rid, _, value) in enumerate(CASES):
        mine, ref = ours[i], stock[i]
        ids, mask = mine["input_ids"], mine["loss_mask"]

        value_ids = tok.encode(value, add_special_tokens=False)
        start = int((ids == open_id).nonzero()[-1]) + 1
        expected = list(range(start, start + len(value_ids)))
        assert mask.nonzero()[:, 0].tolist() == expected, rid
        assert ids[expected].tolist() == value_ids, rid
        assert int(ids[start - 1]) == open_id and int(ids[expected[-1] + 1]) == close_id, rid
        assert set(mask.unique().tolist()) <= {0, 1} and mask.dtype == ref["loss_mask"].dtype

        # everything but the mask is veRL's: ids, mrope position ids (4, L), images
        assert torch.equal(ids, ref["input_ids"]), rid
        assert torch.equal(mine["position_ids"], ref["position_ids"]), rid
        assert mine["position_ids"].shape == (4, ids.shape[0])
        assert set(mine["multi_modal_inputs"]) >= {"pixel_values", "image_grid_thw"}
        for k, v in ref["multi_modal_inputs"].items():
            assert torch.equal(mine["multi_modal_inputs"][k], v), (rid, k)
        # ... and the new mask is a subset of veRL's (inside the assistant turn)
        assert bool((ref["loss_mask"][expected] == 1).all())
        if pad_mode == "right":
            assert ids.shape[0] == 512 and torch.equal(mine["attention_mask"], ref["attention_mask"])
            assert int(mask[mine["attention_mask"] == 0].sum()) == 0
        else:
            assert "attention_mask" not in mine


@pytest.mark.parametrize(("open_tag", "close_tag"), [(True, False), (False, True), (True, True)])
def test_optional_tags_carry_loss(cases_parquet, tiny, open_tag, close_tag):
    tok, _ = tiny
    open_id = tok.convert_tokens_to_ids("<confidence>")
    close_id = tok.convert_tokens_to_ids("</confidence>")
    for locate in ("auto", "char_offsets"):
        ds = _ours(cases_parquet, tiny, confidence_mask={"include_open_tag": open_tag,
                                                          "include_close_tag": close_tag, "locate": locate})
        sample = ds[0]  # <confidence>0.83</confidence>
        masked = sample["input_ids"][sample["loss_mask"].bool()].tolist()
        expected = [open_id] * open_tag + tok.encode("0.83", add_special_tokens=False) + [close_id] * close_tag
        assert masked == expected, locate
        # still contiguous: one span
        pos = sample["loss_mask"].nonzero()[:, 0]
        assert pos.tolist() == list(range(int(pos[0]), int(pos[0]) + len(expected)))


def test_end_of_turn_after_the_close_tag_carries_loss(cases_parquet, tiny):
    tok, _ = tiny
    for locate in ("auto", "char_offsets"):
        ds = _ours(cases_parquet, tiny, confidence_mask={"include_open_tag": True, "include_close_tag": True,
                                                          "include_end_of_turn": True, "locate": locate})
        sample = ds[0]  # <confidence>0.83</confidence><|im_end|>
        masked = sample["input_ids"][sample["loss_mask"].bool()].tolist()
        expected = tok.convert_tokens_to_ids(["<confidence>", "0", ".", "8", "3", "</confidence>", "<|im_end|>"])
        assert tok.encode("0.83", add_special_tokens=False) == expected[1:5]
        assert masked == expected, locate


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
    masked = sample["input_ids"][sample["loss_mask"].bool()].tolist()
    assert masked == tok.encode("0.90", add_special_tokens=False)
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
    ids = _stock(path, tiny)[0]["input_ids"]
    cut = int((ids == tok.convert_tokens_to_ids("<confidence>")).nonzero()[-1]) + 2  # keeps "0" only
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
# Character-offset path with a tokenizer whose tags are NOT single tokens (like stock Qwen BPE)


@pytest.fixture(scope="module")
def bpe_without_tags():
    """A byte-level BPE with Qwen2's pre-tokenizer trained on responses, the tags left to BPE.

    Trained so that it learns the merges that break naive span masking: ``"><"`` (between
    ``</answer>`` and ``<confidence>``) and ``">."`` (before a value written ``.5``).
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    from emocaliber_rl.tiny_model import QWEN2_VL_CHAT_TEMPLATE, QWEN_SPECIAL_TOKENS

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    corpus = [RESPONSE + f"<confidence>{v}</confidence>" for v in ("0.83", ".5", ".25", "1.00")] * 50
    corpus += ["You are a helpful assistant.", "Which emotion does this image evoke?", "system user assistant"]
    bpe.train_from_iterator(corpus, trainer=trainers.BpeTrainer(
        vocab_size=400, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in json.loads(bpe.to_str())["model"]["merges"]]
    tok = Qwen2Tokenizer(vocab=bpe.get_vocab(), merges=merges, unk_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>")
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS])
    tok.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return tok


def _text_row(rid: str, assistant: str) -> dict[str, Any]:
    return {"messages": [SYSTEM, {"role": "user", "content": "Which emotion does this image evoke?"},
                         {"role": "assistant", "content": assistant}], "id": rid}


def test_char_offsets_never_leak_a_boundary_token(tmp_path, bpe_without_tags):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from emocaliber_rl.verl_plugins.confidence_sft_dataset import ConfidenceOnlySFTDataset

    tok = bpe_without_tags
    assert "<confidence>" not in tok.get_added_vocab()
    rows = [_text_row("c083", RESPONSE + "<confidence>0.83</confidence>"),
            _text_row("c05", RESPONSE + "<confidence>.5</confidence>")]
    path = tmp_path / "text.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)

    def masked_pieces(**mask: Any) -> list[list[str]]:
        ds = ConfidenceOnlySFTDataset(str(path), tok, _cfg(confidence_mask=mask), processor=None)
        assert ds.use_token_ids is False
        out = []
        for i in range(len(rows)):
            s = ds[i]
            assert s["position_ids"].shape == s["input_ids"].shape  # text-only: 1-D positions
            out.append([tok.decode([t]) for t in s["input_ids"][s["loss_mask"].bool()].tolist()])
        return out

    # Preconditions, from the tokenizer alone: the tags are several tokens and BPE merged across the
    # span boundaries, so a character-span mask that kept partial tokens would leak "><" / ">.".
    pieces = {r["id"]: [tok.decode([t]) for t in tok.encode(r["messages"][-1]["content"])] for r in rows}
    assert "><" in pieces["c083"] and ">." in pieces["c05"], pieces

    value_only = masked_pieces()
    # "0.83" comes out as the value tokenized alone
    assert value_only[0] == [tok.decode([t]) for t in tok.encode("0.83")]
    # ".5": "." is merged with the tag's ">" into one token; it stays out, only "5" is trained
    assert value_only[1] == ["5"]

    with_tags = masked_pieces(include_open_tag=True, include_close_tag=True)
    for masked, value in zip(with_tags, ["0.83", ".5"], strict=True):
        text = "".join(masked)
        # whole tokens inside "<confidence>VALUE</confidence>": the "><" shared with </answer> is not one
        assert "><" not in masked
        assert ("<confidence>" + value + "</confidence>").endswith(text) and text.endswith("</confidence>")
        assert re.search(re.escape(value.lstrip(".")), text)

    with pytest.raises(ValueError, match="locate=token_ids needs"):
        ConfidenceOnlySFTDataset(str(path), tok, _cfg(confidence_mask={"locate": "token_ids"}), processor=None)


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
