"""The synthesis client against a real local HTTP server speaking the chat-completions protocol,
scripted to return 429s (with Retry-After), 5xx, responses slower than the timeout, malformed and
empty bodies, non-retryable 400s, and error bodies that echo the API key."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from emocaliber_rl.data.chat_server import ServerConfig, ServerThread
from emocaliber_rl.data.cot_client import ChatClient, parse_retry_after
from emocaliber_rl.data.cot_run import synthesize
from emocaliber_rl.data.records import Record
from emocaliber_rl.data.synthetic import draw_image

KEY = "sk-test-SECRET-4f9a1c77"
SCRIPT = {
    "r429": ["429", "429", "ok"],
    "r5xx": ["500", "503", "ok"],
    "rslow": ["slow", "ok"],
    "rmal": ["malformed", "empty", "ok"],
    "recho": ["echo500", "ok"],
    "r400": ["400"],
    "rgiveup": ["500", "500", "500", "500"],
    "rok": [],
}


def _records(tmp: Path) -> list[Record]:
    return [Record.make(rid, "FI-8", draw_image(tmp / f"{rid}.jpg", i), "awe")
            for i, rid in enumerate(SCRIPT)]


def test_retry_after_parsing() -> None:
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") < 1


def test_client_survives_misbehaving_server(tmp_path: Path) -> None:
    logs: list[str] = []
    out = tmp_path / "synth.jsonl"
    cfg = ServerConfig(slow_s=1.6, script=SCRIPT, expect_key=KEY)
    with ServerThread(cfg) as server:

        async def run():
            async with ChatClient(server.url, "teacher", api_key=KEY, concurrency=8, timeout=1.0,
                                  max_retries=3, backoff_base=0.01, backoff_max=0.05,
                                  log=logs.append, seed=0) as client:
                t0 = time.perf_counter()
                stats = await synthesize(_records(tmp_path), out, client, progress=False, log=logs.append)
                return stats, time.perf_counter() - t0, client.stats

        stats, elapsed, cstats = asyncio.run(run())
        counts = dict(server.state.counts)
    assert counts == {"r429": 3, "r5xx": 3, "rslow": 2, "rmal": 3, "recho": 2, "r400": 1,
                      "rgiveup": 4, "rok": 1}
    assert elapsed >= 0.4  # two Retry-After: 0.2 waits although the backoff is 10 ms
    assert stats.done == 6 and stats.failed == 2
    assert cstats.by_reason["http_429"] == 2 and cstats.by_reason["timeout"] == 1
    assert cstats.by_reason["malformed"] == 2
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(set(SCRIPT) - {"r400", "rgiveup"})
    for r in rows:
        assert r["steps"]["analysis"] and r["response"].endswith("<answer>awe</answer>")
        assert r["usage"]["completion_tokens"] > 0 and r["label"] == "awe"
    errors = [json.loads(x) for x in (tmp_path / "synth.jsonl.errors.jsonl").read_text().splitlines()]
    assert {e["id"]: e["status"] for e in errors} == {"r400": 400, "rgiveup": 500}
    # the echoed Authorization header never reaches logs or files
    assert any("request headers: Bearer ***" in line for line in logs)
    for text in [*logs, out.read_text(), (tmp_path / "synth.jsonl.errors.jsonl").read_text()]:
        assert KEY not in text


def test_rerun_retries_only_unfinished(tmp_path: Path) -> None:
    out = tmp_path / "synth.jsonl"
    script = {"a": ["400"], "b": []}
    with ServerThread(ServerConfig(script=script)) as server:
        recs = [Record.make(rid, "WebEmo-7", draw_image(tmp_path / f"{rid}.jpg", i), "joy")
                for i, rid in enumerate(script)]

        async def run():
            async with ChatClient(server.url, "m", backoff_base=0.01) as client:
                return await synthesize(recs, out, client, progress=False, log=lambda m: None)

        first = asyncio.run(run())
        second = asyncio.run(run())
        counts = dict(server.state.counts)
    assert (first.done, first.failed) == (1, 1)
    assert (second.done, second.skipped, second.failed) == (1, 1, 0)
    assert counts == {"a": 2, "b": 1}
    assert sorted(json.loads(x)["id"] for x in out.read_text().splitlines()) == ["a", "b"]
