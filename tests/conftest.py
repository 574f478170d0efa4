"""Shared fixtures: a tiny random Qwen2.5-VL built offline once per session, and images."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest

# Never let a test reach a hub or a tracking service.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# One torch thread in every process the suite starts (this worker, its subprocesses, the Ray
# clusters and their vLLM servers inherit it): two xdist workers and the stage-3 job's processes
# already keep both cores busy, and an OpenMP team of two in each process spins at its barriers
# while the other core runs someone else: two training processes side by side finish in 0.57 of
# the time with one thread each (benchmarks/bench_contended_threads.py, docs/measurements.md),
# and the suite took 1,794 s instead of 2,243. vLLM's CPU worker would otherwise pin a team of every core
# (VLLM_CPU_OMP_THREADS_BIND=auto); `nobind` leaves it OMP_NUM_THREADS.
for _var, _value in (("OMP_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"), ("VLLM_CPU_OMP_THREADS_BIND", "nobind")):
    os.environ.setdefault(_var, _value)

REPO_ROOT = Path(__file__).resolve().parents[1]


# The session fixtures that teach a model or run a recipe, the longest first. pytest.ini runs the
# suite on two pytest-xdist workers with --dist loadgroup: every test that uses one of these is put
# in that fixture's group, so the fixture runs once, on one worker, and those tests are collected
# first, so the longest run starts at once while the other worker takes the rest. One process runs
# at most ~0.85 of 2 cores (a serial suite: 1,719 s of CPU in 2,024 s), mostly waiting on Ray,
# vLLM and subprocess start-ups, which the other worker now fills.
SHARED_RUNS = ("stage3_colour_run", "stage1_train_run", "taught_scaffold_dir")
# Fixtures that start vLLM, a Ray cluster, torchrun or veRL's trainer: a test that asks for one,
# directly or through another fixture, must be marked `slow` (as must one marked `ray_cluster`), so
# the inner loop, `-m "not slow"`, starts none of them (docs/contributing.md); collection stops
# naming any test that is not.
NEED_SLOW = ("stage3_colour_run", "stage1_train_run", "vllm")


def _shared_run(item: pytest.Item) -> int:
    # a test that starts a Ray cluster of its own joins the stage-3 run's group: the stage-3 job
    # alone holds up to ~18 of the 23 GiB here (two vLLM replicas, two FSDP ranks, veRL's actors)
    # and a second cluster ~5 more, past the 95% at which Ray's memory monitor kills workers; in CI
    # at 477789f the two overlapped and the job hung in its step-2 weight sync until its timeout
    if item.get_closest_marker("ray_cluster"):
        return 0
    return next((i for i, name in enumerate(SHARED_RUNS) if name in item.fixturenames), len(SHARED_RUNS))


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unmarked = [item.nodeid for item in items if not item.get_closest_marker("slow")
                and (item.get_closest_marker("ray_cluster") or set(NEED_SLOW) & set(item.fixturenames))]
    if unmarked:
        raise pytest.UsageError("these tests start vLLM, Ray, torchrun or veRL's trainer (a fixture of "
                                f"{', '.join(NEED_SLOW)} or the ray_cluster marker) but are not marked slow: "
                                + ", ".join(unmarked))
    for item in items:
        if (run := _shared_run(item)) < len(SHARED_RUNS):
            item.add_marker(pytest.mark.xdist_group(SHARED_RUNS[run]))
    items.sort(key=_shared_run)  # stable: the order inside each group and of the rest is kept


def pytest_sessionstart(session: pytest.Session) -> None:
    """recipes/check_gpu_pins.sh runs tests under another transformers than the venv's: refuse to
    run them (and report passes) under any other than the one it asked for."""
    want = os.environ.get("EMOCALIBER_EXPECT_TRANSFORMERS")
    if want:
        import transformers

        if transformers.__version__ != want:
            pytest.exit(f"EMOCALIBER_EXPECT_TRANSFORMERS={want}, but transformers {transformers.__version__} "
                        f"was imported from {transformers.__file__}", returncode=3)


def setup_kwargs() -> dict:
    """The keyword arguments setup.py passes to ``setuptools.setup`` (run with it captured, so
    requirement lists built with Python, such as ``*COT``, arrive as setuptools sees them)."""
    import runpy

    import setuptools

    captured: dict = {}
    real = setuptools.setup
    setuptools.setup = lambda **kw: captured.update(kw)
    try:
        runpy.run_path(str(REPO_ROOT / "setup.py"), run_name="setup")
    finally:
        setuptools.setup = real
    return captured

# One structured chain of thought (the five steps of the response format) for tests that need any.
STEPS = {
    "element": "a red balloon drifting over a grey street",
    "human": "a child reaches up with both hands",
    "context": "wet pavement and closed shops at dusk",
    "interaction": "the bright balloon stands out against the dull street",
    "analysis": "the contrast suggests a light, playful feeling",
}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2.5-VL in HF format (float32), built with seed 0."""
    from emocaliber_rl.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen25vl"), seed=0)


