"""The tiny model's tokenizer is Qwen2.5-VL's: published tokenizations, ids and flags reproduced.

Expected ids are copied from public references, not computed by our code:

* plain text: llama.cpp's tokenizer fixture for Qwen2, ``models/ggml-vocab-qwen2.gguf.inp`` /
  ``.out`` (github.com/ggerganov/llama.cpp; generated with HF's tokenizer of Qwen/Qwen1.5-7B, the
  vocabulary Qwen2 and Qwen2.5 reuse), and ``Hello world`` / ``<|im_start|>user`` from issue 11;
* added tokens: Qwen2.5-VL-7B-Instruct's ``tokenizer_config.json`` ``added_tokens_decoder``, as also
  listed by torchtune's ``torchtune/models/qwen2_5/_tokenizer.py`` (``QWEN2_5_SPECIAL_TOKENS``).
"""

from __future__ import annotations

import pytest

# (text, ids) from llama.cpp's models/ggml-vocab-qwen2.gguf.inp / .out (same line order).
LLAMA_CPP_QWEN2_CASES: list[tuple[str, list[int]]] = [
    ("ied 4 ½ months", [1122, 220, 19, 220, 26062, 3951]),
    ("Führer", [37, 50753, 261]),
    ("", []),
    (" ", [220]),
    ("  ", [256]),
    ("   ", [262]),
    ("\t", [197]),
    ("\n", [198]),
    ("\n\n", [271]),
    ("\t\n", [1572]),
    ("Hello world", [9707, 1879]),
    (" Hello world", [21927, 1879]),
    ("Hello World", [9707, 4337]),
    (" Hello World!", [21927, 4337, 0]),
    ("Hello, world!", [9707, 11, 1879, 0]),
    (" this is 🦙.cpp", [419, 374, 11162, 99, 247, 13, 10821]),
    ("w048 7tuijk dsdfhu", [86, 15, 19, 23, 220, 22, 83, 1963, 41808, 11472, 2940, 16739]),
    ("нещо на Български", [78762, 14144, 1456, 13073, 63471, 33594, 3038, 133178, 79012]),
    (
        "🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ (only emoji that has its own token)",
        [145836, 320, 8252, 8, 26525, 114, 378, 235, 149921, 30543, 320, 35673, 99066, 97534, 8, 25521, 227,
         320, 3243, 42365, 429, 702, 1181, 1828, 3950, 8],
    ),
    ("   Hello", [256, 21927]),
    ("    Hello\n    Hello", [262, 21927, 198, 262, 21927]),
    ("\n =", [198, 284]),
    ("' era", [6, 11385]),
    (
        "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～",
        [9707, 11, 379, 64848, 0, 2585, 525, 498, 26525, 223, 937, 104100, 18493, 22377, 99257, 16, 18, 16, 19,
         16, 20, 16, 35727, 21216],
    ),
    ("333333333", [18] * 9),
]

# Qwen2.5-VL-7B-Instruct's added_tokens_decoder: id -> (content, special).
QWEN25_VL_ADDED = {
    151643: ("<|endoftext|>", True), 151644: ("<|im_start|>", True), 151645: ("<|im_end|>", True),
    151646: ("<|object_ref_start|>", True), 151647: ("<|object_ref_end|>", True),
    151648: ("<|box_start|>", True), 151649: ("<|box_end|>", True), 151650: ("<|quad_start|>", True),
    151651: ("<|quad_end|>", True), 151652: ("<|vision_start|>", True), 151653: ("<|vision_end|>", True),
    151654: ("<|vision_pad|>", True), 151655: ("<|image_pad|>", True), 151656: ("<|video_pad|>", True),
    151657: ("<tool_call>", False), 151658: ("</tool_call>", False), 151659: ("<|fim_prefix|>", False),
    151660: ("<|fim_middle|>", False), 151661: ("<|fim_suffix|>", False), 151662: ("<|fim_pad|>", False),
    151663: ("<|repo_name|>", False), 151664: ("<|file_sep|>", False),
}


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    # The tokenizer as every consumer sees it: saved with the tiny model and loaded back.
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize(("text", "ids"), LLAMA_CPP_QWEN2_CASES, ids=[repr(t)[:30] for t, _ in LLAMA_CPP_QWEN2_CASES])
def test_published_plain_text_tokenizations(tok, text, ids):
    assert tok(text, add_special_tokens=False)["input_ids"] == ids
    assert tok.decode(ids) == text


def test_chat_markers_and_added_tokens_at_published_ids(tok):
    assert tok("<|im_start|>user", add_special_tokens=False)["input_ids"] == [151644, 872]
    assert tok("<|im_start|>user\nHi<|im_end|>", add_special_tokens=False)["input_ids"] == [
        151644, 872, 198, 13048, 151645]
    got = {i: (t.content, t.special) for i, t in tok.added_tokens_decoder.items()}
    assert got == QWEN25_VL_ADDED
    assert len(tok) == 151665
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token, tok.pad_token_id) == (
        "<|im_end|>", 151645, "<|endoftext|>", 151643)


def test_response_tags_are_text_and_merge_across_boundaries(tok):
    from emocaliber_rl.prompts import RESPONSE_TAGS

    assert not set(RESPONSE_TAGS) & set(tok.get_added_vocab())
    ids = tok("</answer><confidence>0.83</confidence><|im_end|>", add_special_tokens=False)["input_ids"]
    assert [tok.decode([i]) for i in ids] == [
        "</", "answer", "><", "confidence", ">", "0", ".", "8", "3", "</", "confidence", ">", "<|im_end|>"]
    # veRL's reward manager decodes with skip_special_tokens=True: the tags are text and survive it.
    text = "<think>a dog</think><answer>awe</answer><confidence>0.83</confidence>"
    assert tok.decode(tok(text + "<|im_end|>")["input_ids"], skip_special_tokens=True) == text


def test_qwen2_merges_derived_from_the_ranks():
    from emocaliber_rl.qwen_tokenizer import N_MERGES, vocab_and_merges

    vocab, merges = vocab_and_merges()
    assert len(vocab) == 151643 and len(merges) == N_MERGES == 151387
    # The first 15 lines of Qwen2's merges.txt (after "#version: 0.2"), as quoted in public dumps of
    # Qwen2 checkpoints (docs/tiny-model.md).
    head = "Ġ Ġ|ĠĠ ĠĠ|i n|Ġ t|ĠĠĠĠ ĠĠĠĠ|e r|ĠĠ Ġ|o n|Ġ a|r e|a t|s t|e n|o r|Ġt h"
    assert merges[:15] == [tuple(line.split(" ")) for line in head.split("|")]


def test_a_broken_ranks_file_names_file_and_line(tmp_path):
    from emocaliber_rl.qwen_tokenizer import RanksFileError, read_ranks

    bad = tmp_path / "qwen.tiktoken"
    bad.write_bytes(b"IQ== 0\nIg==\n")
    with pytest.raises(RanksFileError, match=r"qwen\.tiktoken, line 2: expected 'BASE64 RANK'"):
        read_ranks(bad)
    bad.write_bytes(b"IQ== 0\nIg== 1\n")
    with pytest.raises(RanksFileError, match="not Qwen's ranks"):
        read_ranks(bad)
