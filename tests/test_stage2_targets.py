"""Stage-2 labelling (paper Eq. 2) without a model: hand-computed targets, the range guarantee
over every label pair of every loop, answer parsing, rejects, the parquet and the summary."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from emocaliber_rl.loops import LOOP_NAMES, load_loop
from emocaliber_rl.stage2 import (
    confidence_target,
    histogram,
    label_generations,
    label_row,
    predicted_label,
    round_confidence,
)
from tests.conftest import draw_image
from tests.inference_helpers import taught_response

# Shipped mikels8 loop positions (emocaliber_rl/data/loops/mikels8.json), copied by hand:
# amusement 0.0, anger 0.237138, fear 0.352222, sadness 0.530258, excitement 0.947376.


@pytest.mark.parametrize(
    ("correct", "p", "d", "expected"),
    [
        # 0.5 * (1 + 0.6) = 0.8
        (True, 0.6, 0.0, 0.80),
        # 0.5 * (1 + 0.49) = 0.745 -> half-up 0.75 (Python's round(0.745, 2) would give 0.74)
        (True, 0.49, 0.0, 0.75),
        # amusement vs sadness: d = min(0.530258, 1 - 0.530258) = 0.469742;
        # 0.5 - 0.469742 * 0.6 = 0.5 - 0.2818452 = 0.2181548 -> 0.22
        (False, 0.6, 0.469742, 0.22),
        # amusement vs excitement: d = min(0.947376, 0.052624) = 0.052624;
        # 0.5 - 0.052624 * 0.9 = 0.5 - 0.0473616 = 0.4526384 -> 0.45
        (False, 0.9, 0.052624, 0.45),
        # anger vs fear: d = 0.352222 - 0.237138 = 0.115084; 0.5 - 0.115084 * 0.7 = 0.4194412 -> 0.42
        (False, 0.7, 0.115084, 0.42),
        # positive vs negative: d = 0.5; 0.5 - 0.5 * 0.5 = 0.25
        (False, 0.5, 0.5, 0.25),
        # extremes: p = 1 correct -> 1.0; p = 1 and d = 0.5 wrong -> 0.0; p = 0 -> 0.5 both ways
        (True, 1.0, 0.0, 1.00),
        (False, 1.0, 0.5, 0.00),
        (True, 0.0, 0.0, 0.50),
        (False, 0.0, 0.3, 0.50),
    ],
)
def test_eq2_hand_computed(correct: bool, p: float, d: float, expected: float) -> None:
    assert round_confidence(confidence_target(correct, p, d)) == expected


def test_loop_distances_used_by_the_hand_values() -> None:
    loop = load_loop("mikels8")
    assert loop.distance("amusement", "sadness") == pytest.approx(0.469742, abs=1e-9)
    assert loop.distance("amusement", "excitement") == pytest.approx(0.052624, abs=1e-9)
    assert loop.distance("anger", "fear") == pytest.approx(0.115084, abs=1e-9)


def test_eq2_ranges_over_every_label_pair_of_every_loop() -> None:
    rng = random.Random(0)
    ps = [0.0, 1.0, 0.5] + [rng.random() for _ in range(40)]
    checked = 0
    for name in LOOP_NAMES:
        loop = load_loop(name)
        for a in loop.order:
            for b in loop.order:
                d = loop.distance(a, b)
                assert 0.0 <= d <= 0.5
                for p in ps:
                    c = confidence_target(a == b, p, d)
                    r = round_confidence(c)
                    if a == b:
                        assert 0.5 <= c <= 1.0 and 0.5 <= r <= 1.0
                    else:
                        assert 0.0 <= c <= 0.5 and 0.0 <= r <= 0.5
                    assert abs(r - c) <= 0.005 + 1e-12
                    checked += 1
    # 8^2 + 2^2 + 6^2 + 7^2 + 25^2 label pairs, 43 probabilities each
    assert checked == (64 + 4 + 36 + 49 + 625) * 43


def test_eq2_rejects_out_of_range_inputs() -> None:
    with pytest.raises(ValueError):
        confidence_target(True, 1.2, 0.0)
    with pytest.raises(ValueError):
        confidence_target(False, 0.5, 0.6)
    with pytest.raises(ValueError):
        confidence_target(False, math.nan, 0.1)


@pytest.mark.parametrize(
    ("subtask", "response", "expected"),
    [
        ("FI-8", "<answer>amusement</answer>", ("amusement", "")),
        ("FI-8", "<answer> Sad. </answer>", ("sadness", "")),
        ("WebEmo-25", "<answer>cheerfullness</answer>", ("cheerfulness", "")),
        ("FI-8", "<answer>It is awe.</answer>", ("awe", "")),
        ("FI-8", "<answer>a</answer> then <answer>fear</answer>", ("fear", "")),  # last block
        ("FI-8", "amusement", (None, "no_answer")),
        ("FI-8", "<answer>  </answer>", (None, "empty_answer")),
        ("FI-8", "<answer>joy</answer>", (None, "unknown_label")),
        ("FI-8", "<answer>awe or fear</answer>", (None, "several_labels")),
        ("FI-2", "<answer>Positive</answer>", ("positive", "")),
    ],
)
def test_predicted_label(subtask: str, response: str, expected: tuple) -> None:
    assert predicted_label(subtask, response) == expected


def test_predicted_label_reads_the_rows_candidates() -> None:
    # the row's candidates, in the dataset's spelling, and only labels of the subtask
    abstract = ["amusement", "anger", "awe", "content", "disgust", "excitement", "fear", "sad"]
    assert predicted_label("Abstract-8", "<answer>It is content.</answer>", abstract) == ("contentment", "")
    assert predicted_label("FI-8", "<answer>fear</answer>", ["awe", "amusement"]) == (None, "unknown_label")
    assert predicted_label("FI-8", "<answer>joy</answer>", ["joy", "awe"]) == (None, "unknown_label")


def test_histogram_bins_on_hundredths() -> None:
    bins = histogram([(0.3, True), (0.29, False), (1.0, True), (0.0, False), (0.7, True)])
    assert [b["lo"] for b in bins] == [k / 10 for k in range(10)]
    assert bins[3]["correct"] == 1 and bins[2]["wrong"] == 1  # 0.3 is not pushed into [0.2, 0.3)
    assert bins[9]["correct"] == 1 and bins[0]["wrong"] == 1 and bins[7]["correct"] == 1
    assert sum(b["correct"] + b["wrong"] for b in bins) == 5


def _gen_line(i: str, response: str, probs: list[float], image: Path, label: str = "amusement",
              subtask: str = "FI-8") -> dict:
    return {"id": i, "subtask": subtask, "label": label, "image": str(image),
            "messages": [{"role": "system", "content": "You are a helpful assistant."},
                         {"role": "user", "content": "<image>Which emotion?"}],
            "response": response, "logprobs": [math.log(p) for p in probs],
            "token_ids": list(range(len(probs)))}


def test_label_generations_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from PIL import Image

    from emocaliber_rl.cli import main
    from emocaliber_rl.data.exports import sft_schema

    img = tmp_path / "a.png"
    draw_image(1).save(img)
    sad = taught_response().replace("<answer>amusement</answer>", "<answer>Sad.</answer>")
    lines = [
        _gen_line("ok", taught_response(), [0.5, 0.7], img),          # p 0.6, correct -> 0.80
        _gen_line("wrong", sad, [0.6, 0.6, 0.6], img),                 # d 0.469742 -> 0.22
        _gen_line("noans", "<think>hm</think>", [0.5], img),
        _gen_line("two", "<answer>awe or fear</answer>", [0.5], img),
        _gen_line("joy", "<answer>joy</answer>", [0.5], img),
        _gen_line("ok", taught_response(), [0.9], img),                # duplicate id
        _gen_line("noimg", taught_response(), [0.5], tmp_path / "missing.png"),
        _gen_line("conf", taught_response(confidence=0.5), [0.5], img),
    ]
    gen = tmp_path / "gen.jsonl"
    text = "".join(json.dumps(x) + "\n" for x in lines) + '{"id": "torn", "resp'
    gen.write_text(text)
    out = tmp_path / "stage2.parquet"
    rc = main(["stage2", "label", str(gen), "--out", str(out), "--summary-dir", str(tmp_path / "s"),
               "--processor-pixels"])
    assert rc == 3  # written, 7 rows left out
    err = capsys.readouterr().err
    assert "kept 2 of 9, rejected 7" in err
    for reason in ("no_answer", "several_labels", "unknown_label", "duplicate_id", "image",
                   "has_confidence", "bad_json"):
        assert f"  {reason}: 1" in err

    import pyarrow.parquet as pq

    table = pq.read_table(out)
    assert table.schema.equals(sft_schema())
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == ["ok", "wrong"]
    assert rows[0]["messages"][-1] == {
        "role": "assistant", "content": taught_response() + "<confidence>0.80</confidence>"}
    assert rows[1]["messages"][-1]["content"].endswith(
        "<answer>Sad.</answer><confidence>0.22</confidence>")
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]
    assert rows[0]["images"] == [{"bytes": img.read_bytes(), "path": None}]
    assert rows[1]["label"] == "amusement" and rows[1]["subtask"] == "FI-8"

    rejects = [json.loads(x) for x in (tmp_path / "stage2.parquet.rejects.jsonl").read_text().splitlines()]
    assert {r["id"]: r["reason"] for r in rejects if r["id"]} == {
        "noans": "no_answer", "two": "several_labels", "joy": "unknown_label",
        "ok": "duplicate_id", "noimg": "image", "conf": "has_confidence"}
    targets = [json.loads(x) for x in (tmp_path / "stage2.parquet.targets.jsonl").read_text().splitlines()]
    assert targets[0]["confidence"] == 0.80 and targets[0]["p"] == pytest.approx(0.6)
    assert targets[1]["pred"] == "sadness" and targets[1]["d"] == pytest.approx(0.469742)

    summary = json.loads((tmp_path / "s" / "stage2.summary.json").read_text())
    assert summary["kept"] == 2 and summary["rejected"] == 7 and summary["accuracy"] == 0.5
    assert summary["bins"][8]["correct"] == 1 and summary["bins"][2]["wrong"] == 1
    assert sum(b["correct"] + b["wrong"] for b in summary["bins"]) == 2
    with Image.open(tmp_path / "s" / "stage2.summary.png") as im:
        assert im.size[0] > 100


def test_require_format_rejects_unstructured_answers(tmp_path: Path) -> None:
    img = tmp_path / "a.png"
    draw_image(2).save(img)
    gen = tmp_path / "gen.jsonl"
    gen.write_text(json.dumps(_gen_line("bare", "<answer>awe</answer>", [0.5], img, "awe")) + "\n"
                   + json.dumps(_gen_line("full", taught_response(), [0.5], img)) + "\n")
    res = label_generations(gen, tmp_path / "f.parquet", require_format=True, plot=False)
    assert (res.kept, dict(res.reasons)) == (1, {"format": 1})
    res = label_generations(gen, tmp_path / "g.parquet", plot=False)
    assert res.kept == 2 and res.summary["format_ok"] == 1


def test_label_row_refuses_positive_logprobs() -> None:
    row = {"id": "x", "subtask": "FI-8", "label": "awe", "response": "<answer>awe</answer>",
           "logprobs": [0.1]}
    assert label_row(row)[1] == "bad_logprobs"


def test_read_prompt_set_jsonl_and_parquet(tmp_path: Path) -> None:
    from emocaliber_rl.data.exports import export_prompts_stage2
    from emocaliber_rl.data.records import Record
    from emocaliber_rl.stage2 import read_prompt_set

    draw_image(3).save(tmp_path / "x.png")
    rec = Record.make("r1", "WebEmo-2", tmp_path / "x.png", "negative")
    export_prompts_stage2([rec], tmp_path / "p.parquet")
    export_prompts_stage2([rec], tmp_path / "p.jsonl")
    from_parquet = read_prompt_set(tmp_path / "p.parquet")
    from_jsonl = read_prompt_set(tmp_path / "p.jsonl")
    assert from_parquet == from_jsonl  # numpy arrays from parquet come back as plain lists
    row = from_jsonl[0]
    assert row["candidates"] == ["positive", "negative"] and isinstance(row["messages"], list)
    assert row["messages"][1]["content"].startswith("<image>")
    # a relative image path resolves against the prompt file's folder
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "q.jsonl").write_text(json.dumps({**row, "image": "x.png"}) + "\n")
    assert read_prompt_set(sub / "q.jsonl")[0]["image"] == str(sub / "x.png")
    (sub / "bad.jsonl").write_text(json.dumps({"id": 1, "subtask": "FI-8"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: missing image, label, messages"):
        read_prompt_set(sub / "bad.jsonl")


# ----------------------------------------------------------------------------------------------
# p_source: "mean" (the paper's Eq. 2) and "answer" (the first decisive answer token's probability)


@pytest.fixture(scope="module")
def qwen_tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Qwen2.5-VL's real tokenizer (the tiny model's, built offline), saved as a model folder."""
    from emocaliber_rl.tiny_model import build_tokenizer

    out = tmp_path_factory.mktemp("qwen-tok")
    build_tokenizer().save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def qwen_tok(qwen_tok_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen_tok_dir)


