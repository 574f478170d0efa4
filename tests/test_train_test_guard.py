"""The train/test guard (emocaliber_rl.data.leak_guard) through the real CLI: `cot split` and the
training exports (sft1, prompts2, rl3) refuse test data (split test, a test-only OOD subtask, an
image of a --test-manifest), naming the count and the first records, and write nothing;
--allow-test lets it through, and `cot split` keeps each record's origin split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from emocaliber_rl.cli import main

RESP = ("<think><element>e</element><human>h</human><context>c</context><interaction>i"
        "</interaction><analysis>a</analysis></think><answer>{}</answer>")


def _img(path: Path, color: tuple[int, int, int]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), color).save(path, format="PNG")
    return str(path)


def _row(id: str, subtask: str, image: str, label: str, split: str, **extra) -> dict:
    return {"id": id, "subtask": subtask, "image": image, "label": label, "split": split,
            "response": RESP.format(label), **extra}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def data(tmp_path: Path) -> dict[str, Path]:
    """Six training records plus three kinds of test data: split test (t1), a test-only subtask
    (t2, Artphoto-8 marked train) and an image whose bytes are a test manifest's (t3, no split)."""
    imgs = tmp_path / "imgs"
    train = [_row(f"r{i}", "FI-8", _img(imgs / f"r{i}.png", (i * 20, 10, 10)), "awe", "train")
             for i in range(6)]
    test_img = _img(imgs / "test_copy.png", (1, 200, 3))
    test_manifest = _write(tmp_path / "test.jsonl", [
        # the test manifest names its own copy of the picture: same bytes, other file
        {"id": "x1", "subtask": "FI-8", "image": _img(tmp_path / "test_imgs" / "x1.png", (1, 200, 3)),
         "label": "fear", "split": "test"}])
    leaked = [
        _row("t1", "FI-8", _img(imgs / "t1.png", (9, 9, 90)), "anger", "test"),
        _row("t2", "Artphoto-8", _img(imgs / "t2.png", (9, 90, 9)), "sad", "train"),
        {k: v for k, v in _row("t3", "FI-8", test_img, "fear", "train").items() if k != "split"},
    ]
    return {"clean": _write(tmp_path / "clean.jsonl", train),
            "mixed": _write(tmp_path / "mixed.jsonl", train[:3] + leaked + train[3:]),
            "test": test_manifest, "tmp": tmp_path}


def _err(capsys) -> str:
    return capsys.readouterr().err


def test_cot_split_refuses_test_data_and_writes_nothing(data, capsys) -> None:
    out = data["tmp"] / "split"
    rc = main(["cot", "split", str(data["mixed"]), "-o", str(out), "--test-manifest", str(data["test"])])
    err = _err(capsys)
    assert rc == 2
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err  # one line
    assert "3 of 9 input records are test data" in err
    assert "split test: 1" in err and "test-only subtask Artphoto-8: 1" in err
    assert "image in the test manifest: 1" in err
    # the first ids, with file and line (mixed.jsonl lines 4..6)
    assert f"{data['mixed']}:4 [t1]" in err and f"{data['mixed']}:5 [t2]" in err
    assert f"{data['mixed']}:6 [t3]" in err and "--allow-test" in err
    assert not out.exists()
    # without the test manifest the copied image is not known, the other two still are
    assert main(["cot", "split", str(data["mixed"]), "-o", str(out)]) == 2
    assert "2 of 9 input records are test data" in _err(capsys)
    assert not out.exists()
    # clean input goes through
    assert main(["cot", "split", str(data["clean"]), "-o", str(out), "--test-manifest", str(data["test"])]) == 0
    assert (out / "vec_cot_1.jsonl").exists()


def test_cot_split_allow_test_keeps_the_origin_split(data, capsys) -> None:
    out = data["tmp"] / "split"
    assert main(["cot", "split", str(data["mixed"]), "-o", str(out), "--allow-test"]) == 0
    rows = {r["id"]: r for i in (1, 2, 3)
            for r in map(json.loads, (out / f"vec_cot_{i}.jsonl").read_text().splitlines())}
    assert len(rows) == 9
    assert rows["t1"]["split"].startswith("vec-cot-") and rows["t1"]["extra"]["origin_split"] == "test"
    assert rows["r0"]["extra"]["origin_split"] == "train"
    assert "origin_split" not in rows["t3"].get("extra", {})  # it had no split


@pytest.mark.parametrize("kind,suffix", [("sft1", "parquet"), ("prompts2", "jsonl"), ("rl3", "parquet")])
def test_training_exports_refuse_test_data(data, capsys, kind: str, suffix: str) -> None:
    # the test record went through `cot split --allow-test`: its origin still marks it
    split = data["tmp"] / "split"
    assert main(["cot", "split", str(data["mixed"]), "-o", str(split), "--allow-test",
                 "--ratios", "1:0:0"]) == 0
    _err(capsys)
    src = split / "vec_cot_1.jsonl"
    out = data["tmp"] / f"out.{suffix}"
    rc = main(["export", kind, str(src), "-o", str(out), "--test-manifest", str(data["test"]),
               "--processor-pixels"])
    err = _err(capsys)
    assert rc == 2
    assert "3 of 9 input records are test data" in err and f"refused by export {kind}" in err
    assert "[t1]" in err and "[t2]" in err and "[t3]" in err
    assert not out.exists() and not out.with_name(out.name + ".report.jsonl").exists()
    # --allow-test: written (all nine rows)
    assert main(["export", kind, str(src), "-o", str(out), "--test-manifest", str(data["test"]),
                 "--processor-pixels", "--allow-test"]) == 0
    assert "wrote 9 rows" in _err(capsys)


def test_export_eval_is_not_guarded(data, capsys) -> None:
    # evaluation manifests are built from test data: no flag needed
    out = data["tmp"] / "e.jsonl"
    assert main(["export", "eval", str(data["mixed"]), "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 9
