"""The reward loaded and run by veRL itself: ``get_custom_reward_fn`` on the file path, the naive
reward manager of the reward loop on a tokenised ``DataProto``, the legacy batch manager, and
rows of the project's stage-3 parquet export as the data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from reward_fns.emocaliber import STEP_TAGS, compute_score

REPO = Path(__file__).resolve().parents[1]
REWARD_PATH = REPO / "reward_fns" / "emocaliber.py"
STEPS = {
    "element": "dark clouds over a ruined street",
    "human": "a woman crying",
    "context": "after a storm",
    "interaction": "she looks at her destroyed house",
    "analysis": "loss and grief dominate",
}


def resp(answer: str, conf: str) -> str:
    think = "".join(f"<{t}>{STEPS[t]}</{t}>" for t in STEP_TAGS)
    return f"<think>{think}</think>\n<answer>{answer}</answer>\n<confidence>{conf}</confidence>"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def exported_rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Rows of a real stage-3 parquet: extra_info holds candidates and the aliases struct."""
    import pyarrow.parquet as pq
    from PIL import Image

    from emocaliber_rl.data.exports import export_rl_stage3
    from emocaliber_rl.data.records import Record

    tmp = tmp_path_factory.mktemp("rl")
    records = []
    for i, (task, label) in enumerate([("Abstract-8", "sadness"), ("WebEmo-25", "irritability"), ("FI-2", "negative")]):
        img = tmp / f"{i}.png"
        Image.new("RGB", (56, 56), (30 * i, 90, 160)).save(img)
        records.append(Record.make(str(i), task, img, label))
    res = export_rl_stage3(records, tmp / "rl.parquet", pixel_bounds=None)
    return pq.read_table(res.path).to_pylist()


def config(**reward_kwargs):
    from omegaconf import OmegaConf

    return OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {
                    "path": str(REWARD_PATH),
                    "name": "compute_score",
                    "reward_kwargs": reward_kwargs,
                },
                "reward_manager": {"source": "register", "name": "naive"},
            }
        }
    )


def make_dataproto(tokenizer, prompts: list[str], responses: list[str], rows: list[dict]):
    """Left-padded prompts and right-padded responses, as veRL's rollout hands them over."""
    import torch
    from verl import DataProto

    pad = tokenizer.pad_token_id
    p_ids = [tokenizer.encode(p, add_special_tokens=False) for p in prompts]
    r_ids = [tokenizer.encode(r, add_special_tokens=False) + [tokenizer.eos_token_id] for r in responses]
    plen, rlen = max(map(len, p_ids)), max(map(len, r_ids)) + 3
    prompts_t = torch.tensor([[pad] * (plen - len(p)) + p for p in p_ids])
    responses_t = torch.tensor([r + [pad] * (rlen - len(r)) for r in r_ids])
    attn = torch.cat(
        [
            torch.tensor([[0] * (plen - len(p)) + [1] * len(p) for p in p_ids]),
            torch.tensor([[1] * len(r) + [0] * (rlen - len(r)) for r in r_ids]),
        ],
        dim=1,
    )
    return DataProto.from_dict(
        tensors={"prompts": prompts_t, "responses": responses_t, "attention_mask": attn,
                 "input_ids": torch.cat([prompts_t, responses_t], dim=1)},
        non_tensors={
            "data_source": _objects([r["data_source"] for r in rows]),
            "reward_model": _objects([dict(r["reward_model"]) for r in rows]),
            "extra_info": _objects([dict(r["extra_info"]) for r in rows]),
        },
    )


def _objects(items: list) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def test_tags_survive_the_managers_decoding(tokenizer) -> None:
    # On Qwen's vocabulary the tags are text, split and merged by BPE across boundaries; veRL's
    # reward manager decodes with skip_special_tokens=True, which must give the response back whole.
    text = resp("sad", "0.9")
    ids = tokenizer.encode(text, add_special_tokens=False)
    pieces = [tokenizer.decode([i]) for i in ids]
    # ("sad": ">" of <answer> merges with "s"; "\n" after </answer> with its ">")
    assert pieces[-14:] == [">s", "ad", "</", "answer", ">\n", "<", "confidence", ">", "0", ".", "9", "</",
                            "confidence", ">"]
    assert tokenizer.decode(ids + [tokenizer.eos_token_id], skip_special_tokens=True) == text


def test_get_custom_reward_fn_loads_the_file_and_merges_reward_kwargs() -> None:
    from verl.trainer.ppo.reward import get_custom_reward_fn

    fn = get_custom_reward_fn(config(conf_reward="brier"))
    loaded = fn.args[0]
    assert loaded.__name__ == "compute_score" and loaded.__code__.co_filename == str(REWARD_PATH)
    out = fn(data_source="FI-8", solution_str=resp("fear", "0.7"), ground_truth="fear", extra_info={})
    # Eq. 6 via reward_kwargs: 1 + 1 - (1 - .7)^2 = 1.91
    assert out["score"] == pytest.approx(1.91)