SAD = taught_response().replace("<answer>amusement</answer>", "<answer>sadness</answer>")


def _p_rows(tok, image: Path) -> list[dict]:
    """Generation lines with real token ids: every token has probability 0.9 except the answer's
    first token, 0.6; the ids end with <|im_end|>, as a finished generation's do (the decode skips it)."""
    def line(rid: str, response: str, ids: list[int] | None, answer_at: int | None) -> dict:
        n = len(ids) if ids is not None else 47
        probs = [0.6 if i == answer_at else 0.9 for i in range(n)]
        row = _gen_line(rid, response, probs, image)
        if ids is None:
            del row["token_ids"]
        else:
            row["token_ids"] = ids
        return row

    eot = tok.convert_tokens_to_ids("<|im_end|>")
    ok_ids = tok.encode(taught_response(), add_special_tokens=False) + [eot]
    sad_ids = tok.encode(SAD, add_special_tokens=False) + [eot]
    # the answer tokens, located by hand on Qwen's vocabulary (46 text tokens + <|im_end|>):
    # "...></ think >< answer > am usement </ answer > <|im_end|>": "am" (index 41) writes the 'a';
    # "...>< answer >s ad ness </ answer > <|im_end|>": BPE merges the tag's '>' with the 's' (index 40)
    ok_pieces = [tok.decode([i]) for i in ok_ids]
    sad_pieces = [tok.decode([i]) for i in sad_ids]
    assert len(ok_ids) == len(sad_ids) == 47
    assert ok_pieces[38:44] == ["><", "answer", ">", "am", "usement", "</"]
    assert sad_pieces[38:43] == ["><", "answer", ">s", "ad", "ness"]
    # the ids of the reasoning alone (the answer cut off): they do not decode to the response
    cut_ids = tok.encode(taught_response()[: taught_response().index("<answer>")], add_special_tokens=False)
    return [
        line("ok", taught_response(), ok_ids, 41),
        line("sad", SAD, sad_ids, 40),
        line("cut", taught_response(), cut_ids, None),
        line("noids", taught_response(), None, None),
    ]


