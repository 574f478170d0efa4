"""The six raw adapters on copies laid out exactly as the datasets publish them.

Every fixture is written here, byte for byte where the published file is known (docs/data.md
names the source of each): WebEmo's ``category.txt`` as ccivit/download_webEmo has it (comment
line, tuple list, tabs, CRLF, no final newline, ``cheerfullness``/``irritabilty``); EmoSet's
four-element list entries and nested ``info.json`` (JingyuanYY/EmoSet README and EmoSet.py);
FI's ``emotion_dataset/`` and UnbiasedEmo's ``images/`` wrapper folders; Abstract's single-quoted
``ABSTRACT_groundTruth.csv``; ArtPhoto's ``<emotion>_<n>.jpg`` with ``ReadMe.rtf``. Expected labels
come from the meaning of the source file (the tuple order, the entry's emotion, the vote counts),
typed out below, never from the code under test.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from emocaliber_rl.data.raw import LayoutError, read_dataset
from emocaliber_rl.data.report import ProblemReport
from emocaliber_rl.data.splits import build_splits, near_pairs, write_build
from emocaliber_rl.data.synthetic import draw_image, webemo_category_txt

# ccivit/download_webEmo category.txt @1bf615b (identical tuples in slifer0918/WEBEmo, LF there).
CATEGORY_TXT = (
    "# Three level emotion hierarchy.\r\n"
    "labels=[('affection', 'love', '+'), \r\n"
    "\t('cheerfullness', 'joy', '+'), \r\n"
    "\t('confusion', 'confusion', '-'), \r\n"
    "\t('contentment', 'joy', '+'), \r\n"
    "\t('disappointment', 'sadness', '-'), \r\n"
    "\t('disgust', 'anger', '-'), \r\n"
    "\t('enthrallment', 'joy', '+'), \r\n"
    "\t('envy', 'anger', '-'),\r\n"
    "\t('exasperation', 'anger', '-'), \r\n"
    "\t('gratitude', 'love', '+'), \r\n"
    "\t('horror', 'fear', '-'), \r\n"
    "\t('irritabilty', 'anger', '-'), \r\n"
    "\t('lust', 'love', '+'), \r\n"
    "\t('neglect', 'sadness', '-'), \r\n"
    "\t('nervousness', 'fear', '-'), \r\n"
    "\t('optimism', 'joy', '+'), \r\n"
    "\t('pride', 'joy', '+'),\r\n"
    "\t('rage', 'anger', '-'), \r\n"
    "\t('relief', 'joy', '+'), \r\n"
    "\t('sadness', 'sadness', '-'), \r\n"
    "\t('shame', 'sadness', '-'), \r\n"
    "\t('suffering', 'sadness', '-'), \r\n"
    "\t('surprise', 'surprise', '+'), \r\n"
    "\t('sympathy', 'sadness', '-'),\r\n"
    "\t('zest', 'joy', '+')]"
)
# The same file read by a person: index -> (name as spelled, parent, sign). Canonical spellings
# fix the two typos only.
WEBEMO_TUPLES = [
    ("affection", "love", "+"), ("cheerfullness", "joy", "+"), ("confusion", "confusion", "-"),
    ("contentment", "joy", "+"), ("disappointment", "sadness", "-"), ("disgust", "anger", "-"),
    ("enthrallment", "joy", "+"), ("envy", "anger", "-"), ("exasperation", "anger", "-"),
    ("gratitude", "love", "+"), ("horror", "fear", "-"), ("irritabilty", "anger", "-"),
    ("lust", "love", "+"), ("neglect", "sadness", "-"), ("nervousness", "fear", "-"),
    ("optimism", "joy", "+"), ("pride", "joy", "+"), ("rage", "anger", "-"), ("relief", "joy", "+"),
    ("sadness", "sadness", "-"), ("shame", "sadness", "-"), ("suffering", "sadness", "-"),
    ("surprise", "surprise", "+"), ("sympathy", "sadness", "-"), ("zest", "joy", "+"),
]
TYPO = {"cheerfullness": "cheerfulness", "irritabilty": "irritability"}
SIGN = {"+": "positive", "-": "negative"}


def _url(idx: int, k: int) -> str:
    # The README's example URL shape, made unique per image.
    return f"https://as2.ftcdn.net/jpg/00/42/93/78/220_F_{idx:02d}{k:06d}_2rowA8aFZs20JZ2Iq6WKAr.jpg"


def _webemo(root: Path, category: str | None = CATEGORY_TXT, per: int = 2) -> dict[str, int]:
    """download_dataset.py's result: train/<idx>/<basename>, test/<idx>/<basename>; -> rel: idx."""
    root.mkdir(parents=True)
    if category is not None:
        (root / "category.txt").write_bytes(category.encode())
    lists: dict[str, list[str]] = {"train": [], "test": []}
    truth = {}
    for idx in range(25):
        for k in range(per):
            split = "test" if k == per - 1 else "train"
            url = _url(idx, k)
            rel = f"{split}/{idx}/{url.rsplit('/', 1)[-1]}"
            draw_image(root / rel, 1000 + idx * 10 + k)
            lists[split].append(f"{url} {idx}\n")
            truth[rel] = idx
    (root / "train25.txt").write_text("".join(lists["train"]))
    (root / "test25.txt").write_text("".join(lists["test"]))
    return truth


