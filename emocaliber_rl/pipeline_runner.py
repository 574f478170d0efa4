"""Run a pipeline of named stages with logs, wall times and resume (used by `emocaliber demo`).

Each stage is a callable that runs commands through :meth:`StageContext.run` (their output goes
to ``OUT/logs/<stage>.log``). A stage starts once the stages it comes ``after`` have finished (by
default the stage listed before it, so a plain list runs in order); with ``parallel=N`` up to N
stages whose inputs are ready run at once, in list order, each in a thread of its own that waits
on its commands (the calling thread alone starts stages, echoes and writes the state). Finished
stages are recorded in ``OUT/pipeline_state.json`` with their wall time and outputs, and the
pipeline's own wall time (``wall_s``, summed over resumed runs); with ``resume=True`` they are
skipped. A failing stage stops the pipeline: no stage starts after it, the stages already running
finish (and are recorded, so a resume keeps them), and the error names the stage, the command and
the last lines of its log.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "pipeline_state.json"


class StageFailed(RuntimeError):
    """A stage's command failed; the message names the stage, the command and the log tail."""


@dataclass
class StageContext:
    name: str
    out: Path
    log_path: Path
    outputs: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # added to every command's environment
    # the command running now, so that an interrupted pipeline can stop the stages still running
    proc: subprocess.Popen | None = field(default=None, repr=False)
    # the pipeline's wall time before this run (resumed runs) and when this run started
    wall_before: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def pipeline_wall(self) -> float:
        """Seconds the pipeline has run so far, earlier runs of a resumed one included."""
        return self.wall_before + time.perf_counter() - self.started

    def run(self, cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float | None = None, accept: tuple[int, ...] = (0,), nice: int = 0) -> None:
        """Run ``cmd``, appending its output to the stage log; raise :class:`StageFailed` on an exit
        code not in ``accept`` (``(0, 3)`` for a command whose rows left out are expected, such as
        a filter: 3 is "written, with rows left out"). ``nice``: run it at that lower priority
        (``nice -n``, shown in the log's command line)."""
        full_env = {**os.environ, **self.env, **(env or {})}
        if nice:
            cmd = ["nice", "-n", str(nice), *cmd]
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(f"\n$ {shlex.join(map(str, cmd))}\n")
            log.flush()
            self.proc = subprocess.Popen([str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT, env=full_env,
                                         cwd=cwd)
            try:
                returncode = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired as e:
                self.proc.kill()
                self.proc.wait()
                raise StageFailed(self._failure(cmd, f"timed out after {timeout:.0f} s")) from e
            finally:
                self.proc = None
        if returncode not in accept:
            raise StageFailed(self._failure(cmd, f"exit code {returncode}"))

    def python(self, *args: str, **kwargs: Any) -> None:
        """Run ``python -m emocaliber_rl.cli ARGS`` with this interpreter."""
        self.run([sys.executable, "-m", "emocaliber_rl.cli", *args], **kwargs)

    def _failure(self, cmd: Sequence[str], why: str) -> str:
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        tail = "\n".join("    " + line for line in lines[-25:])
        return (f"stage '{self.name}' failed ({why}): {shlex.join(map(str, cmd))}\n"
                f"  log: {self.log_path}\n  last lines:\n{tail}")


@dataclass
class Stage:
    name: str
    description: str
    fn: Callable[[StageContext], None]
    # the stages whose outputs this one reads; None: the stage listed before it
    after: tuple[str, ...] | None = None


def load_state(out: Path) -> dict[str, Any]:
    path = out / STATE_FILE
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"stages": {}}


def save_state(out: Path, state: dict[str, Any]) -> None:
    tmp = out / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    os.replace(tmp, out / STATE_FILE)