def test_naive_manager_scores_a_tokenised_dataproto(tokenizer, exported_rows: list[dict]) -> None:
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.trainer.ppo.reward import load_reward_manager

    manager = load_reward_manager(config(), tokenizer)
    assert type(manager) is NaiveRewardManager
    by_task = {r["data_source"]: r for r in exported_rows}
    assert by_task["Abstract-8"]["extra_info"]["aliases"]["sad"] == "sadness"
    assert by_task["Abstract-8"]["extra_info"]["aliases"]["pos"] is None  # struct of all subtasks' aliases
    rows = [by_task["Abstract-8"], by_task["WebEmo-25"], by_task["FI-2"], by_task["FI-2"]]
    responses = [
        resp("Sad", "0.9"),  # alias of sadness (Abstract spelling): right
        resp("irritabilty", "75%"),  # WebEmo's own misspelling: right
        resp("positive", ".2"),  # wrong
        "<answer>negative</answer>",  # format broken, no confidence
    ]
    data = make_dataproto(tokenizer, ["<|im_start|>user\nWhich emotion?<|im_end|>\n"] * 4, responses, rows)
    outs = [manager.loop.run_until_complete(manager.run_single(data[i : i + 1])) for i in range(len(data))]
    # hand values, paper preset (loglik, eps .01):
    # 1 + 1 + ln .9  = 2 - 0.1053605 ; 1 + 1 + ln .75 = 2 - 0.2876821
    # 1 + 0 + ln(1 - .2) = 1 - 0.2231436 ; 0 + 1 + ln .01 = 1 - 4.6051702
    expected = [1.8946395, 1.7123179, 0.7768564, -3.6051702]
    assert [o["reward_score"] for o in outs] == pytest.approx(expected, abs=1e-6)
    assert [o["reward_extra_info"]["format"] for o in outs] == [1.0, 1.0, 1.0, 0.0]
    assert [o["reward_extra_info"]["correct"] for o in outs] == [1.0, 1.0, 0.0, 1.0]
    # every sample logs the same keys, so veRL can stack them into arrays
    assert len({tuple(sorted(o["reward_extra_info"])) for o in outs}) == 1
    rm = NaiveRewardManager.assemble_rm_scores(data, [o["reward_score"] for o in outs])
    last = data.batch["attention_mask"][:, data.batch["prompts"].shape[1] :].sum(dim=1) - 1
    for i in range(len(data)):
        assert rm[i, last[i]].item() == pytest.approx(expected[i], abs=1e-5)
        assert rm[i].abs().sum().item() == pytest.approx(abs(expected[i]), abs=1e-5)


def test_official_preset_through_reward_kwargs(tokenizer, exported_rows: list[dict]) -> None:
    from verl.trainer.ppo.reward import load_reward_manager

    manager = load_reward_manager(config(preset="official"), tokenizer)
    row = next(r for r in exported_rows if r["data_source"] == "FI-2")
    data = make_dataproto(tokenizer, ["q"] * 2, [resp("Negative.", "0.6"), resp("negative", "1.0")], [row, row])
    outs = [manager.loop.run_until_complete(manager.run_single(data[i : i + 1])) for i in range(2)]
    # 1 + 2*ln .6 + 1 = 2 - 1.0216512 ; c = 1.0 is not < 1: -5
    assert outs[0]["reward_score"] == pytest.approx(0.9783488, abs=1e-6)
    assert outs[1]["reward_score"] == -5
    assert outs[0]["reward_extra_info"]["correctness"] == 1


def test_legacy_batch_manager_takes_compute_score_batch(tokenizer, exported_rows: list[dict]) -> None:
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager import BatchRewardManager

    cfg = config()
    cfg.reward.custom_reward_function.name = "compute_score_batch"
    cfg.reward.custom_reward_function.reward_kwargs = OmegaConf.create({"conf_reward": "brier"})
    batch_fn = get_custom_reward_fn(cfg)
    manager = BatchRewardManager(tokenizer, num_examine=0, compute_score=batch_fn)
    rows = [r for r in exported_rows if r["data_source"] in ("Abstract-8", "WebEmo-25")]
    responses = [resp("sadness", "0.6"), resp("rage", "0.6")]
    data = make_dataproto(tokenizer, ["q", "a longer prompt"], responses, rows)
    out = manager(data, return_dict=True)
    # Brier: right: 1 + 1 - (1 - .6)^2 = 1.84 ; wrong: 1 + 0 - .6^2 = 0.64
    assert out["reward_tensor"].sum(dim=1).tolist() == pytest.approx([1.84, 0.64])
    assert out["reward_extra_info"]["correct"] == [1.0, 0.0]
    for i, row in enumerate(rows):
        direct = compute_score(row["data_source"], responses[i], row["reward_model"]["ground_truth"],
                               row["extra_info"], conf_reward="brier")
        assert math.isclose(out["reward_tensor"][i].sum().item(), direct["score"], abs_tol=1e-6)
