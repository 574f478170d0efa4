"""Both engine backends on CPU with a tiny Qwen2.5-VL: HF transformers and vLLM's CPU build (one
vLLM engine for the whole module: it takes 15-60 s to start on 2 shared cores).

The model is the tiny random Qwen2.5-VL taught for a few seconds to answer the Mikels-8 prompt
with one structured response (``tests/inference_helpers.py``), so generations carry real
``<answer>`` blocks and probabilities. Both backends load it in float32: greedy token ids then
agree exactly and log-probabilities to ~1e-6 (in bfloat16 the two stacks' different kernels would
round logits differently and near-ties could flip).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from emocaliber_rl.inference import (
    GREEDY,
    GenerationRequest,
    SamplingConfig,
    confidences,
    make_engine,
    mean_token_prob,
)
from emocaliber_rl.inference.probs import answer_token_index
from emocaliber_rl.prompts import SYSTEM_PROMPT, task_question
from tests.conftest import draw_image
from tests.inference_helpers import TAUGHT_ANSWER, one_thread


@pytest.fixture(scope="module")
def hf(taught_scaffold_dir: Path):
    with make_engine("hf", taught_scaffold_dir, dtype="float32", device="cpu", pixel_bounds=None) as engine:
        yield engine


@pytest.fixture(scope="module")
def vllm(taught_scaffold_dir: Path):
    with make_engine("vllm", taught_scaffold_dir, dtype="float32", max_model_len=1024, pixel_bounds=None) as engine:
        yield engine


def _requests(n: int, sampling: SamplingConfig, ask_every: int = 2) -> list[GenerationRequest]:
    return [
        GenerationRequest(
            [{"role": "system", "content": SYSTEM_PROMPT},
             {"role": "user", "content": task_question("FI-8", ask_confidence=i % ask_every == 1)}],
            [draw_image(i)],
            sampling,
        )
        for i in range(n)
    ]


def _check_logprobs(gens) -> None:
    for g in gens:
        assert len(g.logprobs) == len(g.token_ids) > 0
        assert all(math.isfinite(x) and x <= 0.0 for x in g.logprobs)
        assert g.finish_reason in ("stop", "length")


@pytest.mark.slow  # starts vLLM (tests/pytest.ini)
def test_greedy_hf_and_vllm_agree(hf, vllm) -> None:
    reqs = _requests(4, SamplingConfig(temperature=0.0, max_new_tokens=64))
    with one_thread():
        a = hf.generate(reqs)
    b = vllm.generate(reqs)
    assert [g.request_index for g in a] == [g.request_index for g in b] == [0, 1, 2, 3]
    _check_logprobs(a)
    _check_logprobs(b)
    for x, y in zip(a, b):
        assert x.token_ids == y.token_ids
        assert x.text == y.text
        assert x.finish_reason == y.finish_reason
        assert max(abs(p - q) for p, q in zip(x.logprobs, y.logprobs)) < 1e-3
    # the taught model answers, and stops with its end-of-turn token (counted in token_ids)
    assert all(f"<answer>{TAUGHT_ANSWER}</answer>" in g.text and g.finish_reason == "stop" for g in a)
    eos = hf.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert all(g.token_ids[-1] == eos for g in a)


@pytest.mark.slow  # starts vLLM (tests/pytest.ini)
def test_sampling_n_and_seeds(hf, vllm) -> None:
    reqs = _requests(3, SamplingConfig(temperature=1.0, max_new_tokens=24, seed=5, n=2))
    for engine in (vllm, hf):
        with one_thread():
            first = engine.generate(reqs)
            again = engine.generate(reqs)
        assert [(g.request_index, g.sample_index) for g in first] == [
            (i, j) for i in range(3) for j in range(2)]
        _check_logprobs(first)
        assert [g.token_ids for g in first] == [g.token_ids for g in again]
        assert all(g.num_tokens <= 24 for g in first)
    greedy = _requests(2, SamplingConfig(temperature=0.0, max_new_tokens=8, n=3))
    for engine in (vllm, hf):
        with one_thread():
            gens = engine.generate(greedy)
        assert [(g.request_index, g.sample_index) for g in gens] == [
            (i, j) for i in range(2) for j in range(3)]
        assert gens[0].token_ids == gens[1].token_ids == gens[2].token_ids
    other = vllm.generate(_requests(3, SamplingConfig(temperature=1.0, max_new_tokens=24, seed=6)))
    assert [g.token_ids for g in other] != [g.token_ids for g in vllm.generate(
        _requests(3, SamplingConfig(temperature=1.0, max_new_tokens=24, seed=5)))]


@pytest.mark.slow  # starts vLLM (tests/pytest.ini)
def test_seeded_batch_larger_than_one_prefill_step(vllm) -> None:
    # 100 prompts of ~90 tokens exceed vLLM's 4096-token step budget. With chunked prefill on
    # (vLLM's default) the CPU build died at the first split seeded prefill ("CPU Generator does
    # not use offset"); the engine turns it off on CPU.
    reqs = [GenerationRequest(r.messages, r.images,
                              SamplingConfig(temperature=1.0, max_new_tokens=2, seed=i))
            for i, r in enumerate(_requests(100, GREEDY))]
    user_tokens = len(vllm.tokenizer.encode(reqs[0].messages[1]["content"]))  # a lower bound
    assert 100 * user_tokens > 4096
    gens = vllm.generate(reqs)
    assert [g.request_index for g in gens] == list(range(100))
    _check_logprobs(gens)


def test_confidences_of_a_real_generation(hf) -> None:
    tok = hf.tokenizer
    with one_thread():
        gens = hf.generate(_requests(2, SamplingConfig(temperature=0.0, max_new_tokens=64)))
    for g in gens:
        conf = confidences(g.text, g.token_ids, g.logprobs, tok)
        # Ans: the answer's first token. On Qwen's vocabulary "<answer>amusement" is
        # "< answer > am usement" (found independently from the token pieces)
        pieces = [tok.decode([t]) for t in g.token_ids]
        k = next(i for i in range(2, len(pieces)) if pieces[i - 2 : i] == ["answer", ">"])
        assert pieces[k : k + 2] == ["am", "usement"] and "".join(pieces[k : k + 2]) == TAUGHT_ANSWER
        assert conf["conf_ans"] == pytest.approx(math.exp(g.logprobs[k]))
        assert conf["conf_avg"] == pytest.approx(sum(math.exp(x) for x in g.logprobs) / len(g.logprobs))
        assert 0 < conf["conf_avg"] <= 1 and 0 < conf["conf_ans"] <= 1
    assert confidences(gens[0].text, gens[0].token_ids, gens[0].logprobs, tok)["conf_verb"] is None
    assert confidences(gens[1].text, gens[1].token_ids, gens[1].logprobs, tok)["conf_verb"] == 0.8


def test_answer_token_index_skips_whitespace_and_reads_the_last_block(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "<answer>awe</answer> so <answer>  fear</answer>"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    k = answer_token_index(text, ids, tok)
    # the token that produces the 'f' of the last answer: decoding up to it stops before 'f',
    # decoding through it includes 'f'
    start = text.rindex("fear")
    assert len(tok.decode(ids[:k])) <= start < len(tok.decode(ids[: k + 1]))
    assert answer_token_index("<answer></answer>", tok.encode("<answer></answer>"), tok) is None
    assert answer_token_index("no tags", tok.encode("no tags"), tok) is None


@pytest.mark.slow  # starts vLLM (tests/pytest.ini)
def test_stage2_generation_labelled_and_loaded_by_verl(vllm, tmp_path: Path, tiny_model_dir: Path) -> None:
    import json

    from omegaconf import OmegaConf
    from transformers import AutoProcessor, AutoTokenizer
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    from emocaliber_rl.data.exports import export_prompts_stage2
    from emocaliber_rl.data.records import Record
    from emocaliber_rl.loops import load_loop
    from emocaliber_rl.stage2 import generate_stage2, label_generations

    # Half the rows are the taught answer: at temperature 0.7 a sample can still break the format
    # (2 of these 6 did), and the test needs kept rows on both sides of Eq. 2.
    labels = ["amusement", "awe", "amusement", "excitement", "amusement", "fear"]
    recs = []
    for i, label in enumerate(labels):
        p = tmp_path / f"{i}.png"
        draw_image(20 + i).save(p)
        recs.append(Record.make(f"s{i}", "FI-8" if i % 2 else "EmoSet-8", p, label))
    prompts = tmp_path / "prompts.jsonl"
    export_prompts_stage2(recs, prompts)
    gen = tmp_path / "gen.jsonl"
    stats = generate_stage2(vllm, prompts, gen, batch_size=4, progress=False,
                            sampling=SamplingConfig(temperature=0.7, max_new_tokens=80, seed=0))
    assert stats["written"] == 6 and stats["tokens"] > 0
    lines = [json.loads(x) for x in gen.read_text().splitlines()]
    assert [x["id"] for x in lines] == [f"s{i}" for i in range(6)]
    for x in lines:
        assert len(x["logprobs"]) == len(x["token_ids"]) == x["num_tokens"]
        assert all(math.isfinite(v) and v <= 0 for v in x["logprobs"])
        assert x["mean_prob"] == pytest.approx(mean_token_prob(x["logprobs"]))

    res = label_generations(gen, tmp_path / "stage2.parquet", plot=False, pixel_bounds=None)
    assert res.kept + res.rejected == 6 and res.kept >= 3
    targets = {t["id"]: t for t in map(json.loads, res.targets_path.read_text().splitlines())}
    loop = load_loop("mikels8")
    for x in lines:
        if x["id"] not in targets:
            continue
        t = targets[x["id"]]
        # Eq. 2 recomputed here from the raw generation line
        p = sum(math.exp(v) for v in x["logprobs"]) / len(x["logprobs"])
        expected = 0.5 * (1 + p) if t["pred"] == x["label"] else 0.5 - loop.distance(t["pred"], x["label"]) * p
        assert t["confidence"] == pytest.approx(expected, abs=0.005 + 1e-9)
        assert (t["confidence"] >= 0.5) if t["correct"] else (t["confidence"] <= 0.5)
    assert any(t["correct"] for t in targets.values()) and not all(t["correct"] for t in targets.values())

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    cfg = OmegaConf.create({"max_length": 1024, "truncation": "error", "image_key": "images",
                            "messages_key": "messages", "pad_mode": "no_padding"})
    ds = MultiTurnSFTDataset(str(res.out_path), tok, cfg, processor=proc)
    assert len(ds) == res.kept
    for i in range(len(ds)):
        item = ds[i]
        target = tok.decode(item["input_ids"][item["loss_mask"].bool()])
        assert "<confidence>" in target and "</confidence>" in target
        assert "pixel_values" in item["multi_modal_inputs"]
