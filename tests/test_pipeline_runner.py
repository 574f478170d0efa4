"""The demo's stage runner: wall times, resume, and a failure that names stage, command and log."""

from __future__ import annotations

import sys

import pytest

from emocaliber_rl.pipeline_runner import Stage, StageFailed, load_state, run_pipeline


def _fails_until(marker, calls: list[str], code: int):
    """A stage whose command exits ``code`` until ``marker`` exists; it records its runs in ``calls``."""
    def flaky(ctx):
        calls.append(ctx.name)
        script = ("import sys, pathlib; print('boom: missing input'); "
                  "sys.exit(0 if pathlib.Path(sys.argv[1]).exists() else int(sys.argv[2]))")
        ctx.run([sys.executable, "-c", script, str(marker), str(code)])
    return flaky


def test_resume_skips_finished_stages_and_failure_names_the_stage(tmp_path):
    calls: list[str] = []
    marker = tmp_path / "fixed"

    def ok(ctx):
        calls.append(ctx.name)
        ctx.run([sys.executable, "-c", "print('hello from ok')"])
        ctx.outputs["x"] = "1"

    stages = [Stage("first", "a stage that works", ok),
              Stage("second", "a stage that fails once", _fails_until(marker, calls, 3))]
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


# A command that writes FILE, then waits up to 60 s for OTHER: it exits 0 only when a second command
# wrote OTHER while it was running, so it passes only if two stages really ran at once. Met, it
# stays a second more, so that the two stages' times (rounded to 0.1 s) clearly overlap.
RENDEZVOUS = ("import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch(); t = time.monotonic()\n"
              "while not pathlib.Path(sys.argv[2]).exists():\n"
              "    if time.monotonic() - t > float(sys.argv[3]): print('alone'); sys.exit(4)\n"
              "    time.sleep(0.05)\n"
              "time.sleep(1)")


def _meet(tmp_path, mine: str, other: str, wait: float = 60.0):
    def fn(ctx):
        ctx.run([sys.executable, "-c", RENDEZVOUS, str(tmp_path / mine), str(tmp_path / other), str(wait)])
    return fn


def _diamond(tmp_path, events: list[str], wait: float = 60.0) -> list[Stage]:
    """first -> (left, right at once) -> last; ``events`` gets each stage's start and end."""
    def log(name, inner=None):
        def fn(ctx):
            events.append(f"start {name}")
            if inner is not None:
                inner(ctx)
            events.append(f"end {name}")
        return fn

    return [Stage("first", "runs alone", log("first")),
            Stage("left", "meets right", log("left", _meet(tmp_path, "left", "right", wait))),
            Stage("right", "meets left", log("right", _meet(tmp_path, "right", "left", wait)), after=("first",)),
            Stage("last", "reads both", log("last"), after=("left", "right"))]


def test_ready_stages_run_at_once_and_wait_for_what_they_read(tmp_path):
    events: list[str] = []
    lines: list[str] = []
    state = run_pipeline(_diamond(tmp_path, events), tmp_path / "out", echo=lines.append, parallel=2)
    assert events[0:2] == ["start first", "end first"]
    assert set(events[2:4]) == {"start left", "start right"}  # both began before either ended
    assert set(events[4:6]) == {"end left", "end right"}
    assert events[6:] == ["start last", "end last"]
    stages = state["stages"]
    # the pipeline's wall time counts the overlap once
    assert state["wall_s"] < stages["first"]["seconds"] + stages["left"]["seconds"] + stages["right"]["seconds"] \
        + stages["last"]["seconds"]
    assert load_state(tmp_path / "out")["wall_s"] == state["wall_s"]


def test_one_at_a_time_when_parallel_is_one(tmp_path):
    """The same pipeline with parallel=1: `left` waits for a `right` that cannot start, so it fails
    (the rendezvous above is what the test before this one relies on)."""
    with pytest.raises(StageFailed, match=r"stage 'left' failed \(exit code 4\)"):
        run_pipeline(_diamond(tmp_path, [], wait=1.0), tmp_path / "out", echo=lambda m: None, parallel=1)
    state = load_state(tmp_path / "out")
    assert set(state["stages"]) == {"first"}  # `right` and `last` never started
    assert state["wall_s"] > 0