def test_p_source_hand_computed(tmp_path: Path, qwen_tok) -> None:
    img = tmp_path / "a.png"
    draw_image(4).save(img)
    ok, sad, cut, noids = _p_rows(qwen_tok, img)
    # mean (the paper's Eq. 2): p = (46 * 0.9 + 0.6) / 47 = 42 / 47 = 0.8936170...
    #   correct: 0.5 * (1 + 42/47) = 44.5 / 47 = 0.9468085... -> 0.95
    #   sadness for amusement, d = 0.469742: 0.5 - 0.469742 * 42/47 = 0.5 - 0.4197694... = 0.0802305... -> 0.08
    # the cut row and the one without token_ids: 0.9 everywhere (39 and 47 tokens), 0.5 * 1.9 = 0.95
    for row, p, c in ((ok, 42 / 47, 0.95), (sad, 42 / 47, 0.08), (cut, 0.9, 0.95), (noids, 0.9, 0.95)):
        target, reason, _ = label_row(row)
        assert reason == "" and target["p"] == pytest.approx(p) and target["confidence"] == c, row["id"]
        assert label_row(row, p_source="mean") == (target, "", "")
    # answer: p = exp(log 0.6) = 0.6, the probability of "am" / ">s"
    #   correct: 0.5 * (1 + 0.6) = 0.80
    #   sadness: 0.5 - 0.469742 * 0.6 = 0.5 - 0.2818452 = 0.2181548 -> 0.22
    for row, c in ((ok, 0.80), (sad, 0.22)):
        target, reason, _ = label_row(row, p_source="answer", tokenizer=qwen_tok)
        assert reason == "" and target["p"] == pytest.approx(0.6) and target["confidence"] == c, row["id"]
        assert target["assistant"].endswith(f"</answer><confidence>{c:.2f}</confidence>")
    assert label_row(sad, p_source="answer", tokenizer=qwen_tok)[0]["d"] == pytest.approx(0.469742)
    assert label_row(cut, p_source="answer", tokenizer=qwen_tok)[:2] == (None, "no_answer_token")
    assert label_row(noids, p_source="answer", tokenizer=qwen_tok)[:2] == (None, "missing_field")
    with pytest.raises(ValueError, match="needs the model's tokenizer"):
        label_row(ok, p_source="answer")
    with pytest.raises(ValueError, match="p_source must be one of"):
        label_row(ok, p_source="verb")