def test_synthetic_writer_matches_the_published_category_txt() -> None:
    # The demo's raw WebEmo folder must be read exactly as a real one.
    assert webemo_category_txt() == CATEGORY_TXT


def test_webemo_labels_follow_the_tuple_order(tmp_path: Path) -> None:
    truth = _webemo(tmp_path / "WebEmo")
    report = ProblemReport()
    samples = read_dataset("WebEmo", tmp_path / "WebEmo", report)
    assert len(report) == 0 and report.notes == []
    got = {s.id.removeprefix("WebEmo/"): s.label for s in samples}
    want = {rel: TYPO.get(WEBEMO_TUPLES[idx][0], WEBEMO_TUPLES[idx][0]) for rel, idx in truth.items()}
    assert got == want and len(got) == 50

    res = build_splits({"WebEmo": tmp_path / "WebEmo"}, test_size=3, workers=1, progress=False)
    by_image = {rel: idx for rel, idx in truth.items()}
    seen = set()
    for r in res.train + res.test:
        name, parent, sign = WEBEMO_TUPLES[by_image[r.id.removeprefix("WebEmo/")]]
        expected = {"WebEmo-25": TYPO.get(name, name), "WebEmo-7": parent, "WebEmo-2": SIGN[sign]}
        assert r.label == expected[r.subtask], r.id
        seen.add(r.subtask)
    assert seen == {"WebEmo-25", "WebEmo-7", "WebEmo-2"} and res.empty == []


def test_webemo_lf_copy_and_reordered_file(tmp_path: Path) -> None:
    # slifer0918/WEBEmo's copy has LF endings; a reordered file remaps the indices (noted).
    lf = CATEGORY_TXT.replace("\r\n", "\n")
    lines = lf.split("\n")
    lines[1], lines[2] = "labels=[('cheerfullness', 'joy', '+'), ", "\t('affection', 'love', '+'), "
    truth = _webemo(tmp_path / "W", category="\n".join(lines), per=1)
    report = ProblemReport()
    got = {s.id.removeprefix("WebEmo/"): s.label for s in read_dataset("WebEmo", tmp_path / "W", report)}
    order = ["cheerfulness", "affection"] + [TYPO.get(n, n) for n, _, _ in WEBEMO_TUPLES[2:]]
    assert got == {rel: order[idx] for rel, idx in truth.items()}
    assert len(report) == 0 and "orders the categories differently" in report.notes[0]


