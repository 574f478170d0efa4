"""The suite's two workers keep each shared run on one worker (tests/conftest.py SHARED_RUNS).

A session of its own (pytest-xdist, tests/pytest.ini's options) over a generated module whose
fixtures of those names only record the worker: if grouping breaks (pytest 9.2's structured node
ids ignore the "@group" xdist writes, pytest-xdist#1386), the shared runs would silently run once
per worker, and this test says so."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT, SHARED_RUNS

MODULE = '''
import time
import pytest

@pytest.fixture(scope="session")
def stage3_colour_run():
    return None

@pytest.fixture(scope="session")
def stage1_train_run():
    return None

@pytest.fixture(scope="session")
def taught_scaffold_dir():
    return None

@pytest.fixture
def through_another(stage1_train_run):  # a shared run asked for through another fixture
    return stage1_train_run

@pytest.mark.slow
@pytest.mark.parametrize("i", range(3))
def test_stage3(stage3_colour_run, i):
    time.sleep(0.2)

@pytest.mark.slow
@pytest.mark.parametrize("i", range(3))
def test_stage1(through_another, i):
    time.sleep(0.2)

@pytest.mark.parametrize("i", range(6))
def test_free(i):
    time.sleep(0.2)

@pytest.mark.slow
@pytest.mark.ray_cluster
@pytest.mark.parametrize("i", range(1))  # an index like the others: the PASSED-line regex reads it
def test_own_cluster(i):  # a Ray cluster of its own: never beside the stage-3 job
    time.sleep(0.2)
'''


def test_each_shared_run_on_one_worker_and_first(tmp_path: Path) -> None:
    assert SHARED_RUNS[:2] == ("stage3_colour_run", "stage1_train_run")
    shutil.copy(REPO_ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    shutil.copy(REPO_ROOT / "tests" / "pytest.ini", tmp_path / "pytest.ini")
    (tmp_path / "test_groups.py").write_text(MODULE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "EMOCALIBER_EXPECT"))}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-v", "test_groups.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ran = re.findall(r"^\[(gw\d)\] .*PASSED test_groups\.py::(test_\w+)\[(\d)\]", proc.stdout, re.MULTILINE)
    assert len(ran) == 13, proc.stdout[-3000:]
    workers = {name: {w for w, n, _ in ran if n == name}
               for name in ("test_stage3", "test_stage1", "test_free", "test_own_cluster")}
    assert len(workers["test_stage3"]) == 1 and len(workers["test_stage1"]) == 1, workers
    # the two groups start at once, one on each worker (neither waits behind the other)
    assert workers["test_stage3"] != workers["test_stage1"], workers
    # a test marked ray_cluster runs on the stage-3 run's worker, not beside it
    assert workers["test_own_cluster"] == workers["test_stage3"], workers
    # the free tests are spread: the worker holding a group does not take them all
    assert len(workers["test_free"]) == 2, workers


UNMARKED = '''
import pytest

@pytest.fixture(scope="session")
def stage1_train_run():
    return None

@pytest.fixture
def through_another(stage1_train_run):
    return stage1_train_run

@pytest.fixture
def vllm():
    return None

def test_reads_a_shared_run(through_another):
    pass

def test_asks_for_vllm(vllm):
    pass

@pytest.mark.ray_cluster
def test_own_cluster():
    pass

@pytest.mark.slow
def test_marked(stage1_train_run, vllm):
    pass

def test_free():
    pass
'''


def test_a_test_that_starts_vllm_ray_or_a_recipe_must_be_marked_slow(tmp_path: Path) -> None:
    """Collection stops, naming every test that asks for a fixture of NEED_SLOW (directly or
    through another fixture) or carries ray_cluster without `slow`: the inner loop (-m "not
    slow") would otherwise start vLLM, Ray or torchrun."""
    shutil.copy(REPO_ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    shutil.copy(REPO_ROOT / "tests" / "pytest.ini", tmp_path / "pytest.ini")
    (tmp_path / "test_unmarked.py").write_text(UNMARKED)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "EMOCALIBER_EXPECT"))}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", "test_unmarked.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out[-3000:]  # pytest's exit code for a usage error
    named = re.search(r"but are not marked slow: (.*)$", out, re.MULTILINE)
    assert named, out[-3000:]
    assert named.group(1).split(", ") == ["test_unmarked.py::test_reads_a_shared_run",
                                          "test_unmarked.py::test_asks_for_vllm", "test_unmarked.py::test_own_cluster"]


GROUPS_OF = '''
import json, sys
import pytest

class Grab:
    def pytest_collection_finish(self, session):
        self.groups = {i.nodeid: [m.args[0] for m in i.iter_markers("xdist_group")] for i in session.items}

grab = Grab()
rc = pytest.main(["--collect-only", "-q", "-n", "0", *sys.argv[1:]], plugins=[grab])
print("GROUPS " + json.dumps(grab.groups))
sys.exit(rc)
'''


def test_tests_on_a_ray_cluster_run_in_the_stage3_group() -> None:
    """Every test that reads a Ray cluster (the stage-3 run's, through its fixture) is in the
    stage-3 run's group, so no cluster runs beside the stage-3 job (~18 GiB) on the other worker (a
    test marked ray_cluster, with a cluster of its own, joins it too:
    test_each_shared_run_on_one_worker_and_first); an unmarked test stays free."""
    files = ["test_ray_submit.py", "test_multinode.py", "test_pipeline_runner.py"]
    proc = subprocess.run([sys.executable, "-c", GROUPS_OF, *files], cwd=REPO_ROOT / "tests", capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    groups = next(json.loads(ln[7:]) for ln in proc.stdout.splitlines() if ln.startswith("GROUPS "))
    stage3 = [SHARED_RUNS[0]]
    assert groups["test_ray_submit.py::test_submit_without_the_token_is_refused"] == stage3
    assert groups["test_ray_submit.py::test_submit_check_compares_every_node"] == stage3
    assert groups["test_ray_submit.py::test_submit_check_fails_on_a_path_no_node_has"] == stage3
    assert groups["test_multinode.py::test_stage3_on_a_two_node_ray_cluster"] == stage3
    assert groups["test_multinode.py::test_stage1_torchrun_across_two_node_ranks"] == ["stage1_train_run"]
    assert all(not g for node, g in groups.items() if node.startswith("test_pipeline_runner.py"))


def test_torch_runs_one_thread_here_and_in_a_child():
    """tests/conftest.py sets OMP_NUM_THREADS=1 before torch is imported, for this worker and
    everything it starts (subprocesses, Ray clusters, vLLM servers): torch's default, a thread per
    core, is what made the suite's processes spin against each other."""
    import torch

    assert torch.get_num_threads() == 1
    child = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           capture_output=True, text=True, timeout=120, check=True)
    assert child.stdout.strip() == "1"
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
