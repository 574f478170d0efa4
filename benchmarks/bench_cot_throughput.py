"""VEC-CoT synthesis throughput against a local chat-completions server with a fixed delay.

    .venv/bin/python benchmarks/bench_cot_throughput.py [--delay 0.05] [--concurrency 1,2,4,8,16,32,64]

The server (emocaliber_rl.data.chat_server, run by emocaliber_rl.cli.chat_server) runs in its own process and answers every request
after ``--delay`` seconds, so the ideal rate is concurrency / delay. For each concurrency the
full synthesis path runs (image -> data URL, request, parse, fsync'd group-committed append) and
the table prints requests/s and its ratio to the ideal (target >= 0.8 up to 64), plus the CPU
time per request of the client (this process) and of the server: on a shared machine the wall
clock rate depends on the load (printed), the CPU cost per request does not. The baseline, run
just before each level, is bare ``ChatClient.chat`` round trips (tiny text prompt, nothing read or
written): ``vs bare`` is the share of the raw HTTP rate that the full pipeline keeps.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emocaliber_rl.data.cot_client import ChatClient, run_async
from emocaliber_rl.data.cot_run import synthesize
from emocaliber_rl.data.records import Record
from emocaliber_rl.data.synthetic import draw_image


def start_server(delay: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "emocaliber_rl.cli.chat_server", "--delay", str(delay)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("LISTENING"):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--delay", type=float, default=0.05, help="server delay per request (s)")
    p.add_argument("--concurrency", default="1,2,4,8,16,32,64", help="comma-separated levels")
    p.add_argument("--seconds", type=float, default=2.0, help="target duration per level (sets record count)")
    args = p.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    server, url = start_server(args.delay)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            images = [draw_image(tmp / f"{i}.jpg", i, size=(64, 64)) for i in range(64)]
            print(f"server delay {args.delay * 1000:.0f} ms; ideal rate = concurrency / delay; "
                  f"cores {len(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.1f}")
            print(f"{'concurrency':>11} {'records':>8} {'seconds':>8} {'req/s':>8} {'ideal':>8} {'ratio':>6}"
                  f" {'bare req/s':>10} {'vs bare':>7} {'client ms/req':>13} {'server ms/req':>13}")
            for c in levels:
                ideal = c / args.delay
                n = max(20, int(ideal * args.seconds))
                recs = [Record.make(f"c{c}-{i}", "FI-8", images[i % 64], "awe") for i in range(n)]
                out = tmp / f"out{c}.jsonl"

                async def bare(recs=recs, c=c):
                    async with ChatClient(url, "bench", concurrency=c, timeout=30) as client:
                        msgs = [{"role": "user", "content": "labelled the emotion it evokes as: awe"}]
                        t0 = time.perf_counter()
                        await asyncio.gather(*(client.chat(msgs, record_id=r.id) for r in recs))
                        return time.perf_counter() - t0

                bare_rate = n / run_async(bare())

                async def run(recs=recs, out=out, c=c):
                    async with ChatClient(url, "bench", concurrency=c, timeout=30) as client:
                        t0 = time.perf_counter()
                        stats = await synthesize(recs, out, client, progress=False, log=lambda m: None)
                        return stats, time.perf_counter() - t0

                c0, s0 = _self_cpu(), _proc_cpu(server.pid)
                stats, elapsed = run_async(run())
                c_ms = (_self_cpu() - c0) / n * 1000
                s_ms = (_proc_cpu(server.pid) - s0) / n * 1000
                assert stats.done == n and stats.failed == 0, stats
                rate = n / elapsed
                print(f"{c:>11} {n:>8} {elapsed:>8.2f} {rate:>8.1f} {ideal:>8.1f} {rate / ideal:>6.2f}"
                      f" {bare_rate:>10.1f} {rate / bare_rate:>7.2f} {c_ms:>13.3f} {s_ms:>13.3f}")
            print(f"load average at the end {os.getloadavg()[0]:.1f}")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