@pytest.mark.parametrize("edit,line,message", [
    (lambda t: t[:-1], 2, "does not parse"),  # closing bracket lost
    (lambda t: t.replace("('affection', 'love', '+')", "('affection', 'joy', '+')"), 2, "parent 'joy'"),
    (lambda t: t.replace("('rage', 'anger', '-')", "('rage', 'anger', '+')"), 19, r"polarity '\+'"),
    (lambda t: t.replace("('lust', 'love', '+')", "('glee', 'love', '+')"), 14, "'glee' is not"),
    (lambda t: t.replace("('zest', 'joy', '+')", "('affection', 'love', '+')"), 26, "listed twice"),
    (lambda t: t.replace("\t('zest', 'joy', '+')]", "]").replace("'-'),\r\n]", "'-')]"), None,
     "24 categories"),
    # the format the old adapter assumed: one name per line
    (lambda t: "\n".join(n for n, _, _ in WEBEMO_TUPLES), 1, "expected one assignment"),
])
def test_webemo_category_txt_that_disagrees_is_refused(tmp_path: Path, edit, line, message) -> None:
    _webemo(tmp_path / "W", category=edit(CATEGORY_TXT), per=1)
    with pytest.raises(LayoutError, match=message) as e:
        read_dataset("WebEmo", tmp_path / "W", ProblemReport())
    where = str(tmp_path / "W" / "category.txt") + (f":{line}" if line else "")
    assert str(e.value).startswith(where)


def test_webemo_cli_refuses_a_bad_category_txt(tmp_path: Path, capsys) -> None:
    from emocaliber_rl.cli import main

    _webemo(tmp_path / "W", category=CATEGORY_TXT.replace("'joy', '+'), \r\n\t('confusion'",
                                                          "'love', '+'), \r\n\t('confusion'"), per=1)
    rc = main(["bench", "build", "--webemo", str(tmp_path / "W"), "-o", str(tmp_path / "o"),
               "--no-progress", "--workers", "1"])
    assert rc == 2
    assert "category.txt:3: 'cheerfullness' has parent 'love'" in capsys.readouterr().err


def test_webemo_slifer_layout_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "W"
    draw_image(root / "images" / "train25" / "1" / "a.jpg", 1)
    (root / "category.txt").write_text(CATEGORY_TXT)
    with pytest.raises(LayoutError, match="last digit"):
        read_dataset("WebEmo", root, ProblemReport())


# ------------------------------------------------------------------------------------------
# EmoSet

# info.json @4e32886: the emotion block as published (CRLF, 2-space indent), one of the others.
EMOSET_INFO = {
    "emotion": {
        "label2idx": {"amusement": 0, "awe": 1, "contentment": 2, "excitement": 3, "anger": 4,
                      "disgust": 5, "fear": 6, "sadness": 7},
        "idx2label": {"0": "amusement", "1": "awe", "2": "contentment", "3": "excitement",
                      "4": "anger", "5": "disgust", "6": "fear", "7": "sadness"},
    },
    "brightness": {"label2idx": {f"0.{i}": i for i in range(10)} | {"1.0": 10},
                   "idx2label": {str(i): i / 10 for i in range(11)}},
}
EMOTIONS = list(EMOSET_INFO["emotion"]["label2idx"])


def _emoset(root: Path, entry=lambda emo, n: [emo, n, f"image/{emo}/{n}.jpg", f"annotation/{emo}/{n}.json"],
            info: dict | None = EMOSET_INFO) -> dict[str, str]:
    """data_root as the README draws it; -> image rel path: the entry's emotion."""
    lists: dict[str, list] = {"train": [], "val": [], "test": []}
    truth = {}
    for k, emo in enumerate(EMOTIONS):
        for i in range(3):
            n = f"{emo}_{12865 + i}"
            draw_image(root / "image" / emo / f"{n}.jpg", 2000 + k * 10 + i)
            (root / "annotation" / emo).mkdir(parents=True, exist_ok=True)
            (root / "annotation" / emo / f"{n}.json").write_text(json.dumps({"brightness": 0.4}))
            lists[("train", "val", "test")[i]].append(entry(emo, n))
            truth[f"image/{emo}/{n}.jpg"] = emo
    for split, entries in lists.items():
        (root / f"{split}.json").write_text(json.dumps(entries, indent=4).replace("\n", "\r\n"))
    if info is not None:
        (root / "info.json").write_text(json.dumps(info, indent=2).replace("\n", "\r\n"))
    return truth


