"""`emocaliber loops show|plot` and the help text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from emocaliber_rl import cli
from emocaliber_rl.loops import LOOP_LABELS, load_loop


def _show(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert cli.main(["loops", "show", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", list(LOOP_LABELS))
def test_show_json_matches_the_shipped_positions(capsys: pytest.CaptureFixture[str], name: str) -> None:
    data = _show(capsys, name)
    loop = load_loop(name)
    assert data["loop"] == name
    assert data["order"] == list(loop.order)
    assert set(data["distance"]) == set(LOOP_LABELS[name])
    for a, row in data["distance"].items():
        assert set(row) == set(LOOP_LABELS[name])
        for b, d in row.items():
            gap = abs(data["positions"][a] - data["positions"][b])
            assert d == pytest.approx(min(gap, 1 - gap), abs=1e-6)
            assert d == data["distance"][b][a]
            assert 0 <= d <= 0.5


def test_show_accepts_subtask_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert _show(capsys, "Artphoto-8") == _show(capsys, "mikels8")
    assert _show(capsys, "WebEmo-2")["distance"]["positive"]["negative"] == 0.5
    assert _show(capsys, "webemo-25")["loop"] == "webemo25"


def test_show_table_and_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["loops", "show", "unbiased6"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("unbiased6: " + " > ".join(load_loop("unbiased6").order))
    assert cli.main(["loops", "show", "plutchik", "--json"]) == 2
    err = capsys.readouterr().err
    assert "'plutchik' is neither an emotion loop" in err
    assert "FI-8" in err


def test_show_json_from_a_fresh_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "emocaliber_rl.cli", "loops", "show", "WebEmo-7", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(proc.stdout)
    assert data["order"] == list(load_loop("webemo7").order)


def test_plot_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "figs" / "loops.png"
    assert cli.main(["loops", "plot", "--out", str(out), "--dpi", "40"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as im:
        assert im.format == "PNG"
        # 14 x 7 inches at 40 dpi
        assert im.size == (560, 280)
        im.load()
        # Not blank: the drawing uses more than the background colour.
        assert len(im.convert("RGB").getcolors(1 << 16) or []) > 5


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["loops", "build", "--help"], ["--lexicon", "EMOCALIBER_VAD_LEXICON", "--out", "redistribut"]),
        (["loops", "show", "--help"], ["TAXONOMY", "--json", "--loops-dir", "FI-8"]),
        (["loops", "plot", "--help"], ["--out", "--dpi", "--loops-dir", "clockwise"]),
    ],
)
def test_every_option_is_explained(
    capsys: pytest.CaptureFixture[str], argv: list[str], needles: list[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for needle in needles:
        assert needle in text
