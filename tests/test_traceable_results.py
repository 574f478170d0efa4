"""Results that trace back to their input and do not collide (issue 34, item 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emocaliber_rl.cli import main
from tests.conftest import draw_image, fi_root_with_a_broken_image


def _pred(path: Path, confidences: list[str | None]) -> Path:
    rows = []
    for i, c in enumerate(confidences):
        conf = "" if c is None else f"<confidence>{c}</confidence>"
        rows.append({"id": f"r{i}", "subtask": "FI-2", "label": "positive", "candidates": ["positive", "negative"],
                     "response": f"<answer>{'positive' if i % 2 == 0 else 'negative'}</answer>{conf}"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_samples_rows_carry_the_input_id_and_line(tmp_path: Path) -> None:
    pred = _pred(tmp_path / "pred.jsonl", ["0.9", "0.2", "0.7"])
    samples = tmp_path / "samples.jsonl"
    assert main(["eval", "score", str(pred), "--samples", str(samples)]) == 0
    rows = [json.loads(x) for x in samples.read_text().splitlines()]
    assert [(r["id"], r["line"], r["correct"], r["conf_verb"]) for r in rows] == \
        [("r0", 1, True, 0.9), ("r1", 2, False, 0.2), ("r2", 3, True, 0.7)]


def test_a_confidence_out_of_range_is_reported_as_such(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pred = _pred(tmp_path / "pred.jsonl", ["0.9", "1.5", None, "150%"])
    out = tmp_path / "scores.json"
    assert main(["eval", "score", str(pred), "--json", str(out)]) == 0
    warnings = [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning:")]
    assert warnings == [
        ("warning: ID VSA: verb confidence missing for 1/4 samples (left out of the calibration "
         "metrics: --missing-conf exclude)"),
        ("warning: ID VSA: verb confidence out of range (not in [0, 1]) for 2/4 samples (left out of "
         "the calibration metrics like a missing one: --missing-conf exclude)"),
    ]
    verb = json.loads(out.read_text())["groups"]["ID VSA"]["verb"]
    assert (verb["n_missing_conf"], verb["n_out_of_range"], verb["n_used"]) == (3, 2, 1)


def _scored_run(tmp: Path, name: str, confidences: list[str | None]) -> Path:
    run = tmp / name
    run.mkdir()
    pred = _pred(run / "predictions.jsonl", confidences)
    assert main(["eval", "score", str(pred), "--json", str(run / "scores.json"),
                 "--samples", str(run / "samples.jsonl")]) == 0
    return run


@pytest.mark.parametrize("names", [("Ours v1", "Ours-v1"), ("模型甲", "模型乙")])
def test_distinct_run_names_give_distinct_figures(tmp_path: Path, names: tuple[str, str]) -> None:
    a = _scored_run(tmp_path, "a", ["0.9", "0.8", "0.7", "0.6"])
    b = _scored_run(tmp_path, "b", ["0.1", "0.2", "0.3", "0.4"])
    rep = tmp_path / "rep"
    assert main(["eval", "report", str(a), str(b), "--names", *names, "--out", str(rep)]) == 0
    figures = sorted(p.name for p in rep.glob("reliability_*_verb.png"))
    assert len(figures) == 2, figures
    html = (rep / "summary.html").read_text(encoding="utf-8")
    # each caption sits with its own run's file
    for name in names:
        caption = f"Reliability diagram of {name},"
        assert caption in html
    assert len(set(figures)) == 2


def test_bench_build_report_is_identical_between_identical_runs(tmp_path: Path) -> None:
    root = fi_root_with_a_broken_image(tmp_path)
    reports = []
    for out in ("b1", "b2"):
        main(["bench", "build", "--fi", str(root), "-o", str(tmp_path / out), "--test-size", "1",
              "--workers", "1", "--no-progress", "--no-near-duplicates"])
        reports.append((tmp_path / out / "report.jsonl").read_bytes())
    assert reports[0] == reports[1]
    detail = json.loads(reports[0])["detail"]
    assert detail == f"{root / 'awe' / 'broken.jpg'}: cannot identify image file (not an image format Pillow reads)"


@pytest.mark.parametrize(("kind", "name"), [("eval", "x.parquet"), ("sft1", "x.jsonl"), ("rl3", "x.jsonl")])
def test_export_refuses_a_name_of_another_format(tmp_path: Path, kind: str, name: str,
                                                 capsys: pytest.CaptureFixture) -> None:
    draw_image(0).save(tmp_path / "m0.png")
    src = tmp_path / "m.jsonl"
    src.write_text(json.dumps({"id": "m0", "subtask": "FI-8", "image": str(tmp_path / "m0.png"), "label": "awe",
                               "response": "<answer>awe</answer>"}) + "\n")
    out = tmp_path / name
    assert main(["export", kind, str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: -o {out}: export {kind} writes ") and "\n" not in err
    assert not out.exists() and not Path(f"{out}.report.jsonl").exists()
