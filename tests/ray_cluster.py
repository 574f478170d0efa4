"""Ray clusters on 127.0.0.1 for the slow tests (not a test module itself).

Each cluster gets its own temp dir, ports and token file (token authentication on, Ray 2.60's
default, set explicitly), and every process it starts carries a marker in its environment;
teardown kills exactly those processes and their descendants (never `ray stop`, which stops every
Ray cluster of the user on this machine)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MARKER_VAR = "EMOCALIBER_RAY_TEST"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def marked_pids(marker: str) -> list[int]:
    """Every process whose environment carries ``EMOCALIBER_RAY_TEST=marker`` (this one excepted)."""
    needle = f"{MARKER_VAR}={marker}".encode()
    pids = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit() or int(proc_dir.name) == os.getpid():
            continue
        try:
            if needle in (proc_dir / "environ").read_bytes().split(b"\0"):
                pids.append(int(proc_dir.name))
        except OSError:
            continue
    return pids


def _with_descendants(pids: list[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for proc_dir in Path("/proc").iterdir():
        if proc_dir.name.isdigit():
            try:
                stat = (proc_dir / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(proc_dir.name))
    found, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def stop_cluster(marker: str) -> None:
    """SIGTERM, then SIGKILL, the marked processes and every descendant of theirs, waiting a few
    seconds after each. Descendants too: a raylet's dashboard and runtime-env agents rename
    themselves (``ray::DashboardAgent``), which overwrites the start of their environment, the
    marker included, and once the raylet is gone they are orphans nothing else finds."""
    targets: set[int] = set()
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        targets |= _with_descendants(marked_pids(marker))
        for pid in targets:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while any(_alive(p) for p in targets) and time.monotonic() < deadline:
            time.sleep(0.2)


def ray_bin() -> Path:
    return Path(sys.executable).with_name("ray")


def _ray_start(args: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run([str(ray_bin()), "start", *args, "--disable-usage-stats"], env=env, capture_output=True,
                          text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _agent_ports() -> list[str]:
    # two raylets on one host: every per-node port must differ (defaults would collide)
    return [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]


@contextmanager
def two_node_cluster(num_cpus: int = 8, num_gpus: int = 1) -> Iterator[dict]:
    """A head and a second raylet on 127.0.0.1, each with ``num_cpus`` logical CPUs and
    ``num_gpus`` logical GPUs. Yields the dashboard ``address`` (job server), the ``gcs``
    address, the ``env`` to run Ray commands with (marker, token file; no PYTHONPATH, so a job
    imports the project from its working_dir) and the ``marker``; afterwards every marked
    process is stopped and the temp dir removed (the caller checks ``marked_pids(marker)``)."""
    tmp = Path(tempfile.mkdtemp(prefix="ecmn", dir="/tmp"))  # short: Ray's socket paths are length-limited
    marker = uuid.uuid4().hex
    token = tmp / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {**os.environ, MARKER_VAR: marker, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0",
           # each node's dashboard agent samples every process's CPU and memory for the dashboard's
           # charts every 5 s (ray/dashboard/modules/reporter/reporter_consts.py); no test reads them
           "REPORTER_UPDATE_INTERVAL_MS": "60000"}
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "PYTHONPATH"):
        env.pop(key, None)
    gcs, dashboard = free_port(), free_port()
    try:
        _ray_start(["--head", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1", f"--port={gcs}",
                    f"--dashboard-port={dashboard}", f"--ray-client-server-port={free_port()}",
                    f"--temp-dir={tmp / 'ray'}", f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}",
                    *_agent_ports()], env)
        _ray_start([f"--address=127.0.0.1:{gcs}", "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}",
                    f"--num-gpus={num_gpus}", *_agent_ports()], env)
        yield {"address": f"http://127.0.0.1:{dashboard}", "gcs": f"127.0.0.1:{gcs}", "env": env,
               "marker": marker, "tmp": tmp}
    finally:
        stop_cluster(marker)
        shutil.rmtree(tmp, ignore_errors=True)


# what a raylet writes when it kills a worker (Ray 2.60's raylet binary: "%d worker(s) were killed
# due to the node running low on memory"; the memory monitor's own lines)
KILL_WORDS = ("low on memory", "memory monitor", "killing worker", "outofmemory")


def _text(out: str | bytes | None) -> str:
    return out.decode(errors="replace") if isinstance(out, bytes) else (out or "")


def run_job(cmd: list[str], cluster: dict, log_path: Path, timeout: float, cwd: Path,
            expect_failure: bool = False) -> tuple[int, str]:
    """Run a job command (``submit_stage*.sh``) against ``cluster``; returns its exit status (-9
    when it ran past ``timeout`` and was killed) and its output, which is also written to
    ``log_path`` whatever happened. When it fails unexpectedly, the cluster's Ray logs (which
    teardown deletes) are copied to ``log_path``'s folder (``ray_logs/``) and the raylets' lines
    about killed workers (Ray's memory monitor) are appended to the output: a job that hangs
    because a worker was killed otherwise leaves nothing to read."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=cluster["env"], capture_output=True, text=True, timeout=timeout,
                              check=False)
        rc, log = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        rc, log = -9, _text(e.stdout) + _text(e.stderr) + f"\n[run_job] killed after {timeout:g} s\n"
    if rc != 0 and not expect_failure:
        kept = log_path.parent / "ray_logs"
        kills = []
        for session in sorted((cluster["tmp"] / "ray").glob("session_2*")):
            shutil.copytree(session / "logs", kept / session.name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.sock"))
            for raylet in sorted((session / "logs").glob("raylet*.out")):
                kills += [f"{raylet.name}: {ln}" for ln in raylet.read_text(errors="replace").splitlines()
                          if any(k in ln.lower() for k in KILL_WORDS)]
        log += f"\n[run_job] Ray logs kept in {kept}; raylet lines on killed workers: {len(kills)}\n"
        log += "".join(f"  {ln}\n" for ln in kills[-20:])
    log_path.write_text(log)
    return rc, log


def list_state(kind: str, gcs: str, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    """``ray list KIND`` (nodes, actors) of the cluster at ``gcs`` as JSON."""
    return subprocess.run([str(ray_bin()), "list", kind, "--address", gcs, "--format", "json", *extra],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
