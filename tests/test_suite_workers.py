"""The suite's two workers keep each shared run on one worker (tests/conftest.py SHARED_RUNS).

A session of its own (pytest-xdist, tests/pytest.ini's options) over a generated module whose
fixtures of those names only record the worker: if grouping breaks (pytest 9.2's structured node
ids ignore the "@group" xdist writes, pytest-xdist#1386), the shared runs would silently run once
per worker, and this test says so."""

from __future__ import annotations

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

@pytest.mark.parametrize("i", range(3))
def test_stage3(stage3_colour_run, i):
    time.sleep(0.2)

@pytest.mark.parametrize("i", range(3))
def test_stage1(through_another, i):
    time.sleep(0.2)

@pytest.mark.parametrize("i", range(6))
def test_free(i):
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
    assert len(ran) == 12, proc.stdout[-3000:]
    workers = {name: {w for w, n, _ in ran if n == name} for name in ("test_stage3", "test_stage1", "test_free")}
    assert len(workers["test_stage3"]) == 1 and len(workers["test_stage1"]) == 1, workers
    # the two groups start at once, one on each worker (neither waits behind the other)
    assert workers["test_stage3"] != workers["test_stage1"], workers
    # the free tests are spread: the worker holding a group does not take them all
    assert len(workers["test_free"]) == 2, workers
