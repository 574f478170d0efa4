"""`bench import`: the published VECBench test file / VEC-CoT files into manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emocaliber_rl.data.release import import_release, write_import
from emocaliber_rl.data.report import DataProblemError
from emocaliber_rl.data.synthetic import draw_image


def _row(task, gt, img, cands=None, fmt="sharegpt", answer=None):
    ans = answer or gt
    resp = f"<think><element>e</element></think><answer>{ans}</answer><confidence>0.6</confidence>"
    row = {"task": task, "ground_truth": gt}
    if cands is not None:
        row["candidates"] = cands
    if fmt == "sharegpt":
        row["conversations"] = [{"from": "human", "value": "<image>Which emotion?"},
                                {"from": "gpt", "value": resp}]
        row["images"] = [img]
    else:
        row["messages"] = [{"role": "user", "content": "<image>Which emotion?"},
                           {"role": "assistant", "content": resp}]
        row["images"] = [img]
    return row


MIKELS = ["amusement", "anger", "awe", "contentment", "disgust", "excitement", "fear", "sadness"]


@pytest.fixture()
def release(tmp_path: Path) -> Path:
    for i in range(4):
        draw_image(tmp_path / "img" / f"{i}.jpg", i)
    draw_image(tmp_path / "img" / "dup.jpg", 0)
    rows = [
        _row("FI-8", "awe", "img/0.jpg", MIKELS),
        _row("UnbaisedEmo-6", "joy", "img/1.jpg", fmt="swift"),  # misspelt task name, accepted
        _row("WebEmo-25", "glee", "img/2.jpg"),  # line 3: unknown label
        _row("FI-2", "positive", "img/3.jpg", ["positive", "negative", "neutral"]),  # line 4
        _row("Abstract-8", "sad", "img/missing.jpg"),  # line 5: missing image
        _row("WebEmo-25", "cheerfullness", "img/dup.jpg"),  # same bytes as 0.jpg: kept, reported
        _row("Nonsense-3", "awe", "img/0.jpg"),  # line 7
    ]
    path = tmp_path / "test_8k.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_import_validates_and_reports_by_line(release: Path, tmp_path: Path) -> None:
    res = import_release([release], workers=1, progress=False)
    assert [(r.subtask, r.label) for r in res.records] == [
        ("FI-8", "awe"), ("UnbiasedEmo-6", "joy"), ("WebEmo-25", "cheerfulness")]
    assert all(r.sha256 and r.split == "test" and r.response is None for r in res.records)
    got = sorted((p.line, p.kind) for p in res.report.problems)
    assert got == [(3, "unknown_label"), (4, "unknown_label"), (5, "image_missing"),
                   (6, "duplicate_image_kept"), (7, "unknown_subtask")]
    assert "valid labels" in next(p.detail for p in res.report.problems if p.line == 3)
    out, rep = write_import(res, tmp_path / "m.jsonl")
    assert len(out.read_text().splitlines()) == 3 and len(rep.read_text().splitlines()) == 5
    assert "| UnbiasedEmo-6 | OOD VER | 1 |" in res.table()


def test_import_keeps_cot_and_strict_names_line(release: Path) -> None:
    res = import_release([release], keep_response=True, split="stage1", hash_files=False)
    assert res.records[0].response.startswith("<think>") and res.records[0].split == "stage1"
    with pytest.raises(DataProblemError, match=r"test_8k\.jsonl:3: unknown_label"):
        import_release([release], strict=True, hash_files=False)


def test_import_cli(release: Path, tmp_path: Path) -> None:
    from emocaliber_rl.cli import main

    # 3: written, with the file's 5 bad rows left out
    assert main(["bench", "import", str(release), "-o", str(tmp_path / "t.jsonl"), "--no-progress",
                 "--workers", "1"]) == 3
    assert main(["bench", "import", str(release), "-o", str(tmp_path / "t.jsonl"), "--strict"]) == 2


def test_import_path_map(release: Path, tmp_path: Path) -> None:
    rows = [json.loads(x) for x in release.read_text().splitlines()]
    rows[0]["images"] = ["/mnt/authors/vecbench/img/0.jpg"]
    moved = tmp_path / "moved.jsonl"
    moved.write_text(json.dumps(rows[0]) + "\n")
    res = import_release([moved], path_map=[("/mnt/authors/vecbench/", f"{tmp_path}/")], workers=1,
                         progress=False)
    assert len(res.records) == 1 and res.records[0].image == str(tmp_path / "img" / "0.jpg")
    assert len(import_release([moved], workers=1, progress=False).report) == 1  # unmapped: missing


def _parts_row(content: list, images: list | None = None) -> dict:
    row = {"task": "FI-8", "ground_truth": "awe",
           "messages": [{"role": "user", "content": content},
                        {"role": "assistant", "content": "<answer>awe</answer>"}]}
    if images is not None:
        row["images"] = images
    return row


def test_import_reads_every_image_part_form_qwen_vl_utils_reads(tmp_path: Path) -> None:
    """Each accepted part gives the very image qwen-vl-utils' own fetch_image decodes from it."""
    import base64

    from PIL import Image

    vp = pytest.importorskip("qwen_vl_utils.vision_process")
    for i in range(6):
        draw_image(tmp_path / "img" / f"{i}.png", 50 + i, size=(56, 56), fmt="PNG")
    png = base64.b64encode((tmp_path / "img" / "5.png").read_bytes()).decode()
    text = {"type": "text", "text": "Which emotion?"}
    forms = [
        [{"image": "img/0.png"}, text],  # no "type" (extract_vision_info: "image" in ele)
        [{"type": "image", "image": f"file://{tmp_path}/img/1.png"}, text],  # file:// + abs path
        [{"type": "image_url", "image_url": "img/2.png"}, text],  # image_url part, string
        [{"image_url": f"file://{tmp_path}/img/3.png"}, text],  # image_url key only
        [{"type": "image"}, text],  # placeholder; the path in the row's images list
        [{"type": "image", "image": f"data:image/png;base64,{png}"}, text],  # data URI
    ]
    rows = [_parts_row(c, [f"file://{tmp_path}/img/4.png"] if i == 4 else None)
            for i, c in enumerate(forms)]
    rows.append(_parts_row([{"type": "image_url", "image_url": {"url": "img/2.png"}}, text]))  # OpenAI
    src = tmp_path / "parts.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = import_release([src], workers=1, progress=False, image_dir=tmp_path / "inline")
    assert [(p.line, p.kind) for p in res.report.problems] == [(7, "duplicate_image_kept")]
    assert len(res.records) == 7
    want = [0, 1, 2, 3, 4, 5, 2]
    for rec, k in zip(res.records, want, strict=True):
        with Image.open(rec.image) as a, Image.open(tmp_path / "img" / f"{k}.png") as b:
            assert a.convert("RGB").tobytes() == b.convert("RGB").tobytes(), rec.id
    assert res.records[5].image.startswith(str(tmp_path / "inline"))

    # qwen-vl-utils itself, on the same parts (relative paths resolve against its working dir).
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for rec, content in zip(res.records, forms, strict=False):
            msgs = [{"role": "user", "content": content}]
            infos = vp.extract_vision_info(msgs)
            if content[0] == {"type": "image"}:  # the placeholder names no source
                continue
            assert len(infos) == 1
            got = vp.fetch_image({**infos[0], "resized_height": 56, "resized_width": 56})
            with Image.open(rec.image) as ours:
                assert got.tobytes() == ours.convert("RGB").tobytes(), rec.id
        with pytest.raises(AttributeError):  # qwen-vl-utils 0.0.14 needs a string there
            vp.fetch_image({"type": "image_url", "image_url": {"url": "img/2.png"}})
    finally:
        os.chdir(cwd)


