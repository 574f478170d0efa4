"""Raw adapters and `bench build` on generated image folders in each dataset's published layout."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from emocaliber_rl.data.raw import read_dataset
from emocaliber_rl.data.report import ProblemReport
from emocaliber_rl.data.splits import build_splits, write_build
from emocaliber_rl.data.synthetic import corrupt, make_layout
from emocaliber_rl.taxonomy import (
    MIKELS_8,
    MIKELS_POLARITY,
    WEBEMO_PARENT,
    WEBEMO_POLARITY,
)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("raw")
    per = {"FI": 10, "EmoSet": 6, "WebEmo": 3, "Abstract": 2, "ArtPhoto": 2, "UnbiasedEmo": 4}
    roots = {}
    for name, n in per.items():
        roots[name] = base / name
        make_layout(name, roots[name], n, seed=1)
    return roots


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.parametrize("name,expected", [
    ("FI", 80), ("EmoSet", 48), ("WebEmo", 75), ("Abstract", 16), ("ArtPhoto", 16), ("UnbiasedEmo", 24),
])
def test_each_adapter_reads_its_layout(raw: dict[str, Path], name: str, expected: int) -> None:
    report = ProblemReport()
    samples = read_dataset(name, raw[name], report)
    assert len(samples) == expected and len(report) == 0
    labels = Counter(s.label for s in samples)
    if name in ("FI", "EmoSet", "Abstract", "ArtPhoto"):
        assert set(labels) == set(MIKELS_8)  # 'sad'/'content'/'Sad' spellings canonicalised
    if name == "WebEmo":
        assert labels["cheerfulness"] == 3 and labels["irritability"] == 3


def test_adapters_report_problems(tmp_path: Path) -> None:
    root = tmp_path / "ArtPhoto"
    make_layout("ArtPhoto", root, 1)
    (root / "glee_1.jpg").write_bytes((root / "sad_1.jpg").read_bytes())
    (root / "notes.rtf").write_text("x")
    report = ProblemReport()
    assert len(read_dataset("ArtPhoto", root, report)) == 8
    assert sorted(p.kind for p in report.problems) == ["not_an_image", "unknown_label"]

    ab = tmp_path / "Abstract"
    make_layout("Abstract", ab, 1)
    csv_path = ab / "ABSTRACT_groundTruth.csv"
    lines = csv_path.read_text().splitlines()
    name0 = lines[1].split(",")[0]
    lines[1] = f"{name0},3,3,0,0,0,0,0,0"  # tie
    lines.append("'abstract_9999.jpg',0,0,9,0,0,0,0,0")  # listed, not on disk
    csv_path.write_text("\n".join(lines) + "\n")
    report = ProblemReport()
    assert len(read_dataset("Abstract", ab, report)) == 7
    kinds = {p.kind: p for p in report.problems}
    assert set(kinds) == {"inconclusive", "missing"}
    assert kinds["inconclusive"].line == 2 and "tie" in kinds["inconclusive"].detail

    web = tmp_path / "WebEmo"
    make_layout("WebEmo", web, 1)
    victim = next((web / "train" / "0").iterdir())
    victim.unlink()
    report = ProblemReport()
    assert len(read_dataset("WebEmo", web, report)) == 24
    assert [p.kind for p in report.problems] == ["not_downloaded"]

    # lists of local paths instead of URLs, images in a flat folder
    flat = tmp_path / "WebEmoLocal"
    from emocaliber_rl.data.synthetic import draw_image

    for i in range(3):
        draw_image(flat / "images" / f"{i}.jpg", 100 + i)
    (flat / "train25.txt").write_text("images/0.jpg 1\nimages/1.jpg 11\nimages/gone.jpg 2\nimages/2.jpg 99\n")
    report = ProblemReport()
    got = read_dataset("WebEmo", flat, report)
    assert [(s.id, s.label) for s in got] == [("WebEmo/images/0.jpg", "cheerfulness"),
                                               ("WebEmo/images/1.jpg", "irritability")]
    assert sorted((p.line, p.kind) for p in report.problems) == [(3, "missing"), (4, "unknown_label")]


def test_build_sizes_disjoint_and_deterministic(raw: dict[str, Path], tmp_path: Path) -> None:
    res = build_splits(raw, seed=7, test_size=5, workers=2, progress=False)
    c = res.counts
    # FI 80 -> 40/40; WebEmo 75 -> 25/25/25; EmoSet 48; Abstract 16; ArtPhoto 16; UnbiasedEmo 24.
    assert c["FI-2"] == {"test": 5, "train": 35} and c["FI-8"] == {"test": 5, "train": 35}
    for t in ("WebEmo-25", "WebEmo-7", "WebEmo-2"):
        assert c[t] == {"test": 5, "train": 20}
    assert c["EmoSet-8"] == {"test": 5, "train": 43}
    assert c["Abstract-8"] == {"test": 16} and c["Artphoto-8"] == {"test": 16}
    assert c["UnbiasedEmo-6"] == {"test": 5} and res.unused == {"UnbiasedEmo-6": 19}
    assert res.overlap == 0 and len(res.report) == 0
    assert not {r.sha256 for r in res.train} & {r.sha256 for r in res.test}
    assert not {r.id for r in res.train} & {r.id for r in res.test}
    # labels mapped per subtask
    for r in res.train + res.test:
        assert r.label in r.candidates
        raw_label = r.id.split("/")[1]
        if r.subtask == "FI-2":
            assert r.label == MIKELS_POLARITY[raw_label]
    web = {r.subtask for r in res.train if r.source == "WebEmo"}
    assert web == {"WebEmo-25", "WebEmo-7", "WebEmo-2"}
    assert all(r.label in set(WEBEMO_PARENT.values()) for r in res.train if r.subtask == "WebEmo-7")
    assert all(r.label in set(WEBEMO_POLARITY.values()) for r in res.train if r.subtask == "WebEmo-2")

    a = write_build(res, tmp_path / "a", seed=7, test_size=5)
    b = write_build(build_splits(raw, seed=7, test_size=5, workers=1, progress=False), tmp_path / "b",
                    seed=7, test_size=5)
    for key in ("train", "test", "summary", "report"):
        assert a[key].read_bytes() == b[key].read_bytes(), key
    other = build_splits(raw, seed=8, test_size=5, workers=1, progress=False)
    assert [r.id for r in other.test] != [r.id for r in res.test]
    rows = _rows(a["test"])
    assert set(rows[0]) >= {"id", "subtask", "group", "image", "label", "candidates", "sha256", "split"}
    assert "| FI-2 | ID VSA | 35 | 5 |" in a["summary"].read_text()


def test_build_reports_corrupt_truncated_and_duplicates(raw: dict[str, Path], tmp_path: Path) -> None:
    fi = tmp_path / "FI"
    shutil.copytree(raw["FI"], fi)
    art = tmp_path / "ArtPhoto"
    shutil.copytree(raw["ArtPhoto"], art)
    corrupt(fi / "awe" / "awe_0000.jpg", "truncate")
    corrupt(fi / "fear" / "fear_0001.jpg", "garbage")
    (fi / "anger" / "anger_0002.jpg").write_bytes(b"")
    shutil.copy(fi / "awe" / "awe_0003.jpg", fi / "awe" / "awe_9999.jpg")  # duplicate in FI
    shutil.copy(fi / "sadness" / "sadness_0004.jpg", art / "sad_99.jpg")  # FI image also in OOD test
    res = build_splits({"FI": fi, "ArtPhoto": art}, seed=0, test_size=1000, workers=2, progress=False)
    kinds = sorted((p.kind, p.item) for p in res.report.problems)
    assert kinds == [
        ("duplicate", "FI/awe/awe_9999.jpg"),
        ("duplicate", "FI/sadness/sadness_0004.jpg"),  # ArtPhoto (test-only) keeps it
        ("image_empty", "FI/anger/anger_0002.jpg"),
        ("image_truncated", "FI/awe/awe_0000.jpg"),
        ("image_undecodable", "FI/fear/fear_0001.jpg"),
    ]
    # 81 FI files - 5 problems = 76 -> 38 + 38, all test (fewer than 1000: reported)
    assert res.counts["FI-2"] == {"test": 38} and res.counts["FI-8"] == {"test": 38}
    assert res.short == {"FI-2": 38, "FI-8": 38}
    assert res.counts["Artphoto-8"] == {"test": 17}


def test_bench_build_cli(raw: dict[str, Path], tmp_path: Path, capsys) -> None:
    from emocaliber_rl.cli import main

    out = tmp_path / "vecbench"
    rc = main(["bench", "build", "--fi", str(raw["FI"]), "--emoset", str(raw["EmoSet"]),
               "-o", str(out), "--test-size", "4", "--no-progress", "--workers", "2"])
    assert rc == 0
    captured = capsys.readouterr()
    assert "| EmoSet-8 | ID VER | 44 | 4 |" in captured.out
    assert len(_rows(out / "test.jsonl")) == 12 and len(_rows(out / "train.jsonl")) == 116


def test_build_manifest_feeds_exports(raw: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    """Manifests from a build run with relative roots still resolve when read from elsewhere."""
    import pyarrow.parquet as pq

    from emocaliber_rl.cli import main

    monkeypatch.chdir(raw["FI"].parent)
    assert main(["bench", "build", "--fi", "FI", "--artphoto", "ArtPhoto", "-o", str(tmp_path / "vb"),
                 "--test-size", "3", "--no-progress", "--workers", "1"]) == 0
    monkeypatch.chdir(tmp_path)
    assert main(["export", "rl3", str(tmp_path / "vb" / "train.jsonl"), "-o", "rl.parquet"]) == 0
    assert pq.read_table(tmp_path / "rl.parquet").num_rows == 74
    assert main(["export", "eval", str(tmp_path / "vb" / "test.jsonl"), "-o", "ev.jsonl"]) == 0
    assert len((tmp_path / "ev.jsonl").read_text().splitlines()) == 3 + 3 + 16
    assert (tmp_path / "rl.parquet.report.jsonl").read_text() == ""
