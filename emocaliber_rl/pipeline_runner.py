"""Run a pipeline of named stages with logs, wall times and resume (used by `emocaliber demo`).

Each stage is a callable that runs commands through :meth:`StageContext.run` (their output goes
to ``OUT/logs/<stage>.log``). Finished stages are recorded in ``OUT/pipeline_state.json`` with their
wall time and outputs; with ``resume=True`` they are skipped. A failing stage stops the pipeline
with an error naming the stage, the command and the last lines of its log.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
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

    def run(self, cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float | None = None, accept: tuple[int, ...] = (0,)) -> None:
        """Run ``cmd``, appending its output to the stage log; raise :class:`StageFailed` on an exit
        code not in ``accept`` (``(0, 3)`` for a command whose rows left out are expected, such as
        a filter: 3 is "written, with rows left out")."""
        full_env = {**os.environ, **self.env, **(env or {})}
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(f"\n$ {shlex.join(map(str, cmd))}\n")
            log.flush()
            try:
                proc = subprocess.run([str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT, env=full_env,
                                      cwd=cwd, timeout=timeout, check=False)
            except subprocess.TimeoutExpired as e:
                raise StageFailed(self._failure(cmd, f"timed out after {timeout:.0f} s")) from e
        if proc.returncode not in accept:
            raise StageFailed(self._failure(cmd, f"exit code {proc.returncode}"))

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


def load_state(out: Path) -> dict[str, Any]:
    path = out / STATE_FILE
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"stages": {}}


def save_state(out: Path, state: dict[str, Any]) -> None:
    tmp = out / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    os.replace(tmp, out / STATE_FILE)


def run_pipeline(stages: Sequence[Stage], out: Path, *, resume: bool = False,
                 echo: Callable[[str], None] = print, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``stages`` in order, ``env`` added to the environment of every command they run;
    returns the state (per stage: seconds, outputs)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    state = load_state(out) if resume else {"stages": {}}
    if not resume:
        for stale in (out / "logs").glob("*.log"):
            stale.unlink()
    total = len(stages)
    for i, stage in enumerate(stages, 1):
        if resume and state["stages"].get(stage.name, {}).get("done"):
            echo(f"[{i}/{total}] {stage.name}: done earlier ({state['stages'][stage.name]['seconds']:.1f} s), skipped")
            continue
        echo(f"[{i}/{total}] {stage.name}: {stage.description} ...")
        ctx = StageContext(stage.name, out, out / "logs" / f"{stage.name}.log", env=dict(env or {}))
        ctx.log_path.write_text("", encoding="utf-8")
        start = time.perf_counter()
        stage.fn(ctx)
        seconds = time.perf_counter() - start
        state["stages"][stage.name] = {"done": True, "seconds": round(seconds, 1), "outputs": ctx.outputs,
                                       "description": stage.description}
        save_state(out, state)
        echo(f"[{i}/{total}] {stage.name}: finished in {seconds:.1f} s")
    return state