def test_import_reports_urls_videos_and_bad_data_uris(tmp_path: Path) -> None:
    draw_image(tmp_path / "local" / "x.jpg", 3)
    rows = [
        _parts_row([{"type": "image", "image": "https://example.org/vecbench/x.jpg"}]),
        _parts_row([{"type": "video", "video": "clip.mp4"}]),
        _parts_row([{"type": "image", "image": "data:image/png,notbase64"}]),
        _parts_row([{"type": "image", "image": "data:image/png;base64,AAAA"}]),  # decodes, not an image
    ]
    src = tmp_path / "r.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = import_release([src], workers=1, progress=False, image_dir=tmp_path / "inline")
    assert res.records == []
    assert sorted((p.line, p.kind) for p in res.report.problems) == [
        (1, "remote_image"), (2, "video_part"), (3, "bad_data_uri"), (4, "image_undecodable")]
    assert "--path-map" in next(p.detail for p in res.report.problems if p.kind == "remote_image")
    mapped = import_release([src], workers=1, progress=False, image_dir=tmp_path / "inline",
                            path_map=[("https://example.org/vecbench/", f"{tmp_path}/local/")])
    assert [r.image for r in mapped.records] == [str(tmp_path / "local" / "x.jpg")]
    no_dir = import_release([src], hash_files=False)
    assert {p.kind for p in no_dir.report.problems} >= {"inline_image_not_saved"}