def test_stage2_label_p_source_cli(tmp_path: Path, qwen_tok, qwen_tok_dir: Path,
                                   capsys: pytest.CaptureFixture) -> None:
    from emocaliber_rl.cli import main

    img = tmp_path / "a.png"
    draw_image(5).save(img)
    gen = tmp_path / "gen.jsonl"
    gen.write_text("".join(json.dumps(r) + "\n" for r in _p_rows(qwen_tok, img)))

    def run(name: str, *extra: str) -> tuple[int, dict, dict, list, str]:
        out = tmp_path / f"{name}.parquet"
        rc = main(["stage2", "label", str(gen), "--out", str(out), "--processor-pixels", "--no-plot",
                   "--max-length", "0", *extra])
        err = capsys.readouterr().err
        if rc == 2:
            return rc, {}, {}, [], err
        targets = {t["id"]: t for t in map(json.loads, Path(f"{out}.targets.jsonl").read_text().splitlines())}
        rejects = [json.loads(x) for x in Path(f"{out}.rejects.jsonl").read_text().splitlines()]
        summary = json.loads((tmp_path / f"{name}.summary.json").read_text())
        return rc, targets, summary, rejects, err

    # default: the paper's mean (values as in test_p_source_hand_computed)
    rc, targets, summary, rejects, _ = run("mean")
    assert rc == 0 and summary["p_source"] == "mean" and rejects == []
    assert {k: t["confidence"] for k, t in targets.items()} == {"ok": 0.95, "sad": 0.08, "cut": 0.95, "noids": 0.95}
    assert {t["p_source"] for t in targets.values()} == {"mean"}
    assert targets["ok"]["p"] == pytest.approx(42 / 47)

    rc, targets, summary, rejects, err = run("answer", "--p-source", "answer", "--tokenizer", str(qwen_tok_dir))
    assert rc == 3 and summary["p_source"] == "answer"  # 3: two rows rejected
    assert {k: t["confidence"] for k, t in targets.items()} == {"ok": 0.80, "sad": 0.22}
    assert {k: t["p"] for k, t in targets.items()} == pytest.approx({"ok": 0.6, "sad": 0.6})
    assert {t["p_source"] for t in targets.values()} == {"answer"}
    # the row whose answer token cannot be located is a counted reject, not dropped
    assert {r["id"]: r["reason"] for r in rejects} == {"cut": "no_answer_token", "noids": "missing_field"}
    assert summary["kept"] == 2 and summary["rejected"] == 2
    assert summary["reject_reasons"] == {"missing_field": 1, "no_answer_token": 1}
    assert "kept 2 of 4, rejected 2" in err and "  no_answer_token: 1" in err

    # answer without a tokenizer: one line, exit 2, nothing written
    rc, _, _, _, err = run("notok", "--p-source", "answer")
    assert rc == 2 and err.count("\n") == 1 and "--p-source answer needs --tokenizer" in err
    assert not (tmp_path / "notok.parquet").exists()
    with pytest.raises(ValueError, match="needs the model's tokenizer"):
        label_generations(gen, tmp_path / "api.parquet", p_source="answer", max_length=None, plot=False)


