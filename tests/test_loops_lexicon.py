"""NRC VAD loader and `emocaliber loops build` on tiny synthetic lexicons.

The real lexicon may not be redistributed, so every file here is written by the test with
made-up words or made-up (random) values for the category words; no real values appear.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import pytest

from emocaliber_rl import cli
from emocaliber_rl.loops import LOOP_LABELS
from emocaliber_rl.taxonomy import WEBEMO_PARENT
from emocaliber_rl.vad_lexicon import (
    ENV_VAR,
    LexiconError,
    MissingWordsError,
    load_lexicon,
    resolve_lexicon_path,
)

V1_HEADER = "Word\tValence\tArousal\tDominance\n"
V2_HEADER = "term\tvalence\tarousal\tdominance\n"


def _write(tmp_path: Path, text: str, name: str = "lex.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_v1_format(tmp_path: Path) -> None:
    path = _write(tmp_path, V1_HEADER + "blorp\t0.100\t0.200\t0.300\n\nZindle\t1\t0\t0.5\r\n")
    lex = load_lexicon(path)
    assert lex.version == "v1"
    assert lex.entries == {"blorp": (0.1, 0.2, 0.3), "zindle": (1.0, 0.0, 0.5)}


def test_v2_format_is_rescaled_to_unit_cube(tmp_path: Path) -> None:
    text = V2_HEADER + "blorp\t-1.000\t0.000\t1.000\nmulti word term\t-0.5\t0.5\t0.25\n"
    lex = load_lexicon(_write(tmp_path, text, "NRC-VAD-Lexicon-v2.1.txt"))
    assert lex.version == "v2.1"
    # (x + 1) / 2 by hand: -1 -> 0, 0 -> 0.5, 1 -> 1, -0.5 -> 0.25, 0.5 -> 0.75, 0.25 -> 0.625
    assert lex.entries["blorp"] == (0.0, 0.5, 1.0)
    assert lex.entries["multi word term"] == (0.25, 0.75, 0.625)


def test_first_occurrence_wins(tmp_path: Path) -> None:
    lex = load_lexicon(_write(tmp_path, V1_HEADER + "blorp\t0.1\t0.1\t0.1\nblorp\t0.9\t0.9\t0.9\n"))
    assert lex.entries["blorp"] == (0.1, 0.1, 0.1)


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        (V1_HEADER + "blorp\t0.1\t0.2\t0.3\nzindle\t0.1\t0.2\n", 3, "expected 4 tab-separated fields"),
        (V1_HEADER + "blorp\t0.1\t0.2\t0.3\t0.4\n", 2, "expected 4 tab-separated fields"),
        (V1_HEADER + "blorp\t0.1\tlots\t0.3\n", 2, "'arousal' is not a number"),
        (V1_HEADER + "blorp\t0.1\t0.2\t1.5\n", 2, "'dominance' = '1.5' is outside [0, 1]"),
        (V1_HEADER + "blorp\t-0.1\t0.2\t0.5\n", 2, "'valence' = '-0.1' is outside [0, 1]"),
        (V1_HEADER + "blorp\tnan\t0.2\t0.5\n", 2, "'valence' = 'nan' is outside"),
        (V1_HEADER + "\t0.1\t0.2\t0.5\n", 2, "field 'word' is empty"),
        (V2_HEADER + "blorp\t-0.5\t-1.2\t0.5\n", 2, "'arousal' = '-1.2' is outside [-1, 1]"),
        ("blorp\t0.1\t0.2\t0.3\n", 1, "unrecognised header"),
        ("Word,Valence,Arousal,Dominance\n", 1, "unrecognised header"),
    ],
)
def test_malformed_lines_name_file_line_and_field(
    tmp_path: Path, text: str, line: int, needle: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(LexiconError) as info:
        load_lexicon(path)
    message = str(info.value)
    assert f"{path}:{line}:" in message
    assert needle in message


def test_undecodable_line_names_line(tmp_path: Path) -> None:
    path = tmp_path / "lex.txt"
    path.write_bytes(V1_HEADER.encode() + b"blorp\t0.1\t0.2\t0.3\n\xff\xfe\t0.1\t0.2\t0.3\n")
    with pytest.raises(LexiconError, match=r"lex\.txt:3: not UTF-8"):
        load_lexicon(path)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(LexiconError, match="cannot read VAD lexicon .*nope.txt"):
        load_lexicon(tmp_path / "nope.txt")
    with pytest.raises(LexiconError, match="empty file"):
        load_lexicon(_write(tmp_path, ""))


def test_alias_fallback_and_missing_words(tmp_path: Path) -> None:
    # 'enthrallment' is absent but its taxonomy alias 'enthralled' is present.
    text = V1_HEADER + "enthralled\t0.3\t0.4\t0.5\njoy\t0.6\t0.7\t0.8\n"
    lex = load_lexicon(_write(tmp_path, text))
    assert lex.lookup("enthrallment") == ("enthralled", (0.3, 0.4, 0.5))
    assert lex.lookup("joy") == ("joy", (0.6, 0.7, 0.8))
    with pytest.raises(MissingWordsError) as info:
        lex.vectors(["joy", "enthrallment", "zest", "irritability", "sadness"])
    err = info.value
    assert set(err.missing) == {"zest", "irritability", "sadness"}
    message = str(err)
    assert "3 category word(s) missing" in message
    for needle in ("zest (tried: zest)", "irritability (tried: irritability, irritabilty)", "sad"):
        assert needle in message
    assert str(lex.path) in message


def test_lexicon_path_from_flag_or_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(LexiconError, match=f"--lexicon FILE or set {ENV_VAR}"):
        resolve_lexicon_path(None)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env.txt"))
    assert resolve_lexicon_path(None) == tmp_path / "env.txt"
    assert resolve_lexicon_path(tmp_path / "flag.txt") == tmp_path / "flag.txt"


# ---------------------------------------------------------------------------------------------
# `emocaliber loops build` end to end, on random values for the real category words.
# ---------------------------------------------------------------------------------------------

ALL_LABELS = sorted({label for labels in LOOP_LABELS.values() for label in labels})


def _synthetic_values(seed: int) -> dict[str, tuple[float, float, float]]:
    rng = random.Random(seed)
    return {label: (rng.random(), rng.random(), rng.random()) for label in ALL_LABELS}


def _write_lexicon(path: Path, values: dict[str, tuple[float, float, float]], v2: bool) -> Path:
    lines = [V2_HEADER if v2 else V1_HEADER, "filler\t0.5\t0.5\t0.5\n" if not v2 else ""]
    for label, vad in values.items():
        word = "enthralled" if label == "enthrallment" else label
        shown = [2 * x - 1 for x in vad] if v2 else list(vad)
        # 9 decimals: the v2 round trip (2x - 1, then (x + 1) / 2) stays within 1e-9.
        lines.append(word + "".join(f"\t{x:.9f}" for x in shown) + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _independent_positions(values, order) -> tuple[list[float], float]:
    edges = [math.dist(values[order[i]], values[order[(i + 1) % len(order)]]) for i in range(len(order))]
    total = sum(edges)
    return [sum(edges[:i]) / total for i in range(len(order))], total


def _numeric_paths(node, top: str = "") -> set[str]:
    """Top-level keys under which a number occurs anywhere in a JSON value."""
    if isinstance(node, bool) or node is None or isinstance(node, str):
        return set()
    if isinstance(node, (int, float)):
        return {top}
    items = node.items() if isinstance(node, dict) else enumerate(node)
    found: set[str] = set()
    for key, value in items:
        found |= _numeric_paths(value, top or str(key))
    return found


def _brute_force_length(values, labels) -> float:
    first, rest = labels[0], labels[1:]
    best = math.inf
    for perm in itertools.permutations(rest):
        order = (first, *perm)
        best = min(best, _independent_positions(values, order)[1])
    return best


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("build")
    values = _synthetic_values(2024)
    lexicon = _write_lexicon(root / "NRC-VAD-Lexicon.txt", values, v2=False)
    out = root / "loops"
    assert cli.main(["loops", "build", "--lexicon", str(lexicon), "--out", str(out)]) == 0
    return values, out


def test_build_writes_every_loop_with_provenance(built: tuple[dict, Path]) -> None:
    values, out = built
    assert sorted(p.stem for p in out.glob("*.json")) == sorted(LOOP_LABELS)
    for name, labels in LOOP_LABELS.items():
        data = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
        assert data["name"] == name
        assert sorted(data["order"]) == sorted(labels)
        assert data["lexicon"]["version"] == "v1"
        assert data["lexicon"]["file"] == "NRC-VAD-Lexicon.txt"
        assert data["perimeter"] == "arc-length"
        assert data["built_with"] == "emocaliber loops build"
        # Positions and length recomputed from the synthetic values along the written order.
        expected, total = _independent_positions(values, data["order"])
        assert [data["positions"][x] for x in data["order"]] == pytest.approx(expected, abs=1e-6)
        assert data["total_length"] == pytest.approx(total, abs=1e-6)
        # The JSON must not carry lexicon values (no redistribution): its only numbers are
        # the positions, the total length and the format version.
        assert _numeric_paths(data) <= {"positions", "total_length", "format_version"}
    words = json.loads((out / "webemo25.json").read_text(encoding="utf-8"))["lexicon"]["words"]
    assert words["enthrallment"] == "enthralled"


@pytest.mark.parametrize("name", ["mikels8", "webemo7", "unbiased6", "polarity2"])
def test_built_flat_loops_are_optimal(built: tuple[dict, Path], name: str) -> None:
    values, out = built
    data = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
    assert data["total_length"] == pytest.approx(
        _brute_force_length(values, list(LOOP_LABELS[name])), abs=1e-6
    )


def test_built_webemo25_keeps_parents_contiguous(built: tuple[dict, Path]) -> None:
    _, out = built
    order = json.loads((out / "webemo25.json").read_text(encoding="utf-8"))["order"]
    n = len(order)
    # Going around the loop the parent changes exactly once per parent (7 parents).
    changes = sum(WEBEMO_PARENT[order[i]] != WEBEMO_PARENT[order[(i + 1) % n]] for i in range(n))
    assert changes == len(set(WEBEMO_PARENT.values())) == 7


def test_v2_lexicon_gives_the_same_loops(built: tuple[dict, Path], tmp_path: Path) -> None:
    # v2.1 stores 2x - 1; rescaling halves every distance, so orders and positions are unchanged.
    values, out_v1 = built
    lexicon = _write_lexicon(tmp_path / "NRC-VAD-Lexicon-v2.1.txt", values, v2=True)
    out = tmp_path / "loops"
    assert cli.main(["loops", "build", "--lexicon", str(lexicon), "--out", str(out)]) == 0
    for name in LOOP_LABELS:
        a = json.loads((out_v1 / f"{name}.json").read_text(encoding="utf-8"))
        b = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
        assert b["lexicon"]["version"] == "v2.1"
        assert a["order"] == b["order"]
        assert a["positions"] == pytest.approx(b["positions"], abs=2e-6)


def test_build_lists_every_missing_word(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = _synthetic_values(1)
    for label in ("zest", "awe", "positive"):
        del values[label]
    lexicon = _write_lexicon(tmp_path / "lex.txt", values, v2=False)
    rc = cli.main(["loops", "build", "--lexicon", str(lexicon), "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "3 category word(s) missing" in err
    for label in ("zest", "awe", "positive"):
        assert f"  {label} (tried:" in err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*.json"))


def test_build_reads_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lexicon = _write_lexicon(tmp_path / "lex.txt", _synthetic_values(3), v2=False)
    monkeypatch.setenv(ENV_VAR, str(lexicon))
    assert cli.main(["loops", "build", "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "mikels8.json").is_file()
