"""A small local server speaking the OpenAI chat-completions protocol, scripted to misbehave.

For tests, benchmarks and offline dry runs of `emocaliber cot ...` (no paid calls): it answers a
synthesis request with a well-formed five-step CoT for the label named in the prompt, and a judge
request with a JSON verdict. Per record id (header ``X-EmoCaliber-Record``) it counts requests and
can follow a script of actions for the n-th request of that id:

``ok`` | ``429`` (``Retry-After: 0.2``) | ``500`` | ``503`` | ``400`` | ``slow`` (sleeps
``slow_s``, beyond the client timeout) | ``malformed`` (200 with a body that is not JSON) |
``empty`` (200 with no choices) | ``echo500`` / ``echo400`` (500 / 400 whose body echoes the
Authorization header) |
``leak`` (ok, but the CoT names the label) | ``reject`` (judge verdict: hallucination).

In **world mode** (``ServerConfig(world=True)``, ``--world``) it is the demo's teacher and judge
instead (:mod:`emocaliber_rl.world.teacher`): it decodes the request's image and reads it with the
known-answer world's reader, so a synthesis reply states what that image shows and a verdict
checks a CoT against its pixels. The scripted HTTP failures (``429`` .. ``empty``) still apply.

``python -m emocaliber_rl.cli.chat_server --port 0 --delay 0.05`` prints ``LISTENING <port>``.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self

from reward_fns.emocaliber import format_response

if TYPE_CHECKING:  # aiohttp is imported lazily at run time
    from aiohttp import web

_LABEL = re.compile(r'(?:labelled the emotion it evokes as:?|is labelled) \\?"?([A-Za-z]+)')
_SUBTASK = re.compile(r"\(task ([A-Za-z0-9-]+)[:;]")
_JUDGED = re.compile(r"Below is a reasoning chain written for it\.\n\n(.*)\n\nCheck it against the image", re.DOTALL)


def world_reply(body: dict) -> str:
    """World mode: the teacher's CoT or the judge's JSON verdict for one chat request, from its
    image's pixels and the subtask and label its prompt names. Raises ValueError for a request
    that lacks any of them."""
    import base64
    import io

    from PIL import Image

    from emocaliber_rl.world.teacher import judge_verdict, teacher_response

    text, url = "", None
    for msg in body.get("messages", []):
        content = msg.get("content")
        if msg.get("role") != "user" or not isinstance(content, list):
            continue
        for part in content:
            if part.get("type") == "text":
                text += part.get("text", "")
            elif part.get("type") == "image_url":
                url = part["image_url"]["url"]
    label, subtask = _LABEL.search(text), _SUBTASK.search(text)
    if url is None or "," not in url or label is None or subtask is None:
        raise ValueError("world mode needs an image data URL and a prompt naming the task and the label")
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    if "JSON verdict" in text:
        judged = _JUDGED.search(text)
        if judged is None:
            raise ValueError("judge request without the reasoning chain")
        return json.dumps(judge_verdict(image, subtask.group(1), label.group(1), judged.group(1)))
    return teacher_response(image, subtask.group(1), label.group(1))


@dataclass
class ServerConfig:
    delay: float = 0.0
    slow_s: float = 5.0
    script: dict[str, list[str]] = field(default_factory=dict)  # record id -> actions per request
    default_script: list[str] = field(default_factory=list)  # for ids without their own script
    expect_key: str | None = None  # when set, requests without this Bearer key get 401
    world: bool = False  # teacher and judge of the known-answer world (module docstring)


@dataclass
class ServerState:
    counts: Counter = field(default_factory=Counter)
    actions: list[tuple[str, int, str]] = field(default_factory=list)
    auth: Counter = field(default_factory=Counter)  # requests with / without an Authorization header


def cot_for(label: str, leak: bool = False) -> str:
    mood = f"a clear sense of {label}" if leak else "the mood the evidence points to"
    steps = {"element": "A figure stands in the foreground under strong light.",
             "human": "One person is visible; the face is turned toward the camera.",
             "context": "The background is an open street at dusk.",
             "interaction": "The lighting and posture reinforce each other.",
             "analysis": f"Together these cues evoke {mood}."}
    return format_response(steps, label)


def make_app(config: ServerConfig, state: ServerState) -> web.Application:
    from aiohttp import web

    async def completions(request: web.Request) -> web.StreamResponse:
        rid = request.headers.get("X-EmoCaliber-Record", "?")
        state.counts[rid] += 1
        n = state.counts[rid]
        script = config.script.get(rid, config.default_script)
        action = script[n - 1] if n <= len(script) else "ok"
        state.actions.append((rid, n, action))
        state.auth["Authorization" in request.headers] += 1
        if config.expect_key is not None and \
                request.headers.get("Authorization") != f"Bearer {config.expect_key}":
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        raw = (await request.read()).decode("utf-8")
        if action == "429":
            return web.json_response({"error": {"message": "rate limited"}}, status=429,
                                     headers={"Retry-After": "0.2"})
        if action in ("500", "503", "400"):
            return web.json_response({"error": {"message": "scripted"}}, status=int(action))
        if action in ("echo500", "echo400"):
            return web.Response(status=int(action[4:]), text="upstream error; request headers: "
                                + str(request.headers.get("Authorization")))
        if action == "slow":
            await asyncio.sleep(config.slow_s)
        if action == "malformed":
            return web.Response(status=200, text='{"choices": [ {"message": ', content_type="application/json")
        if action == "empty":
            return web.json_response({"id": "x", "choices": []})
        if config.delay:
            await asyncio.sleep(config.delay)
        # The label and the request kind are read from the raw body with a regex: decoding the
        # JSON (with its base64 image) would make this server, not the client, the bottleneck of
        # the throughput benchmark on a 2-core machine. World mode must see the image.
        text = raw
        if config.world:
            try:
                content = world_reply(json.loads(raw))
            except (ValueError, KeyError, TypeError, OSError) as e:
                return web.json_response({"error": {"message": f"world mode: {e}"}}, status=400)
        elif "JSON verdict" in text:
            bad = action == "reject"
            content = json.dumps({"hallucination": bad, "label_leakage": False,
                                  "logical_inconsistency": False, "pass": not bad,
                                  "reason": "scripted"})
        else:
            m = _LABEL.search(text)
            content = cot_for(m.group(1) if m else "unknown", leak=action == "leak")
        return web.json_response({
            "id": f"chatcmpl-{rid}-{n}",
            "object": "chat.completion",
            "model": "local",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(text) // 4, "completion_tokens": len(content) // 4,
                      "total_tokens": len(text) // 4 + len(content) // 4},
        })

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"counts": dict(state.counts), "total": sum(state.counts.values())})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_post("/chat/completions", completions)
    app.router.add_get("/stats", stats)
    return app


class ServerThread:
    """Run the server on 127.0.0.1 in a background thread: ``with ServerThread(cfg) as s: s.url``."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.state = ServerState()
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _main(self) -> None:
        from aiohttp import web

        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(make_app(self.config, self.state), access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._runner = runner
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("chat server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)


def serve(config: ServerConfig, port: int = 0) -> None:
    """Serve on 127.0.0.1:``port`` (0: any free port) until killed; prints ``LISTENING <port>``."""
    from aiohttp import web

    state = ServerState()

    async def run() -> None:
        runner = web.AppRunner(make_app(config, state), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        print(f"LISTENING {site._server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Event().wait()

    from emocaliber_rl.data.cot_client import run_async

    run_async(run())
