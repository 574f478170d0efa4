"""The synthesis client against a real local HTTP server speaking the chat-completions protocol,
scripted to return 429s (with Retry-After), 5xx, responses slower than the timeout, malformed and
empty bodies, non-retryable 400s, and error bodies that echo the API key."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import traceback
from pathlib import Path

from emocaliber_rl.data.chat_server import ServerConfig, ServerThread, cot_for
from emocaliber_rl.data.cot_client import ChatClient, ChatError, parse_retry_after
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


def test_no_key_sends_no_authorization_header(monkeypatch) -> None:
    # The SDK would fall back to OPENAI_API_KEY; a client built without a key must not send it.
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    msgs = [{"role": "user", "content": 'The image is labelled "awe".'}]
    with ServerThread(ServerConfig()) as server:

        async def run(key):
            async with ChatClient(server.url, "m", api_key=key) as client:
                res = await client.chat(msgs, record_id=f"key={key is not None}")
                return res, client.stats

        (res, stats), _ = asyncio.run(run(None)), asyncio.run(run("sk-other"))
        auth = dict(server.state.auth)
        counts = dict(server.state.counts)
    assert auth == {False: 1, True: 1}
    assert counts == {"key=False": 1, "key=True": 1}  # the record id travels as a header
    # usage and model are the server's (chat_server: tokens = characters // 4)
    assert res.content == cot_for("awe") and res.model == "local" and res.attempts == 1
    assert res.usage.completion_tokens == len(cot_for("awe")) // 4
    assert stats.usage.completion_tokens == res.usage.completion_tokens and stats.requests == 1


def test_non_retryable_error_carries_no_key(tmp_path: Path, caplog) -> None:
    """A 400 whose body echoes the key: the error names the status and the redacted body, and
    neither its text, its traceback, nor the SDK's own debug logs hold the key."""
    caplog.set_level(logging.DEBUG)
    msgs = [{"role": "user", "content": 'The image is labelled "awe".'}]
    with ServerThread(ServerConfig(script={"e400": ["echo400"]}, expect_key=KEY)) as server:

        async def run():
            async with ChatClient(server.url, "m", api_key=KEY, max_retries=3) as client:
                try:
                    await client.chat(msgs, record_id="e400")
                except ChatError as e:
                    return e, client.stats
                raise AssertionError("a 400 must fail")

        err, stats = asyncio.run(run())
        counts = dict(server.state.counts)
    assert counts == {"e400": 1} and stats.failures == 1 and stats.retries == 0
    assert err.status == 400 and err.attempts == 1
    assert str(err) == "HTTP 400: upstream error; request headers: Bearer ***"
    assert KEY not in "".join(traceback.format_exception(err))
    sdk_logs = [r for r in caplog.records if r.name.split(".")[0] in ("openai", "httpx2", "httpcore")]
    assert sdk_logs  # the SDK did log at debug level
    assert not [r for r in caplog.records if KEY in r.getMessage()]


def test_connection_errors_are_retried_then_reported() -> None:
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def run():
        async with ChatClient(f"http://127.0.0.1:{port}/v1", "m", max_retries=2,
                              backoff_base=0.01) as client:
            try:
                await client.chat([{"role": "user", "content": "x"}], record_id="c")
            except ChatError as e:
                return e, client.stats
            raise AssertionError("nothing listens")

    err, stats = asyncio.run(run())
    assert err.attempts == 3 and err.status is None
    assert str(err).startswith("gave up after 3 attempts: connection error: ")
    assert stats.requests == 3 and stats.retries == 2 and stats.by_reason == {"connection": 3}
