"""The world's teacher states what a rendered image of a known scene shows, and its judge rejects
CoTs that contradict the pixels or the label; both over real HTTP through `cot synthesize` /
`cot judge` (the demo's path). Expected texts are written by hand from the scenes' definition."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from emocaliber_rl.data.chat_server import ServerConfig, ServerThread
from emocaliber_rl.data.cot_client import ChatClient
from emocaliber_rl.data.cot_prompts import structural_check
from emocaliber_rl.data.cot_run import judge, read_synthesized, synthesize, write_kept
from emocaliber_rl.data.records import Record
from emocaliber_rl.taxonomy import SUBTASKS, aliases_for
from emocaliber_rl.world.render import CELL_PX, draw_scene
from emocaliber_rl.world.scenes import Scene, loop_order
from emocaliber_rl.world.teacher import COLOUR_NAMES, colour_name, judge_verdict, teacher_response


def _grid_image(loop: str, cells: list[str], seed: int = 0):
    """A scene drawn by the world's renderer, then its cells rearranged into ``cells`` (row by row),
    so the test knows which cell shows which label."""
    import numpy as np
    from PIL import Image

    labels = sorted(set(cells))
    img = np.asarray(draw_scene(Scene(loop, labels[0], labels[-1], 16 - cells.count(labels[-1])),
                                random.Random(seed)))
    tiles = {}
    for idx in range(16):  # one tile of each label from the drawn scene
        r, c = divmod(idx, 4)
        tile = img[r * CELL_PX:(r + 1) * CELL_PX, c * CELL_PX:(c + 1) * CELL_PX]
        from emocaliber_rl.world.render import read_grid

        tiles.setdefault(read_grid(Image.fromarray(np.tile(tile, (4, 4, 1))), loop)[0], tile)
    out = np.zeros_like(img)
    for idx, label in enumerate(cells):
        r, c = divmod(idx, 4)
        out[r * CELL_PX:(r + 1) * CELL_PX, c * CELL_PX:(c + 1) * CELL_PX] = tiles[label]
    return Image.fromarray(out)


def test_colour_words_are_distinct_per_loop_and_never_a_label() -> None:
    for loop in ("mikels8", "webemo25", "unbiased6"):
        names = [colour_name(loop, lab) for lab in loop_order(loop)]
        assert len(set(names)) == len(names), loop
    # hue 0 is red on every loop; Mikels-8's third label sits at 90 degrees: 25 * 2/8 = 6.25 -> word 6
    assert colour_name("mikels8", loop_order("mikels8")[0]) == "red"
    assert colour_name("mikels8", loop_order("mikels8")[2]) == COLOUR_NAMES[6] == "chartreuse"
    words = {w for task in SUBTASKS.values() for w in task.labels} | {a for task in SUBTASKS for a in aliases_for(task)}
    assert not words & set(COLOUR_NAMES)


def test_teacher_states_what_the_image_shows() -> None:
    a, b = loop_order("mikels8")[0], loop_order("mikels8")[1]  # red, amber
    cells = [a, a, b, a,   # row 1: 3 red
             b, b, a, a,   # row 2: 2 red
             a, a, a, a,   # row 3: 4 red
             b, a, a, b]   # row 4: 2 red  -> 11 red, 5 amber
    img = _grid_image("mikels8", cells)
    resp = teacher_response(img, "FI-8", b)
    assert resp == ("<think><element>red cells per row: 3 2 4 2</element><human>no people</human>"
                    "<context>11 red and 5 amber cells of 16</context><interaction>red outweighs amber"
                    "</interaction><analysis>the red mood is likelier than the amber mood</analysis></think>"
                    f"<answer>{b}</answer>")
    assert structural_check("FI-8", b, resp).ok
    # the top-left cell decides which colour the element counts; a tie names the balance
    tie = [b] * 4 + [a] * 4 + [b] * 4 + [a] * 4
    resp = teacher_response(_grid_image("mikels8", tie), "EmoSet-8", a)
    assert "<element>amber cells per row: 4 0 4 0</element>" in resp
    assert "<context>8 amber and 8 red cells of 16</context>" in resp
    assert "<interaction>amber and red balance</interaction>" in resp
    assert "<analysis>the amber and red moods are equally likely</analysis>" in resp
    one = teacher_response(_grid_image("mikels8", [a] * 16), "FI-2", "positive")
    assert "<element>red cells per row: 4 4 4 4</element>" in one and "<context>all 16 cells red</context>" in one


def test_judge_flags_hallucination_leakage_and_contradiction() -> None:
    a, b = loop_order("mikels8")[0], loop_order("mikels8")[1]
    img = _grid_image("mikels8", [a] * 12 + [b] * 4)
    good = teacher_response(img, "FI-8", b)
    assert judge_verdict(img, "FI-8", b, good)["pass"]
    v = judge_verdict(img, "FI-8", b, good.replace("12 red", "10 red"))
    assert v["hallucination"] and not v["pass"]
    v = judge_verdict(img, "FI-8", b, good.replace("amber mood", "violet mood"))
    assert v["hallucination"]
    v = judge_verdict(img, "FI-8", b, good.replace("red outweighs amber", "amber outweighs red"))
    assert v["logical_inconsistency"] and not v["hallucination"]
    # a conclusion that names only the other colour contradicts the label
    v = judge_verdict(img, "FI-8", b, good.replace("the red mood is likelier than the amber mood", "the red mood"))
    assert v["logical_inconsistency"] and "no colour the <analysis> names" in v["reason"]
    v = judge_verdict(img, "FI-8", b, good.replace("no people", f"no people, only {b}"))
    assert v["label_leakage"]
    # FI-2: the label is the polarity of a shown colour's label. Mikels-8's loop runs amusement
    # (positive), anger, fear, disgust, sadness (negative), ...: an anger-and-fear image is
    # negative whatever its counts, so "positive" contradicts it
    anger, fear = loop_order("mikels8")[1], loop_order("mikels8")[2]
    assert (anger, fear) == ("anger", "fear")
    neg = _grid_image("mikels8", [anger] * 10 + [fear] * 6)
    assert judge_verdict(neg, "FI-2", "negative", teacher_response(neg, "FI-2", "negative"))["pass"]
    assert not judge_verdict(neg, "FI-2", "positive", teacher_response(neg, "FI-2", "positive"))["pass"]
    # amusement and anger straddle the polarity border: both readings are consistent
    for polarity in ("positive", "negative"):
        assert judge_verdict(img, "FI-2", polarity, teacher_response(img, "FI-2", polarity))["pass"]


@pytest.mark.parametrize("subtask", ["FI-8", "WebEmo-25", "UnbiasedEmo-6", "WebEmo-7"])
def test_synthesize_and_judge_over_http_read_the_pixels(subtask: str, tmp_path: Path) -> None:
    """`cot synthesize` and `cot judge` against the world-mode server: the CoT's counts are the
    scene's, and only the record whose label the image cannot carry is rejected."""
    from emocaliber_rl.world.scenes import fine_loop_of_subtask, posterior_for_subtask

    loop = fine_loop_of_subtask(subtask)
    order = loop_order(loop)
    rng = random.Random(1)
    records, scenes = [], {}
    for i, k in enumerate((16, 12, 10)):
        scene = Scene(loop, order[i], order[i + 1], k)
        path = tmp_path / f"{i}.jpg"
        draw_scene(scene, rng).save(path, quality=90)
        post = posterior_for_subtask(scene, subtask)
        label = max(post, key=post.get)
        records.append(Record.make(f"r{i}", subtask, str(path), label))
        scenes[f"r{i}"] = scene
    # a label the image cannot carry (no mass in its posterior): the judge must reject it
    post = posterior_for_subtask(scenes["r0"], subtask)
    impossible = next(lab for lab, p in post.items() if p == 0.0)
    records.append(Record.make("bad", subtask, records[0].image, impossible))
    synth, verdicts = tmp_path / "synth.jsonl", tmp_path / "verdicts.jsonl"
    with ServerThread(ServerConfig(world=True)) as server:

        async def run():
            async with ChatClient(server.url, "world-teacher") as client:
                await synthesize(records, synth, client, progress=False, log=lambda m: None)
                rows, _ = read_synthesized([str(synth)])  # images resolved against its folder
                return await judge(rows, verdicts, client, progress=False, log=lambda m: None)

        asyncio.run(run())
    rows = {json.loads(x)["id"]: json.loads(x) for x in verdicts.read_text().splitlines()}
    for rid, scene in scenes.items():
        names = (colour_name(loop, scene.primary), colour_name(loop, scene.neighbour))
        want = (f"all 16 cells {names[0]}" if scene.k == 16 else None)
        ctx = rows[rid]["steps"]["context"]
        if want:
            assert ctx == want
        else:
            assert f"{scene.k} {names[0]}" in ctx and f"{16 - scene.k} {names[1]}" in ctx
        assert rows[rid]["passed"], rows[rid]
    assert not rows["bad"]["passed"] and rows["bad"]["verdict"]["logical_inconsistency"]
    kept, judged = write_kept(verdicts, tmp_path / "kept.jsonl")
    assert (kept, judged) == (3, 4)