@pytest.mark.parametrize("form", ["official", "three"])
def test_emoset_label_is_the_entry_emotion(tmp_path: Path, form: str) -> None:
    entry = None if form == "official" else (lambda emo, n: [emo, f"image/{emo}/{n}.jpg",
                                                               f"annotation/{emo}/{n}.json"])
    truth = _emoset(tmp_path / "EmoSet", **({"entry": entry} if entry else {}))
    report = ProblemReport()
    samples = read_dataset("EmoSet", tmp_path / "EmoSet", report)
    assert len(report) == 0
    assert {s.id.removeprefix("EmoSet/"): s.label for s in samples} == truth
    res = build_splits({"EmoSet": tmp_path / "EmoSet"}, test_size=4, workers=1, progress=False)
    assert res.counts["EmoSet-8"] == {"test": 4, "train": 20}
    assert all(r.label == truth[r.id.removeprefix("EmoSet/")] for r in res.train + res.test)


@pytest.mark.parametrize("info,message", [
    ({"label2idx": EMOSET_INFO["emotion"]["label2idx"]}, "no emotion.label2idx"),
    ({"emotion": {"label2idx": {k: v for k, v in EMOSET_INFO["emotion"]["label2idx"].items()
                                if k != "fear"}}}, "lacks fear"),
    ({"emotion": {"label2idx": {**EMOSET_INFO["emotion"]["label2idx"], "joy": 8}}}, "key 'joy'"),
])
def test_emoset_info_json_not_as_published_is_refused(tmp_path: Path, info: dict, message: str) -> None:
    _emoset(tmp_path / "E", info=info)
    with pytest.raises(LayoutError, match=message) as e:
        read_dataset("EmoSet", tmp_path / "E", ProblemReport())
    assert str(e.value).startswith(str(tmp_path / "E" / "info.json"))


def test_emoset_bad_entries_name_list_file_and_index(tmp_path: Path) -> None:
    root = tmp_path / "E"
    _emoset(root)
    train = json.loads((root / "train.json").read_text())
    train[0] = ["amusement", "image/amusement/amusement_12865.jpg"]  # two elements
    train[1][0] = "joy"  # not an EmoSet emotion
    train[2][0] = "fear"  # entry says fear, image is under image/contentment/
    train[3][2] = "image/excitement/gone.jpg"  # listed, not on disk
    train[4] = {"emotion": "anger"}
    (root / "train.json").write_text(json.dumps(train))
    draw_image(root / "image" / "awe" / "awe_99999.jpg", 2999)  # on disk, in no list
    res = build_splits({"EmoSet": root}, test_size=2, workers=1, progress=False)
    report = res.report
    got = sorted((p.kind, p.source.rsplit("/", 1)[-1], p.item) for p in report.problems)
    assert got == [
        ("bad_entry", "train.json", "train.json[0]"),
        ("bad_entry", "train.json", "train.json[4]"),
        ("image_missing", "gone.jpg", "EmoSet/image/excitement/gone.jpg"),
        ("label_mismatch", "train.json", "train.json[2] image/contentment/contentment_12865.jpg"),
        ("unknown_label", "train.json", "train.json[1] image/awe/awe_12865.jpg"),
        # on disk, but no usable entry names them: the three whose entries broke, and the extra
        *[("unlisted", "E", f"image/{e}/{e}_12865.jpg") for e in ("amusement", "anger")],
        ("unlisted", "E", "image/awe/awe_99999.jpg"),
        ("unlisted", "E", "image/excitement/excitement_12865.jpg"),
    ]
    missing = next(p for p in report.problems if p.kind == "image_missing")
    assert f"listed at {root / 'train.json'}[3]" in missing.detail
    # 24 entries -> 20 listed samples + 8 adapter reports; 19 decode.
    assert res.datasets["EmoSet"] == {"found": 28, "kept": 19, "reported": {
        "bad_entry": 2, "image_missing": 1, "label_mismatch": 1, "unknown_label": 1, "unlisted": 4}}


def test_emoset_unparseable_list_is_refused(tmp_path: Path) -> None:
    _emoset(tmp_path / "E")
    (tmp_path / "E" / "val.json").write_text('[\n  ["awe", "awe_1",\n')
    with pytest.raises(LayoutError, match=r"val\.json:3: not valid JSON"):
        read_dataset("EmoSet", tmp_path / "E", ProblemReport())


# ------------------------------------------------------------------------------------------
# wrapper roots, empty results

MIKELS = ["amusement", "anger", "awe", "contentment", "disgust", "excitement", "fear", "sadness"]


def _fi(root: Path, per: int = 2) -> None:
    for k, emo in enumerate(MIKELS):
        for i in range(per):
            draw_image(root / emo / f"{emo}_{i:04d}.jpg", 3000 + k * 10 + i)


