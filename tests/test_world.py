"""The known-answer world: its posterior is the one the images are drawn with, and the oracle that
reads it is calibrated (expected numbers from the generative model's definition, by hand)."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from emocaliber_rl.world import CELLS, LEVELS, Scene, posterior_for_subtask, scene_given_label, scene_prior
from emocaliber_rl.world.oracle import NoSceneError, oracle_rows, read_scene_file, sha256_of
from emocaliber_rl.world.render import SIZE, draw_scene, read_cells
from emocaliber_rl.world.scenes import bayes_answer, loop_order, neighbours, sample_label_and_scene

LOOPS = ("mikels8", "webemo25", "unbiased6")


@pytest.mark.parametrize("loop", LOOPS)
def test_prior_is_a_distribution_with_uniform_label_marginal(loop: str) -> None:
    prior = scene_prior(loop)
    assert sum(p for _, p in prior) == pytest.approx(1.0)
    k_labels = len(loop_order(loop))
    # each label: primary of 1/K of the scenes (mean w over LEVELS) plus neighbour of two primaries
    # whose neighbour-side mass is (1 - w)/2 each: 1/K * (mean w + mean(1 - w)) = 1/K
    marginal = Counter()
    for scene, p in prior:
        for label, q in scene.posterior.items():
            marginal[label] += p * q
    assert set(marginal) == set(loop_order(loop))
    for label in loop_order(loop):
        assert marginal[label] == pytest.approx(1.0 / k_labels)


def test_posterior_of_a_scene() -> None:
    s = Scene("mikels8", "amusement", "excitement", 12)
    assert s.posterior == {"amusement": 0.75, "excitement": 0.25}
    assert Scene("mikels8", "anger", "fear", 16).posterior == {"anger": 1.0}
    # Mikels-8 loop: amusement's neighbours are excitement (end of the loop) and anger
    assert set(neighbours("mikels8", "amusement")) == {"excitement", "anger"}


def test_label_first_sampling_keeps_the_posterior() -> None:
    """Drawing the label first (balanced, as the raw layouts are) and the scene given it must give
    images whose label frequencies equal the posterior: P(label = primary | k) = k/16."""
    rng = random.Random(0)
    labels = loop_order("mikels8")
    hits: dict[int, list[int]] = {k: [] for k in LEVELS}
    for i in range(24000):
        label = labels[i % len(labels)]
        scene = scene_given_label("mikels8", label, rng)
        assert label in scene.posterior
        hits[scene.k].append(int(label == scene.primary))
    for k, xs in hits.items():
        w = k / CELLS
        se = max(np.sqrt(w * (1 - w) / len(xs)), 1e-9)
        assert abs(np.mean(xs) - w) <= 4 * se + 1e-12, (k, np.mean(xs), w)
    # every ambiguity level is present in comparable numbers (P(k) is uniform under the prior)
    counts = [len(hits[k]) for k in LEVELS]
    assert min(counts) > 0.8 * 24000 / len(LEVELS)


@pytest.mark.parametrize("subtask", ["FI-8", "FI-2", "WebEmo-25", "WebEmo-7", "WebEmo-2", "UnbiasedEmo-6"])
def test_oracle_is_calibrated_on_a_large_sample(subtask: str) -> None:
    """The oracle answers argmax with confidence max of the (marginal) posterior: its ECE over
    10 equal bins, computed here by hand, is near 0 and its accuracy equals its mean confidence."""
    from emocaliber_rl.taxonomy import get_subtask
    from emocaliber_rl.world.scenes import _coarse

    loop = {"FI": "mikels8", "WebEmo": "webemo25", "UnbiasedEmo": "unbiased6"}[get_subtask(subtask).source]
    to_coarse = _coarse(subtask)
    rng = random.Random(1)
    conf, correct = [], []
    for _ in range(20000):
        fine, scene = sample_label_and_scene(loop, rng)
        answer, c = bayes_answer(posterior_for_subtask(scene, subtask))
        conf.append(c)
        correct.append(float(answer == to_coarse(fine)))
    conf, correct = np.array(conf), np.array(correct)
    bins = np.minimum((conf * 10).astype(int), 9)
    ece = sum(abs(conf[bins == b].mean() - correct[bins == b].mean()) * (bins == b).mean()
              for b in range(10) if (bins == b).any())
    assert ece < 0.02, ece
    assert correct.mean() == pytest.approx(conf.mean(), abs=0.015)
    # ambiguity varies: some certain, some near a coin flip
    assert conf.max() == 1.0 and conf.min() <= 0.625


def test_coarse_posteriors_are_marginals() -> None:
    s = Scene("mikels8", "amusement", "anger", 12)  # a positive and a negative label
    assert posterior_for_subtask(s, "FI-2") == {"positive": 0.75, "negative": 0.25}
    s = Scene("webemo25", "contentment", "optimism", 10)  # both children of joy
    post = posterior_for_subtask(s, "WebEmo-7")
    assert post["joy"] == pytest.approx(1.0) and sum(post.values()) == pytest.approx(1.0)
    assert posterior_for_subtask(s, "WebEmo-2")["positive"] == pytest.approx(1.0)
    post = posterior_for_subtask(s, "WebEmo-25")
    assert post["contentment"] == 0.625 and post["optimism"] == 0.375 and post["rage"] == 0.0


@pytest.mark.parametrize("loop", LOOPS)
def test_images_carry_their_scene(loop: str) -> None:
    """Reading each cell's hue back gives the recorded scene's cell counts, for every label of the
    loop (WebEmo-25's hues are 0.04 apart)."""
    rng = random.Random(2)
    for label in loop_order(loop):
        scene = scene_given_label(loop, label, rng)
        img = draw_scene(scene, rng)
        assert img.size == (SIZE, SIZE)
        want = {scene.primary: scene.k} | ({scene.neighbour: CELLS - scene.k} if scene.k < CELLS else {})
        assert read_cells(img, loop) == want


def test_oracle_rows_match_images_by_hash(tmp_path: Path) -> None:
    rng = random.Random(3)
    scenes = [Scene("mikels8", "awe", "contentment", 10), Scene("mikels8", "fear", "disgust", 16)]
    rows, lines = [], []
    for i, scene in enumerate(scenes):
        path = tmp_path / f"{i}.png"
        draw_scene(scene, rng).save(path)
        lines.append(json.dumps({"sha256": sha256_of(path), "path": str(path), "scene": scene.to_json()}))
        rows.append({"id": i, "subtask": "FI-8", "group": "ID VER", "label": scene.primary, "image": str(path)})
    (tmp_path / "scenes.jsonl").write_text("\n".join(lines) + "\n")
    got = oracle_rows(rows, read_scene_file(tmp_path / "scenes.jsonl"))
    assert [(r["pred"], r["conf_verb"]) for r in got] == [("awe", 0.625), ("fear", 1.0)]
    assert got[0]["response"] == "<answer>awe</answer><confidence>0.62</confidence>"
    (tmp_path / "other.png").write_bytes(b"not one of the world's images")
    with pytest.raises(NoSceneError, match="image .*other.png .*not in the world.s scene file") as err:
        oracle_rows([{"id": "x", "subtask": "FI-8", "label": "awe", "image": str(tmp_path / "other.png")}],
                    read_scene_file(tmp_path / "scenes.jsonl"))
    assert err.value.row_id == "x"


def test_world_layouts_build_into_vecbench_with_known_posteriors(tmp_path: Path) -> None:
    """All six raw layouts of the world go through `bench build` as real data does: nothing is
    reported as a near-duplicate, every subtask is present, and each manifest row's image is a
    world image whose posterior over that subtask gives the row's label positive probability."""
    import subprocess
    import sys

    from emocaliber_rl.world.layouts import write_layout

    scene_file = tmp_path / "scenes.jsonl"
    flags = []
    for dataset, n in {"FI": 6, "EmoSet": 4, "WebEmo": 2, "Abstract": 2, "ArtPhoto": 2, "UnbiasedEmo": 3}.items():
        write_layout(dataset, tmp_path / "raw" / dataset, n, scene_file, seed=0)
        flags += [f"--{dataset.lower()}", str(tmp_path / "raw" / dataset)]
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "-m", "emocaliber_rl.cli", "bench", "build", *flags, "-o", str(out),
                           "--test-size", "2", "--no-progress"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # no image reported (no near-duplicate among 180 world images, nothing rejected)
    assert not (out / "report.jsonl").read_text().strip()
    assert "Near-duplicates left out before splitting: 0" in (out / "summary.md").read_text()
    scenes = read_scene_file(scene_file)
    rows = [json.loads(x) for p in ("train.jsonl", "test.jsonl") for x in (out / p).read_text().splitlines() if x]
    assert {r["subtask"] for r in rows} == {"FI-8", "FI-2", "EmoSet-8", "WebEmo-25", "WebEmo-7", "WebEmo-2",
                                             "Abstract-8", "Artphoto-8", "UnbiasedEmo-6"}
    for r in rows:
        post = posterior_for_subtask(scenes[sha256_of(r["image"])], r["subtask"])
        assert post[r["label"]] > 0, (r["subtask"], r["label"], post)


def test_world_oracle_cli_scores_like_its_posterior(tmp_path: Path) -> None:
    """`emocaliber world oracle` writes eval-run rows that `eval score` reads; on two FI-2 rows
    whose scenes give P(positive) = 0.75 and 1.0 and labels positive / negative, the oracle says
    positive twice with confidence 0.75 and 1.0: accuracy 1/2, Brier ((0.25)^2 + 1^2) / 2."""
    import subprocess
    import sys

    rng = random.Random(4)
    scenes = [Scene("mikels8", "amusement", "anger", 12), Scene("mikels8", "awe", "contentment", 16)]
    lines, manifest = [], []
    for i, (scene, label) in enumerate(zip(scenes, ("positive", "negative"))):
        path = tmp_path / f"{i}.jpg"
        draw_scene(scene, rng).save(path, format="JPEG", quality=95)
        lines.append(json.dumps({"sha256": sha256_of(path), "path": str(path), "scene": scene.to_json()}))
        manifest.append(json.dumps({"id": str(i), "subtask": "FI-2", "group": "ID VSA", "image": str(path), "label": label,
                                    "candidates": ["positive", "negative"]}))
    (tmp_path / "scenes.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "m.jsonl").write_text("\n".join(manifest) + "\n")
    run = [sys.executable, "-m", "emocaliber_rl.cli"]
    subprocess.run([*run, "world", "oracle", "--scenes", str(tmp_path / "scenes.jsonl"), "--manifest",
                    str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "pred.jsonl")], check=True)
    subprocess.run([*run, "eval", "score", str(tmp_path / "pred.jsonl"), "--json", str(tmp_path / "s.json")],
                   check=True, capture_output=True)
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["tasks"]["FI-2"]["acc"] == pytest.approx(0.5)
    verb = scores["groups"]["ID VSA"]["verb"]
    assert verb["brier"] == pytest.approx((0.25**2 + 1.0**2) / 2)
    assert verb["mean_conf"] == pytest.approx(0.875)
