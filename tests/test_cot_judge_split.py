"""Local structural check, judge pass (local failures never reach the judge), kept manifest,
6:3:1 split and the stage-1 export of the result."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from emocaliber_rl.data.chat_server import ServerConfig, ServerThread, cot_for
from emocaliber_rl.data.cot_client import ChatClient
from emocaliber_rl.data.cot_prompts import parse_verdict, structural_check, synth_messages
from emocaliber_rl.data.cot_run import judge, write_kept
from emocaliber_rl.data.cot_split import shares, split_cot
from emocaliber_rl.data.exports import export_sft_stage1
from emocaliber_rl.data.records import Record, read_manifest
from emocaliber_rl.data.synthetic import draw_image


def test_structural_check() -> None:
    assert structural_check("FI-8", "sadness", cot_for("sadness")).ok
    assert structural_check("FI-8", "sadness", cot_for("sad")).ok  # alias answer
    leak = structural_check("FI-8", "sadness", cot_for("sadness", leak=True))
    assert not leak.ok and "label leakage" in leak.reasons[0]
    sadly = cot_for("sadness").replace("strong light", "light that falls sadly")
    assert "label leakage: 'sadly' inside the reasoning" in structural_check("FI-8", "sadness", sadly).reasons
    no_human = cot_for("awe").replace("<human>", "<person>").replace("</human>", "</person>")
    assert structural_check("FI-8", "awe", no_human).reasons == ["missing <human>"]
    wrong = structural_check("FI-8", "awe", cot_for("fear"))
    assert wrong.reasons == ["answer 'fear' is not the label 'awe'"]
    assert structural_check("FI-2", "positive", "positive").reasons[0] == "no <think>...</think>"


def test_synth_prompt_forbids_label_and_aliases() -> None:
    msgs = synth_messages("WebEmo-25", "cheerfulness", "data:image/jpeg;base64,AAAA")
    text = msgs[1]["content"][1]["text"]
    assert msgs[1]["content"][0]["image_url"]["url"].startswith("data:image/jpeg")
    assert 'Do NOT write the word "cheerfulness" or "cheerfullness"' in text
    assert "<answer>cheerfulness</answer>" in text


def test_parse_verdict_tolerates_fences() -> None:
    v = parse_verdict('Sure:\n```json\n{"hallucination": false, "label_leakage": true, '
                      '"logical_inconsistency": false}\n```')
    assert v["label_leakage"] is True


def test_judge_skips_local_failures_and_keeps_passing(tmp_path: Path) -> None:
    rows = []
    for i, (kind, resp) in enumerate([("good", cot_for("awe")), ("good2", cot_for("awe")),
                                      ("leak", cot_for("awe", leak=True)), ("wrong", cot_for("fear")),
                                      ("judged_bad", cot_for("awe"))]):
        rec = Record.make(kind, "EmoSet-8", draw_image(tmp_path / f"{i}.jpg", i), "awe")
        rows.append({**rec.to_dict(), "response": resp,
                     "usage": {"prompt_tokens": 10, "completion_tokens": 5}})
    out = tmp_path / "verdicts.jsonl"
    with ServerThread(ServerConfig(script={"judged_bad": ["malformed", "reject"]})) as server:

        async def run():
            async with ChatClient(server.url, "judge", backoff_base=0.01) as client:
                return await judge(rows, out, client, progress=False, log=lambda m: None)

        stats = asyncio.run(run())
        again = asyncio.run(run())
        counts = dict(server.state.counts)
    assert counts == {"good": 1, "good2": 1, "judged_bad": 2}  # leak / wrong never sent
    assert stats.local_rejects == 2 and stats.done == 5
    assert again.skipped == 5 and again.done == 0
    verdicts = {json.loads(x)["id"]: json.loads(x) for x in out.read_text().splitlines()}
    assert verdicts["judged_bad"]["reasons"] == ["hallucination"] and not verdicts["judged_bad"]["passed"]
    assert verdicts["leak"]["local_reject"] and verdicts["leak"]["verdict"] is None
    kept, judged = write_kept(out, tmp_path / "kept.jsonl")
    assert (kept, judged) == (2, 5)
    recs = read_manifest(tmp_path / "kept.jsonl")
    assert [r.id for r in recs] == ["good", "good2"] and recs[0].steps["element"]
    res = export_sft_stage1(recs, tmp_path / "sft.parquet")
    assert pq.read_table(res.path).num_rows == 2


def test_split_6_3_1_stratified_and_deterministic(tmp_path: Path) -> None:
    assert shares(10, (6, 3, 1)) == [6, 3, 1] and shares(7, (6, 3, 1)) == [4, 2, 1]
    recs = [Record.make(f"f{i}", "FI-8", "x.jpg", "awe", response="r") for i in range(50)]
    recs += [Record.make(f"w{i}", "WebEmo-2", "x.jpg", "positive", response="r") for i in range(23)]
    parts = split_cot(recs, seed=3)
    sizes = [Counter(r.subtask for r in p) for p in parts]
    assert [s["FI-8"] for s in sizes] == [30, 15, 5]
    assert [s["WebEmo-2"] for s in sizes] == [14, 7, 2]
    assert len({r.id for p in parts for r in p}) == 73
    again = split_cot(list(reversed([Record.from_dict(r.to_dict()) for r in recs])), seed=3)
    assert [[r.id for r in p] for p in again] == [[r.id for r in p] for p in parts]
    assert [[r.id for r in p] for p in split_cot(recs, seed=4)] != [[r.id for r in p] for p in parts]

    from emocaliber_rl.cli import main
    from emocaliber_rl.data.records import write_manifest

    write_manifest(tmp_path / "kept.jsonl", recs)
    assert main(["cot", "split", str(tmp_path / "kept.jsonl"), "-o", str(tmp_path / "split")]) == 0
    table = (tmp_path / "split" / "table.md").read_text()
    assert table.startswith("| VEC-CoT | FI-8 | WebEmo-2 | Total |")  # Table 1 column order
    assert "| Stage 1 | 30 | 14 | 44 |" in table and "| Total | 50 | 23 | 73 |" in table
    assert len((tmp_path / "split" / "vec_cot_3.jsonl").read_text().splitlines()) == 7


def test_large_images_are_downscaled_before_sending(tmp_path: Path) -> None:
    import base64
    import io

    from PIL import Image

    from emocaliber_rl.data.cot_run import _image_url

    big = draw_image(tmp_path / "big.png", 1, size=(1200, 900), fmt="PNG")
    url = _image_url(str(big), 451584)
    assert url.startswith("data:image/jpeg;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert img.width * img.height <= 451584 and abs(img.width / img.height - 4 / 3) < 0.01
    small = draw_image(tmp_path / "small.jpg", 2)
    assert _image_url(str(small), 451584).split(",", 1)[1] == base64.b64encode(small.read_bytes()).decode()
    assert _image_url(str(big), None).startswith("data:image/png")