def test_binned_accuracy_hand_computed() -> None:
    from emocaliber_rl.stage2 import binned_accuracy

    # nine rows, bins of three in order of p: {.1 .2 .3} 0 of 3 right, {.4 .5 .6} 3 of 3,
    # {.7 .8 .9} 1 of 3. The last bin is less accurate than the one before it: pooled, 4 of 6.
    pts = {0.1: False, 0.2: False, 0.3: False, 0.4: True, 0.5: True, 0.6: True, 0.7: True, 0.8: False, 0.9: False}
    order = [0.5, 0.9, 0.1, 0.7, 0.3, 0.6, 0.2, 0.8, 0.4]  # input order is kept in the output
    got = binned_accuracy([(p, pts[p]) for p in order], 3)
    want = {0.1: 0.0, 0.2: 0.0, 0.3: 0.0, 0.4: 4 / 6, 0.5: 4 / 6, 0.6: 4 / 6, 0.7: 4 / 6, 0.8: 4 / 6, 0.9: 4 / 6}
    assert got == pytest.approx([want[p] for p in order])
    # seven rows, bins of three: 7 // 3 = 2 bins of 3 and 4 rows ({.1 .2 .3}: 1 right; {.4 .. .7}: 3 right)
    pts7 = [(0.1, True), (0.2, False), (0.3, False), (0.4, True), (0.5, False), (0.6, True), (0.7, True)]
    assert binned_accuracy(pts7, 3) == pytest.approx([1 / 3] * 3 + [3 / 4] * 4)
    # a pool that must cascade: bins 1/1, 0/1, 0/1 -> all three pooled to 1/3
    assert binned_accuracy([(0.1, True), (0.2, False), (0.3, False)], 1) == pytest.approx([1 / 3] * 3)
    # fewer rows than a bin: one bin
    assert binned_accuracy([(0.2, True), (0.1, False)], 25) == [0.5, 0.5]
    assert binned_accuracy([], 3) == []
    with pytest.raises(ValueError, match="bin_rows"):
        binned_accuracy([(0.1, True)], 0)