def test_fi_parent_of_emotion_dataset_is_read_one_level_down(tmp_path: Path) -> None:
    _fi(tmp_path / "FI_download" / "emotion_dataset")
    report = ProblemReport()
    samples = read_dataset("FI", tmp_path / "FI_download", report)
    assert sorted((s.id, s.label) for s in samples) == sorted(
        (f"FI/{emo}/{emo}_{i:04d}.jpg", emo) for emo in MIKELS for i in range(2))
    assert len(report) == 0 and "emotion_dataset" in report.notes[0]


def test_unbiasedemo_parent_of_images_is_read_one_level_down(tmp_path: Path) -> None:
    six = ["anger", "fear", "joy", "love", "sadness", "surprise"]
    for k, emo in enumerate(six):
        for obj in ("dog", "crowd"):
            draw_image(tmp_path / "UnBiasedEmo" / "images" / emo / obj / "1.jpg", 4000 + k * 2 + len(obj))
    report = ProblemReport()
    samples = read_dataset("UnbiasedEmo", tmp_path / "UnBiasedEmo", report)
    assert sorted((s.id, s.label) for s in samples) == sorted(
        (f"UnbiasedEmo/{emo}/{obj}/1.jpg", emo) for emo in six for obj in ("dog", "crowd"))
    assert "images" in report.notes[0]