@pytest.fixture(scope="session")
def taught_scaffold_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model taught to answer in the response format (tests/inference_helpers.py's
    teach_scaffold), shared by the inference-engine and ``eval run`` tests."""
    from .inference_helpers import teach_scaffold

    return teach_scaffold(tiny_model_dir, tmp_path_factory.mktemp("taught-scaffold"))


@pytest.fixture(scope="session")
def stage3_colour_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict:
    """The one stage-3 recipe run (veRL, a two-node Ray cluster, vLLM-CPU) that
    tests/test_stage3_grpo.py, tests/test_stage3_rollout_parity.py and tests/test_multinode.py
    read (tests/stage3_shared.py says what it runs)."""
    from .stage3_shared import run

    return run(tmp_path_factory.mktemp("stage3"), tiny_model_dir)


@pytest.fixture(scope="session")
def stage1_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 16 stage-1 rows the shared stage-1 runs train on (tests/stage1_shared.py)."""
    from .stage1_shared import parquet

    return parquet(tmp_path_factory.mktemp("stage1-data"))


@pytest.fixture(scope="session")
def stage1_train_run(tiny_model_dir: Path, stage1_parquet: Path, tmp_path_factory: pytest.TempPathFactory):
    """``run(nproc, loss_rows="1") -> (checkpoint dir, {"loss": [...], "grad_norm": [...]})``: one
    stage-1 recipe run per (processes, ``EMOCALIBER_LOSS_ROWS``) per session, shared by
    tests/test_stage1_sft.py and tests/test_multinode.py (tests/stage1_shared.py)."""
    from .stage1_shared import train

    runs: dict[tuple[int, str], tuple[Path, dict[str, list[float]]]] = {}

    def run(nproc: int, loss_rows: str = "1") -> tuple[Path, dict[str, list[float]]]:
        if (nproc, loss_rows) not in runs:
            out = tmp_path_factory.mktemp(f"stage1-n{nproc}-rows{loss_rows}") / "ckpt"
            runs[nproc, loss_rows] = (out, train(nproc, tiny_model_dir, stage1_parquet, out, loss_rows))
        return runs[nproc, loss_rows]
    return run


def draw_image(seed: int, size: tuple[int, int] | None = None):
    """A small RGB picture with a few coloured shapes, different for every seed."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    w, h = size or (rng.randint(56, 140), rng.randint(56, 140))
    img = Image.new("RGB", (w, h), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x0, y0 = rng.randrange(w // 2), rng.randrange(h // 2)
        draw.ellipse((x0, y0, x0 + w // 3, y0 + h // 3), fill=tuple(rng.randrange(256) for _ in range(3)))
    return img


def fi_root_with_a_broken_image(tmp_path: Path) -> Path:
    """An FI layout (amusement, awe; 3 images each) whose awe folder also holds a file that is no image."""
    root = tmp_path / "FI"
    for j, emotion in enumerate(("amusement", "awe")):
        (root / emotion).mkdir(parents=True)
        for k in range(3):
            draw_image(10 * j + k).save(root / emotion / f"{emotion}_{k}.jpg")
    (root / "awe" / "broken.jpg").write_bytes(b"not an image")
    return root


def png_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def make_image():
    return draw_image


def changed_tensors(before_dir: Path, after_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """Compare two HF checkpoints of the tiny model tensor by tensor.

    Returns ``(vision_changed, language_changed, language_all)`` after checking both checkpoints
    hold the same tensors and both parts exist.
    """
    import torch
    from safetensors.torch import load_file

    before = load_file(Path(before_dir) / "model.safetensors")
    after = load_file(Path(after_dir) / "model.safetensors")
    assert before.keys() == after.keys()
    vision = [k for k in before if ".visual." in f".{k}"]
    language = [k for k in before if k not in vision]
    assert vision and language
    vision_changed = [k for k in vision if not torch.equal(before[k], after[k])]
    language_changed = [k for k in language if not torch.equal(before[k], after[k])]
    return vision_changed, language_changed, language
