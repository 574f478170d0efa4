"""The shipped loops (package data) and the public API the Stage-2 labeller uses."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emocaliber_rl import cli
from emocaliber_rl.loops import (
    LOOP_LABELS,
    UnknownLoopError,
    build_all,
    distance,
    load_loop,
    loop_for_subtask,
)
from emocaliber_rl.taxonomy import (
    LOOP_OF_SUBTASK,
    SUBTASKS,
    WEBEMO_PARENT,
    UnknownLabelError,
    UnknownSubtaskError,
)
from emocaliber_rl.vad_lexicon import ENV_VAR

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(LOOP_LABELS))
def test_shipped_loop_is_well_formed(name: str) -> None:
    loop = load_loop(name)
    assert loop.name == name
    assert sorted(loop.order) == sorted(LOOP_LABELS[name])
    pos = [loop.positions[x] for x in loop.order]
    assert pos[0] == 0.0
    assert all(a < b for a, b in itertools.pairwise(pos))
    assert pos[-1] < 1.0
    assert loop.total_length > 0
    lexicon = loop.provenance["lexicon"]
    assert lexicon["version"] == "v1"
    assert lexicon["file"] == "NRC-VAD-Lexicon.txt"
    assert loop.provenance["perimeter"] == "arc-length"
    assert set(loop.provenance["subtasks"]) == {s for s, n in LOOP_OF_SUBTASK.items() if n == name}


@pytest.mark.parametrize("name", list(LOOP_LABELS))
def test_distance_is_a_circular_metric(name: str) -> None:
    loop = load_loop(name)
    for a in loop.order:
        assert loop.distance(a, a) == 0.0
        for b in loop.order:
            d = loop.distance(a, b)
            assert 0.0 <= d <= 0.5
            assert d == loop.distance(b, a)
            if a != b:
                assert d > 0.0
            # By hand from the positions: the shorter of the two arcs.
            gap = abs(loop.positions[a] - loop.positions[b])
            assert d == pytest.approx(min(gap, 1 - gap))
            for c in loop.order:
                assert loop.distance(a, c) <= d + loop.distance(b, c) + 1e-12


def test_polarity_loop_is_two_points_half_a_loop_apart() -> None:
    assert load_loop("polarity2").distance("positive", "negative") == 0.5
    assert distance("FI-2", "pos", "negative") == 0.5


def test_webemo25_parents_are_contiguous_on_the_shipped_loop() -> None:
    order = load_loop("webemo25").order
    n = len(order)
    for parent in set(WEBEMO_PARENT.values()):
        idx = {i for i, x in enumerate(order) if WEBEMO_PARENT[x] == parent}
        # One cyclic interval: some start s such that s, s+1, ..., s+k-1 (mod n) are its members.
        assert any({(s + j) % n for j in range(len(idx))} == idx for s in range(n)), parent
    assert load_loop("webemo25").groups == WEBEMO_PARENT
    assert load_loop("webemo25").provenance["lexicon"]["words"]["enthrallment"] == "enthralled"


def test_paper_example_contentment_closer_to_amusement_than_anger() -> None:
    # Section 3.2: for an image labelled amusement, contentment is a milder error than anger.
    assert distance("FI-8", "amusement", "contentment") < distance("FI-8", "amusement", "anger")


@pytest.mark.parametrize("subtask", list(SUBTASKS))
def test_every_subtask_has_its_loop(subtask: str) -> None:
    loop = loop_for_subtask(subtask)
    assert loop.name == LOOP_OF_SUBTASK[subtask]
    assert set(SUBTASKS[subtask].labels) == set(loop.order)


def test_aliases_and_spellings_are_accepted() -> None:
    assert distance("WebEmo-25", "Cheerfullness", "cheerfulness") == 0.0
    assert distance("WebEmo-25", "irritabilty", "enthralled") == distance(
        "WebEmo-25", "irritability", "enthrallment"
    )
    assert distance("Abstract-8", "sad", "sadness") == 0.0
    assert distance("artphoto-8", " Content. ", "amusement") == distance(
        "Artphoto-8", "contentment", "amusement"
    )
    assert distance("UnbaisedEmo-6", "joy", "love") == load_loop("unbiased6").distance("joy", "love")


def test_unknown_names_give_clear_errors() -> None:
    with pytest.raises(UnknownLabelError) as info:
        distance("FI-8", "amusement", "joy")
    message = str(info.value)
    assert "'joy'" in message
    assert "mikels8" in message
    assert "amusement, anger, fear" in message or all(x in message for x in LOOP_LABELS["mikels8"])
    with pytest.raises(UnknownLoopError, match="valid loops: mikels8, polarity2"):
        load_loop("plutchik")
    with pytest.raises(UnknownSubtaskError):
        loop_for_subtask("FI-9")


def test_loaded_loops_are_read_only() -> None:
    loop = load_loop("mikels8")
    with pytest.raises(TypeError):
        loop.positions["anger"] = 0.5  # type: ignore[index]


def test_shipped_data_found_from_an_installed_style_import(tmp_path: Path) -> None:
    # A fresh interpreter started elsewhere finds the JSON through the package, not the cwd.
    code = "from emocaliber_rl.loops import distance; print(distance('WebEmo-2', 'positive', 'negative'))"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == "0.5"


def test_no_lexicon_file_is_tracked() -> None:
    # The NRC VAD licence forbids redistribution.
    proc = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        pytest.skip("not a git checkout")
    tracked = [p for p in proc.stdout.splitlines() if "nrc-vad" in p.lower() or "lexicon" in Path(p).name.lower()]
    assert tracked == [p for p in tracked if p.endswith(".py")]


@pytest.mark.skipif(not os.environ.get(ENV_VAR), reason=f"set {ENV_VAR} to the NRC VAD v1 lexicon")
def test_shipped_loops_rebuild_from_the_user_lexicon(tmp_path: Path) -> None:
    build_all(None, tmp_path)
    for name in LOOP_LABELS:
        shipped = load_loop(name)
        rebuilt = json.loads((tmp_path / f"{name}.json").read_text(encoding="utf-8"))
        assert rebuilt["order"] == list(shipped.order)
        assert rebuilt["positions"] == dict(shipped.positions)


def test_cli_parses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["loops", "--help"])
    assert info.value.code == 0
    assert "arc length" in capsys.readouterr().out.lower()
