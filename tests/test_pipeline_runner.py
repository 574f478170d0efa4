"""The demo's stage runner: wall times, resume, and a failure that names stage, command and log."""

from __future__ import annotations

import sys

import pytest

from emocaliber_rl.pipeline_runner import Stage, StageFailed, load_state, run_pipeline


def test_resume_skips_finished_stages_and_failure_names_the_stage(tmp_path):
    calls: list[str] = []
    marker = tmp_path / "fixed"

    def ok(ctx):
        calls.append(ctx.name)
        ctx.run([sys.executable, "-c", "print('hello from ok')"])
        ctx.outputs["x"] = "1"

    def flaky(ctx):
        calls.append(ctx.name)
        code = "import sys, pathlib; print('boom: missing input'); sys.exit(0 if pathlib.Path(sys.argv[1]).exists() else 3)"
        ctx.run([sys.executable, "-c", code, str(marker)])

    stages = [Stage("first", "a stage that works", ok), Stage("second", "a stage that fails once", flaky)]
    lines: list[str] = []
    with pytest.raises(StageFailed) as err:
        run_pipeline(stages, tmp_path / "out", echo=lines.append)
    message = str(err.value)
    assert "stage 'second' failed (exit code 3)" in message
    assert "boom: missing input" in message  # the log tail is in the error
    assert str(tmp_path / "out" / "logs" / "second.log") in message
    assert "hello from ok" in (tmp_path / "out" / "logs" / "first.log").read_text()
    state = load_state(tmp_path / "out")
    assert state["stages"]["first"]["done"] and "second" not in state["stages"]

    marker.touch()
    state = run_pipeline(stages, tmp_path / "out", resume=True, echo=lines.append)
    assert calls == ["first", "second", "second"]  # the finished stage was not run again
    assert state["stages"]["second"]["done"] and state["stages"]["first"]["outputs"] == {"x": "1"}
    assert any("first: done earlier" in line and "skipped" in line for line in lines)
    assert all(s["seconds"] >= 0 for s in state["stages"].values())


def test_pipeline_env_reaches_every_command_and_a_commands_own_env_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOCALIBER_TEST_OUTER", "kept")
    code = "import os; print(*(os.environ.get(k) for k in ('EMOCALIBER_TEST_OUTER', 'A', 'B')))"

    def show(ctx):
        ctx.run([sys.executable, "-c", code])
        ctx.run([sys.executable, "-c", code], env={"B": "own"})

    run_pipeline([Stage("show", "prints its environment", show)], tmp_path / "out", echo=lambda m: None,
                 env={"A": "pipeline", "B": "pipeline"})
    printed = [ln for ln in (tmp_path / "out" / "logs" / "show.log").read_text().splitlines() if ln.startswith("kept")]
    assert printed == ["kept pipeline pipeline", "kept pipeline own"]


def test_demo_stages_keep_big_blocks_unless_told_or_already_set():
    from emocaliber_rl.cli.demo import stage_env

    assert stage_env(False, {}) == {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "1099511627776"}
    assert stage_env(False, {"MALLOC_MMAP_MAX_": "65536"}) == {"MALLOC_TRIM_THRESHOLD_": "1099511627776"}
    assert stage_env(True, {}) == {}