def test_roots_without_the_layout_are_refused(tmp_path: Path, capsys) -> None:
    from emocaliber_rl.cli import main

    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match="FI: .* is not laid out as expected.*emotion"):
        read_dataset("FI", tmp_path / "empty", ProblemReport())
    _fi(tmp_path / "two" / "a", per=1)
    _fi(tmp_path / "two" / "b", per=1)
    with pytest.raises(LayoutError, match="holds 2 folders"):
        read_dataset("FI", tmp_path / "two", ProblemReport())
    for flag in ("--fi", "--emoset", "--webemo", "--abstract", "--artphoto", "--unbiasedemo"):
        assert main(["bench", "build", flag, str(tmp_path / "empty"), "-o", str(tmp_path / "o"),
                     "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("is not laid out as expected") == 6 and "ABSTRACT_groundTruth.csv next to" in err


def test_dataset_with_no_usable_sample_exits_non_zero(tmp_path: Path, capsys) -> None:
    from emocaliber_rl.cli import main

    _fi(tmp_path / "FI", per=1)
    art = tmp_path / "art"
    for p in (draw_image(art / f"sad_{i}.jpg", 5000 + i) for i in range(3)):
        p.write_bytes(b"not a jpeg")
    rc = main(["bench", "build", "--fi", str(tmp_path / "FI"), "--artphoto", str(art),
               "-o", str(tmp_path / "o"), "--no-progress", "--workers", "1"])
    out = capsys.readouterr()
    assert rc == 1 and "error: ArtPhoto (--artphoto" in out.err
    assert "| ArtPhoto | 3 | 0 | image_undecodable 3 |" in out.out
    assert "| FI | 8 | 8 | none |" in out.out
    assert "ArtPhoto yielded no usable sample" in (tmp_path / "o" / "summary.md").read_text()


# ------------------------------------------------------------------------------------------
# Abstract

COLUMNS = ["Amusement", "Anger", "Awe", "Content", "Disgust", "Excitement", "Fear", "Sad"]
CANON = {"Content": "contentment", "Sad": "sadness"}


def _abstract(root: Path, header: list[str], rows: list[str], first: str = "''") -> Path:
    for i in range(1, 9):
        draw_image(root / f"abstract_{i:04d}.jpg", 6000 + i)
    csv_path = root / "ABSTRACT_groundTruth.csv"
    text = ",".join([first, *(f"'{h}'" for h in header)]) + "\r\n" + "".join(r + "\r\n" for r in rows)
    csv_path.write_text(text, newline="")
    return csv_path


@pytest.mark.parametrize("first", ["''", "", "'Filename'"])
def test_abstract_majority_by_column_name_in_any_order(tmp_path: Path, first: str) -> None:
    header = ["Sad", "Awe", "Amusement", "Fear", "Content", "Anger", "Excitement", "Disgust"]
    rows = [
        "'abstract_0001.jpg',9,0,1,0,0,0,2,0",  # Sad 9
        "'abstract_0002.jpg',0,13,0,0,0,1,0,0",  # Awe 13
        "'abstract_0003.jpg',1,0,0,0,7,0,0,2",  # Content 7
        "'abstract_0004.jpg',0,0,0,0,0,0,0,4",  # Disgust 4
        "'abstract_0005.jpg',3,3,0,0,0,0,0,0",  # tie Sad/Awe
    ]
    gt = _abstract(tmp_path / "testImages_abstract", header, rows, first)
    report = ProblemReport()
    got = {s.id: s.label for s in read_dataset("Abstract", tmp_path / "testImages_abstract", report)}
    assert got == {"Abstract/abstract_0001.jpg": "sadness", "Abstract/abstract_0002.jpg": "awe",
                   "Abstract/abstract_0003.jpg": "contentment", "Abstract/abstract_0004.jpg": "disgust"}
    assert sorted((p.kind, p.line, p.item) for p in report.problems) == [
        ("inconclusive", 6, "abstract_0005.jpg"),
        *[("unlabelled", None, f"abstract_{i:04d}.jpg") for i in (6, 7, 8)]]
    assert all(p.source == str(gt) for p in report.problems if p.kind == "inconclusive")


def test_abstract_without_a_vote_column_is_refused(tmp_path: Path) -> None:
    _abstract(tmp_path / "A", COLUMNS[:-1], ["'abstract_0001.jpg',1,0,0,0,0,0,5"])
    with pytest.raises(LayoutError, match=r"ABSTRACT_groundTruth\.csv:1: .*missing: sadness"):
        read_dataset("Abstract", tmp_path / "A", ProblemReport())
    _abstract(tmp_path / "B", [*COLUMNS[:-1], "Fear"], ["'abstract_0001.jpg',1,0,0,0,0,0,5,0"])
    with pytest.raises(LayoutError, match="repeated: Fear"):
        read_dataset("Abstract", tmp_path / "B", ProblemReport())
    _abstract(tmp_path / "C", [*COLUMNS, "Joy"], [])
    with pytest.raises(LayoutError, match="column 'Joy'"):
        read_dataset("Abstract", tmp_path / "C", ProblemReport())


def test_abstract_rows_not_full_width_are_reported_per_line(tmp_path: Path) -> None:
    rows = [
        "'abstract_0001.jpg',0,0,0,0,0,0,0,6",  # Sad: kept
        "'abstract_0002.jpg',0,0,0,0,0,0,6",  # short: a shifted reading would say Fear
        "'abstract_0003.jpg',0,0,5,0,0,0,0,0,1",  # long
        "'abstract_0004.jpg',0,x,5,0,0,0,0,0",  # not a number
        "'abstract_0001.jpg',9,0,0,0,0,0,0,0",  # listed twice
    ]
    _abstract(tmp_path / "A", COLUMNS, rows)
    report = ProblemReport()
    got = {s.id: s.label for s in read_dataset("Abstract", tmp_path / "A", report)}
    assert got == {"Abstract/abstract_0001.jpg": "sadness"}
    problems = sorted((p.line, p.kind) for p in report.problems if p.line)
    assert problems == [(3, "bad_row"), (4, "bad_row"), (5, "bad_row"), (6, "duplicate_entry")]
    assert "8 cells, the header has 9" in next(p.detail for p in report.problems if p.line == 3)


# ------------------------------------------------------------------------------------------
# ArtPhoto


def test_artphoto_published_folder(tmp_path: Path) -> None:
    root = tmp_path / "dl" / "testImages_artphoto"
    names = {"amusement_1.jpg": "amusement", "sad_12.jpg": "sadness", "contentment_3.jpg": "contentment",
             "fear_100.jpg": "fear", "excitement_7.jpg": "excitement"}
    for i, n in enumerate(names):
        draw_image(root / n, 7000 + i)
    (root / "ReadMe.rtf").write_text("{\\rtf1 ...}")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "._sad_12.jpg").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork, not a JPEG
    (tmp_path / "dl" / "__MACOSX").mkdir()
    report = ProblemReport()
    got = {s.id: s.label for s in read_dataset("ArtPhoto", tmp_path / "dl", report)}
    assert got == {f"ArtPhoto/{n}": lab for n, lab in names.items()}
    assert len(report) == 0
    assert "testImages_artphoto" in report.notes[0] and "skipped 1 hidden" in report.notes[1]


# ------------------------------------------------------------------------------------------
# near-duplicates


def _resave(src: Path, dst: Path, fmt: str, **kw) -> Path:
    from PIL import Image

    dst.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as im:
        im.convert("RGB").save(dst, format=fmt, **kw)
    return dst


def test_near_duplicates_keep_the_test_copy_and_report_both_paths(tmp_path: Path) -> None:
    _fi(tmp_path / "FI", per=3)
    _abstract(tmp_path / "A", COLUMNS, [f"'abstract_{i:04d}.jpg'," + ",".join(
        "5" if k == i - 1 else "0" for k in range(8)) for i in range(1, 9)])
    six = ["anger", "fear", "joy", "love", "sadness", "surprise"]
    for k, emo in enumerate(six):
        draw_image(tmp_path / "U" / emo / "dog" / "1.jpg", 8000 + k, size=(96, 80))
    a_src = tmp_path / "A" / "abstract_0003.jpg"
    u_src = tmp_path / "U" / "joy" / "dog" / "1.jpg"
    a_copy = _resave(a_src, tmp_path / "FI" / "awe" / "awe_9001.jpg", "JPEG", quality=95)
    u_copy = _resave(u_src, tmp_path / "FI" / "fear" / "fear_9002.png", "PNG")
    assert u_copy.read_bytes() != u_src.read_bytes()
    assert a_copy.read_bytes() != a_src.read_bytes()
    roots = {"FI": tmp_path / "FI", "Abstract": tmp_path / "A", "UnbiasedEmo": tmp_path / "U"}

    res = build_splits(roots, test_size=2, workers=1, progress=False)
    near = {p.item: p for p in res.report.problems if p.kind == "near_duplicate"}
    assert set(near) == {"FI/awe/awe_9001.jpg", "FI/fear/fear_9002.png"}
    assert near["FI/awe/awe_9001.jpg"].source == str(a_copy)
    assert str(a_src) in near["FI/awe/awe_9001.jpg"].detail
    assert str(u_src) in near["FI/fear/fear_9002.png"].detail
    assert sorted(k for k, _, _ in res.near_duplicates) == ["Abstract/abstract_0003.jpg",
                                                          "UnbiasedEmo/joy/dog/1.jpg"]
    ids = {r.id for r in res.train + res.test}
    assert "Abstract/abstract_0003.jpg" in ids and not ids & set(near)
    assert res.overlap == 0 and res.overlap_near == 0
    assert res.datasets["FI"] == {"found": 26, "kept": 24, "reported": {"near_duplicate": 2}}
    summary = write_build(res, tmp_path / "out", seed=0, test_size=2)["summary"].read_text()
    assert "0 near-duplicate pairs (pHash Hamming distance <= 4) (disjoint)" in summary
    assert "Near-duplicates left out before splitting: 2" in summary

    # Byte hashes alone miss both copies, and the summary no longer says "disjoint".
    blind = build_splits(roots, test_size=2, workers=1, progress=False, near_duplicates=False)
    assert not [p for p in blind.report.problems if p.kind in ("near_duplicate", "duplicate")]
    assert set(near) <= {r.id for r in blind.train + blind.test}
    assert "NOT checked" in blind.overlap_line() and "(disjoint)" not in blind.overlap_line()


def test_near_pairs_equals_brute_force() -> None:
    rng = random.Random(5)
    base = [rng.getrandbits(64) for _ in range(60)]
    # near copies: flip 0..6 random bits of some hashes
    hashes = base + [b ^ sum(1 << rng.randrange(64) for _ in range(rng.randrange(7))) for b in base[:40]]
    for t in (0, 2, 4, 6):
        want = sorted((i, j, (hashes[i] ^ hashes[j]).bit_count())
                      for i in range(len(hashes)) for j in range(i + 1, len(hashes))
                      if (hashes[i] ^ hashes[j]).bit_count() <= t)
        assert near_pairs(hashes, t) == want
        assert len(want) >= 10 or t == 0
