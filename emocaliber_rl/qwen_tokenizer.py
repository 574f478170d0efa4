"""Qwen2.5-VL's real tokenizer, rebuilt offline from Qwen's published BPE ranks.

Qwen2 and Qwen2.5(-VL) reuse the byte-level BPE of the first Qwen release: 151,643 ranked byte
strings, shipped as ``qwen.tiktoken`` (base64 token, space, rank; one per line). The PyPI wheel
``dashscope==2.0.2`` carries that file as ``dashscope/resources/qwen.tiktoken``; we locate it
through the import system without importing dashscope (an HTTP SDK we have no use for).

From the ranks we build what Hugging Face ships as ``vocab.json`` + ``merges.txt``:

* the vocabulary maps each token's bytes, written with GPT-2's byte-to-unicode alphabet, to its rank;
* one merge per multi-byte token, in rank order: the two parts that tiktoken's own BPE (always
  merge the adjacent pair whose concatenation has the lowest rank) leaves when it runs on the
  token's bytes with every rank below the token's. That is 151,387 merges, Qwen2's count; HF's BPE
  over them reproduces tiktoken's encoding (checked against published tokenizations in
  ``tests/test_qwen_tokenizer.py``).

``transformers.Qwen2Tokenizer`` adds Qwen2's pipeline around them (NFC normaliser, Qwen2's split
regex, ByteLevel without regex, ByteLevel decoder); the added tokens follow at their published ids
151643..151664 with their published ``special`` flags (see ``docs/tiny-model.md`` for the sources).
"""

from __future__ import annotations

import base64
import functools
import importlib.util
from pathlib import Path

# (content, special) in id order from 151643, as in Qwen2.5-VL-7B-Instruct's tokenizer_config.json.
QWEN25_VL_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)
FIRST_ADDED_ID = 151643
# Qwen2.5-VL's special_tokens_map.json: every special added token but <|endoftext|> (eos is listed too).
ADDITIONAL_SPECIAL_TOKENS: tuple[str, ...] = tuple(
    t for t, special in QWEN25_VL_ADDED_TOKENS if special and t != "<|endoftext|>"
)
# The embedding rows of every Qwen2.5-VL checkpoint (config.json): the 151,665 tokens padded up.
QWEN25_VL_VOCAB_SIZE = 151936
N_RANKS = 151643
N_MERGES = N_RANKS - 256


class RanksFileError(RuntimeError):
    """``qwen.tiktoken`` is missing or not Qwen's file."""


def ranks_file() -> Path:
    """Where ``dashscope==2.0.2`` installed ``qwen.tiktoken``."""
    spec = importlib.util.find_spec("dashscope")
    if spec is None or not spec.submodule_search_locations:
        raise RanksFileError(
            "Qwen's BPE ranks come from the dashscope wheel: pip install dashscope==2.0.2 "
            "(or pip install 'emocaliber-rl[cpu]')"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise RanksFileError(f"{path} is missing: the installed dashscope is not 2.0.2")
    return path


def read_ranks(path: Path) -> dict[bytes, int]:
    """``{token bytes: rank}`` from a tiktoken file, checked to be Qwen's 151,643 contiguous ranks."""
    ranks: dict[bytes, int] = {}
    for lineno, line in enumerate(path.read_bytes().splitlines(), start=1):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise RanksFileError(f"{path}, line {lineno}: expected 'BASE64 RANK', got {line[:60]!r}")
        ranks[base64.b64decode(fields[0])] = int(fields[1])
    if len(ranks) != N_RANKS or sorted(ranks.values()) != list(range(N_RANKS)):
        raise RanksFileError(f"{path}: {len(ranks)} distinct tokens, not Qwen's ranks 0..{N_RANKS - 1}")
    return ranks


def _tiktoken_parts(token: bytes, rank: int, ranks: dict[bytes, int]) -> list[bytes]:
    """tiktoken's BPE on ``token`` with the ranks below ``rank`` only."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 1:
        best_rank, best_i = rank, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1], rank)
            if r < best_rank:
                best_rank, best_i = r, i
        if best_i < 0:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return parts


@functools.lru_cache(maxsize=1)
def _byte_encoder() -> dict[int, str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return bytes_to_unicode()


def _as_unicode(token: bytes) -> str:
    enc = _byte_encoder()
    return "".join(enc[b] for b in token)


@functools.lru_cache(maxsize=1)
def vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Qwen2's ``vocab.json`` and ``merges.txt`` (as a list of pairs), derived from the ranks."""
    path = ranks_file()
    ranks = read_ranks(path)
    vocab: dict[str, int] = {}
    merges: list[tuple[str, str]] = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        vocab[_as_unicode(token)] = rank
        if len(token) == 1:
            continue
        parts = _tiktoken_parts(token, rank, ranks)
        if len(parts) != 2:
            raise RanksFileError(f"{path}: rank {rank} ({token!r}) is not the merge of two lower-ranked tokens")
        merges.append((_as_unicode(parts[0]), _as_unicode(parts[1])))
    return vocab, merges


def build_qwen_tokenizer(chat_template: str | None = None, model_max_length: int = 32768):
    """A ``Qwen2Tokenizer`` equal to Qwen2.5-VL's: vocabulary, merges, pipeline, added tokens, eos/pad."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab, merges = vocab_and_merges()
    # No special tokens at construction: Qwen2Tokenizer appends them in its own order, and the ids
    # must be Qwen's. They are added below, one by one, in id order.
    tok = Qwen2Tokenizer(vocab=dict(vocab), merges=list(merges), unk_token=None, eos_token=None, pad_token=None)
    for offset, (content, special) in enumerate(QWEN25_VL_ADDED_TOKENS):
        tok.add_tokens([AddedToken(content, special=special, normalized=False)], special_tokens=special)
        got = tok.convert_tokens_to_ids(content)
        if got != FIRST_ADDED_ID + offset:
            raise RuntimeError(f"{content} got id {got}, Qwen's is {FIRST_ADDED_ID + offset}")
    tok.eos_token = "<|im_end|>"
    tok.pad_token = "<|endoftext|>"
    tok.extra_special_tokens = list(ADDITIONAL_SPECIAL_TOKENS)
    if chat_template is not None:
        tok.chat_template = chat_template
    tok.model_max_length = model_max_length
    return tok