def test_a_failure_lets_the_running_stage_finish_and_starts_nothing_after_it(tmp_path):
    calls: list[str] = []
    marker = tmp_path / "fixed"

    def slow_ok(ctx):
        calls.append(ctx.name)
        ctx.run([sys.executable, "-c", "import time; time.sleep(1.5); print('slow done')"])

    def after_both(ctx):
        calls.append(ctx.name)

    stages = [Stage("slow", "takes a while", slow_ok), Stage("flaky", "fails once", _fails_until(marker, calls, 5), after=()),
              Stage("then", "reads both", after_both, after=("slow", "flaky"))]
    with pytest.raises(StageFailed, match=r"stage 'flaky' failed \(exit code 5\)"):
        run_pipeline(stages, tmp_path / "out", echo=lambda m: None, parallel=2)
    state = load_state(tmp_path / "out")
    assert sorted(calls) == ["flaky", "slow"]
    assert state["stages"]["slow"]["done"] and set(state["stages"]) == {"slow"}  # kept for a resume
    assert "slow done" in (tmp_path / "out" / "logs" / "slow.log").read_text()

    marker.touch()
    lines: list[str] = []
    state = run_pipeline(stages, tmp_path / "out", resume=True, echo=lines.append, parallel=2)
    assert sorted(calls) == ["flaky", "flaky", "slow", "then"]
    assert set(state["stages"]) == {"slow", "flaky", "then"}
    assert any("slow: done earlier" in line for line in lines)


@pytest.mark.parametrize(("after", "message"), [
    (("nowhere",), "stage 'b' comes after 'nowhere', which is not a stage"),
    (("c",), "stage 'b' comes after 'c', which is listed after it"),
])
def test_a_dependency_that_cannot_run_first_is_refused_before_anything_runs(tmp_path, after, message):
    ran: list[str] = []
    stages = [Stage("a", "", lambda ctx: ran.append("a")), Stage("b", "", lambda ctx: ran.append("b"), after=after),
              Stage("c", "", lambda ctx: ran.append("c"))]
    with pytest.raises(ValueError, match=message):
        run_pipeline(stages, tmp_path / "out", echo=lambda m: None)
    assert ran == []


def test_demo_stages_read_only_what_finished_before_them(tmp_path):
    """The demo's graph: the evaluations of each checkpoint come after the stage that writes it,
    the report after all four, and stage 2 and 3 after the stage they start from."""
    from emocaliber_rl.demo import Demo
    from emocaliber_rl.pipeline_runner import dependencies

    deps = dependencies(Demo(tmp_path).stages())
    assert deps["model"] == () and deps["data"] == () and deps["cot"] == ("data",)
    assert set(deps["stage1"]) == {"model", "cot"}
    assert deps["eval-scaffold"] == ("stage1",) and deps["stage2"] == ("stage1",)
    assert deps["eval-cold-start"] == ("stage2",) and deps["stage3"] == ("stage2",)
    assert deps["eval-final"] == ("stage3",) and deps["eval-oracle"] == ("cot",)
    assert set(deps["report"]) == {"eval-oracle", "eval-scaffold", "eval-cold-start", "eval-final"}
    assert deps["index"] == ("report",)


INTERRUPTED = '''
import sys
from pathlib import Path
from emocaliber_rl.pipeline_runner import Stage, run_pipeline

tmp = Path(sys.argv[1])
code = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)"

def waits(name):
    def fn(ctx):
        ctx.run([sys.executable, "-c", code, str(tmp / f"{name}.pid")])
    return fn

run_pipeline([Stage("a", "", waits("a")), Stage("b", "", waits("b"), after=())], tmp / "out",
             echo=lambda m: None, parallel=2)
'''


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as exited)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_ctrl_c_stops_the_commands_of_the_stages_running_at_once(tmp_path):
    """SIGINT to the pipeline's process alone (as `kill -INT`, not a terminal's whole process
    group): its two running stages' commands are terminated, not left sleeping behind it."""
    import os
    import signal
    import time

    from tests.test_cli_errors import _popen_as_foreground_job

    proc = _popen_as_foreground_job([sys.executable, "-c", INTERRUPTED, str(tmp_path)], dict(os.environ))
    pidfiles = [tmp_path / "a.pid", tmp_path / "b.pid"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not all(
            p.exists() and p.read_text() for p in pidfiles):
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    pids = [int(p.read_text()) for p in pidfiles]
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1].decode()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, err[-2000:]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(_gone(pid) for pid in pids):
        time.sleep(0.1)
    left = [pid for pid in pids if not _gone(pid)]
    for pid in left:  # do not leave them behind the test either
        os.kill(pid, signal.SIGKILL)
    assert not left, f"stage commands still running after the pipeline's Ctrl-C: {left}"


def test_a_command_run_nice_gets_the_lower_priority_and_the_log_shows_it(tmp_path):
    import os

    def show(ctx):
        ctx.run([sys.executable, "-c", "import os; print('niceness', os.nice(0))"], nice=5)

    run_pipeline([Stage("show", "prints its niceness", show)], tmp_path / "out", echo=lambda m: None)
    log = (tmp_path / "out" / "logs" / "show.log").read_text()
    assert f"niceness {min(os.nice(0) + 5, 19)}" in log
    assert "$ nice -n 5 " in log