def dependencies(stages: Sequence[Stage]) -> dict[str, tuple[str, ...]]:
    """Each stage's ``after``, defaults filled in; a name that is unknown, repeated or listed later
    than the stage that needs it is an error (the list order is an order the stages can run in)."""
    deps: dict[str, tuple[str, ...]] = {}
    for i, stage in enumerate(stages):
        if stage.name in deps:
            raise ValueError(f"stage {stage.name!r} is listed twice")
        after = stage.after if stage.after is not None else ((stages[i - 1].name,) if i else ())
        for dep in after:
            if dep not in deps:
                where = "listed after it" if any(s.name == dep for s in stages) else "not a stage"
                raise ValueError(f"stage {stage.name!r} comes after {dep!r}, which is {where}")
        deps[stage.name] = tuple(after)
    return deps


def run_pipeline(stages: Sequence[Stage], out: Path, *, resume: bool = False,
                 echo: Callable[[str], None] = print, env: dict[str, str] | None = None,
                 parallel: int = 1) -> dict[str, Any]:
    """Run ``stages``, ``env`` added to the environment of every command they run, up to
    ``parallel`` of them at once; returns the state (per stage: seconds, outputs; ``wall_s``)."""
    if parallel < 1:
        raise ValueError(f"parallel must be at least 1, not {parallel}")
    deps = dependencies(stages)
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    state = load_state(out) if resume else {"stages": {}}
    if not resume:
        for stale in (out / "logs").glob("*.log"):
            stale.unlink()
    total = len(stages)
    number = {stage.name: i for i, stage in enumerate(stages, 1)}
    done = {s.name for s in stages if resume and state["stages"].get(s.name, {}).get("done")}
    for stage in stages:
        if stage.name in done:
            echo(f"[{number[stage.name]}/{total}] {stage.name}: done earlier "
                 f"({state['stages'][stage.name]['seconds']:.1f} s), skipped")
    pending = [s for s in stages if s.name not in done]
    running: dict[str, StageContext] = {}
    finished: queue.Queue[tuple[Stage, StageContext, float, BaseException | None]] = queue.Queue()
    failures: list[BaseException] = []
    start_wall = time.perf_counter()
    wall_before = float(state.get("wall_s", 0.0))

    def work(stage: Stage, ctx: StageContext) -> None:
        start = time.perf_counter()
        try:
            stage.fn(ctx)
            finished.put((stage, ctx, time.perf_counter() - start, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            finished.put((stage, ctx, time.perf_counter() - start, exc))

    try:
        while pending or running:
            if not failures:
                for stage in [s for s in pending if all(d in done for d in deps[s.name])]:
                    if len(running) >= parallel:
                        break
                    pending.remove(stage)
                    echo(f"[{number[stage.name]}/{total}] {stage.name}: {stage.description} ...")
                    ctx = StageContext(stage.name, out, out / "logs" / f"{stage.name}.log", env=dict(env or {}),
                                       wall_before=wall_before, started=start_wall)
                    ctx.log_path.write_text("", encoding="utf-8")
                    running[stage.name] = ctx
                    threading.Thread(target=work, args=(stage, ctx), name=f"stage-{stage.name}", daemon=True).start()
            if not running:
                break  # a failure left stages pending: they never start
            stage, ctx, seconds, exc = finished.get()
            del running[stage.name]
            if exc is not None:
                failures.append(exc)
                continue
            done.add(stage.name)
            state["stages"][stage.name] = {"done": True, "seconds": round(seconds, 1), "outputs": ctx.outputs,
                                           "description": stage.description}
            save_state(out, state)
            echo(f"[{number[stage.name]}/{total}] {stage.name}: finished in {seconds:.1f} s")
    except BaseException:
        # interrupted (Ctrl-C) while stages run: stop their commands rather than leave them behind
        for ctx in running.values():
            if ctx.proc is not None:
                ctx.proc.terminate()
        raise
    finally:
        state["wall_s"] = round(wall_before + time.perf_counter() - start_wall, 1)
        save_state(out, state)
    if failures:
        raise failures[0]
    return state