def test_stage2_label_binned_target_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--target binned writes, per group, each bin's accuracy; Eq. 2's value stays in the targets file."""
    from emocaliber_rl.cli import main

    img = tmp_path / "a.png"
    draw_image(6).save(img)
    sad = taught_response().replace("<answer>amusement</answer>", "<answer>sadness</answer>")
    pos = taught_response().replace("<answer>amusement</answer>", "<answer>positive</answer>")
    neg = taught_response().replace("<answer>amusement</answer>", "<answer>negative</answer>")
    lines = [
        # ID VER (FI-8), p = the mean of one token's probability; in order of p: .1 wrong (it names
        # no FI-8 label: a wrong row, not a reject), .2 wrong, .3 wrong, .6 right, .8 wrong ->
        # 5 // 2 = 2 bins: {.1 .2} 0/2, {.3 .6 .8} 1/3
        _gen_line("v1", sad, [0.3], img), _gen_line("v2", taught_response(), [0.6], img),
        _gen_line("v3", sad, [0.8], img), _gen_line("v4", sad, [0.2], img), _gen_line("v5", pos, [0.1], img),
        # ID VSA (FI-2, label positive): {.1 right, .4 wrong} 1/2, {.5 right, .9 right} 2/2
        _gen_line("s1", pos, [0.5], img, "positive", "FI-2"), _gen_line("s2", neg, [0.4], img, "positive", "FI-2"),
        _gen_line("s3", pos, [0.9], img, "positive", "FI-2"), _gen_line("s4", pos, [0.1], img, "positive", "FI-2"),
    ]
    gen = tmp_path / "gen.jsonl"
    gen.write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = tmp_path / "b.parquet"
    rc = main(["stage2", "label", str(gen), "--out", str(out), "--processor-pixels", "--no-plot",
               "--max-length", "0", "--target", "binned", "--bin-rows", "2"])
    assert rc == 0, capsys.readouterr().err
    targets = {t["id"]: t for t in map(json.loads, Path(f"{out}.targets.jsonl").read_text().splitlines())}
    assert {k: t["confidence"] for k, t in targets.items()} == {
        "v5": 0.0, "v4": 0.0, "v1": 0.33, "v2": 0.33, "v3": 0.33, "s2": 0.5, "s4": 0.5, "s1": 1.0, "s3": 1.0}
    # Eq. 2 by hand: v2 right, p .6 -> 0.80; v3 sadness for amusement, p .8 -> 0.5 - 0.469742 * 0.8 -> 0.12;
    # v5 names no candidate: d 0.5, 0.5 - 0.5 * 0.1 = 0.45
    assert targets["v2"]["eq2"] == 0.80 and targets["v3"]["eq2"] == 0.12 and targets["v5"]["eq2"] == 0.45
    assert targets["v5"]["pred"] == "positive" and targets["v5"]["correct"] is False
    assert {t["target"] for t in targets.values()} == {"binned"}
    import pyarrow.parquet as pq

    written = {r["id"]: r["messages"][-1]["content"] for r in pq.read_table(out).to_pylist()}
    assert written["v3"].endswith("</answer><confidence>0.33</confidence>")
    assert written["s1"].endswith("</answer><confidence>1.00</confidence>")
    summary = json.loads((tmp_path / "b.summary.json").read_text())
    assert summary["target"] == "binned" and summary["kept"] == 9
    # under Eq. 2 (the default) the answer that names no candidate is a reject, as before
    capsys.readouterr()
    assert main(["stage2", "label", str(gen), "--out", str(tmp_path / "e.parquet"), "--processor-pixels",
                 "--no-plot", "--max-length", "0"]) == 3
    rejects = [json.loads(x) for x in Path(f"{tmp_path / 'e.parquet'}.rejects.jsonl").read_text().splitlines()]
    assert [(r["id"], r["reason"]) for r in rejects] == [("v5", "unknown_label")]
    # a bad bin size: one line, exit 2, nothing written
    capsys.readouterr()
    rc = main(["stage2", "label", str(gen), "--out", str(tmp_path / "z.parquet"), "--target", "binned",
               "--bin-rows", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--bin-rows" in err and not (tmp_path / "z.parquet").exists()


def test_stage2_label_bin_by_prompt_and_answer(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--bin-by: which rows share a bin. Hand-computed: FI-8 and EmoSet-8 offer the same eight labels
    (one prompt), FI-2 and WebEmo-2 the same two; --bin-by answer splits a prompt's rows by the
    label answered and adds --prior-rows pseudo-rows of the prompt's accuracy."""
    from emocaliber_rl.cli import main

    img = tmp_path / "a.png"
    draw_image(3).save(img)

    def said(label: str) -> str:
        return taught_response().replace("<answer>amusement</answer>", f"<answer>{label}</answer>")

    def vsa(i: str, answer: str, label: str, subtask: str) -> dict:
        return {**_gen_line(i, said(answer), [0.5], img, label, subtask), "candidates": ["positive", "negative"]}

    lines = [
        # Mikels-8 prompt: FI-8 (label amusement) 2 of 3 right, EmoSet-8 (label sadness) 1 of 3
        _gen_line("f1", said("amusement"), [0.5], img), _gen_line("f2", said("amusement"), [0.5], img),
        _gen_line("f3", said("sadness"), [0.5], img),
        _gen_line("e1", said("sadness"), [0.5], img, "sadness", "EmoSet-8"),
        _gen_line("e2", said("amusement"), [0.5], img, "sadness", "EmoSet-8"),
        _gen_line("e3", said("awe"), [0.5], img, "sadness", "EmoSet-8"),
        # polarity prompt: FI-2 one right, WebEmo-2 one right and one wrong
        vsa("p1", "positive", "positive", "FI-2"), vsa("w1", "positive", "negative", "WebEmo-2"),
        vsa("w2", "negative", "negative", "WebEmo-2"),
    ]
    gen = tmp_path / "gen.jsonl"
    gen.write_text("".join(json.dumps(r) + "\n" for r in lines))

    def targets(*flags: str) -> dict[str, float]:
        out = tmp_path / f"t{len(list(tmp_path.iterdir()))}.parquet"
        rc = main(["stage2", "label", str(gen), "--out", str(out), "--processor-pixels", "--no-plot",
                   "--max-length", "0", "--target", "binned", "--bin-rows", "1000", *flags])
        assert rc == 0, capsys.readouterr().err
        return {t["id"]: t["confidence"] for t in map(json.loads, Path(f"{out}.targets.jsonl").read_text().splitlines())}

    # per subtask (the default): FI-8 2/3, EmoSet-8 1/3, FI-2 1/1, WebEmo-2 1/2
    assert targets() == {"f1": 0.67, "f2": 0.67, "f3": 0.67, "e1": 0.33, "e2": 0.33, "e3": 0.33,
                         "p1": 1.0, "w1": 0.5, "w2": 0.5}
    # per prompt: Mikels-8 3/6, polarity 2/3
    assert targets("--bin-by", "prompt") == {k: 0.5 for k in ("f1", "f2", "f3", "e1", "e2", "e3")} | {
        "p1": 0.67, "w1": 0.67, "w2": 0.67}
    # per answered label, two pseudo-rows of the prompt's accuracy (Mikels 0.5, polarity 2/3):
    # amusement 2 of 3 -> (2 + 1) / 5 = 0.6; sadness 1 of 2 -> 2 / 4 = 0.5; awe 0 of 1 -> 1 / 3;
    # positive 1 of 2 -> (1 + 4/3) / 4 = 0.583; negative 1 of 1 -> (1 + 4/3) / 3 = 0.778
    assert targets("--bin-by", "answer") == {"f1": 0.6, "f2": 0.6, "e2": 0.6, "f3": 0.5, "e1": 0.5, "e3": 0.33,
                                             "p1": 0.58, "w1": 0.58, "w2": 0.78}
    # without the prior: each answer's own precision
    assert targets("--bin-by", "answer", "--prior-rows", "0") == {
        "f1": 0.67, "f2": 0.67, "e2": 0.67, "f3": 0.5, "e1": 0.5, "e3": 0.0, "p1": 0.5, "w1": 0.5, "w2": 1.0}
    summary = json.loads(next(tmp_path.glob("t*.summary.json")).read_text())
    assert summary["bin_by"] in ("subtask", "prompt", "answer")
    # a negative prior: one line, exit 2, nothing written
    capsys.readouterr()
    rc = main(["stage2", "label", str(gen), "--out", str(tmp_path / "z.parquet"), "--target", "binned",
               "--bin-by", "answer", "--prior-rows", "-1"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--prior-rows" in err and not (tmp_path / "z.parquet").exists()
