"""CoT synthesis client: ``openai.AsyncOpenAI`` against any OpenAI-compatible endpoint, with this
project's retry policy, accounting and key redaction around it.

Why it is written this way:

- The SDK does the HTTP: base URL, ``Authorization`` header, JSON, typed errors, connection pool,
  ``timeout``. Each request carries the header ``X-EmoCaliber-Record: <record id>`` (SDK
  ``extra_headers``): providers ignore unknown headers, and it lets a server's logs (or the local
  scripted server, :mod:`chat_server`) be matched to records.
- The SDK's own retries are off (``max_retries=0``) and a short loop here retries instead: the
  SDK's backoff is fixed by module constants (0.5 s doubling to 8 s, ``openai/_constants.py``), it
  retries silently (no count, reason or log line per attempt: the run summary and the
  ``--backoff-*`` flags need them), and it never retries a 200 whose body is unusable. Retried:
  HTTP 408/409/425/429/5xx, timeouts, connection errors and malformed bodies (not JSON, no
  ``choices``, empty content); ``Retry-After`` (seconds or an HTTP date) is honoured, capped at
  ``retry_after_cap``. Other 4xx (bad request, auth) fail at once: retrying cannot fix them and
  would only spend money.
- The API key comes from an environment variable only (never a flag, so it never lands in shell
  history or ``ps``), and is never logged or written: :meth:`ChatClient.redact` scrubs it from
  every error text, including response bodies that echo request headers, and errors are raised
  without the SDK exception chained (its message quotes the raw body). Without a key the
  ``Authorization`` header is omitted (a local server may need none), not sent empty.
- A semaphore bounds requests in flight to ``concurrency``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Self

DEFAULT_KEY_ENVS: tuple[str, ...] = ("EMOCALIBER_API_KEY", "OPENAI_API_KEY")
RETRY_STATUS = frozenset({408, 409, 425, 429}) | frozenset(range(500, 600))
RECORD_HEADER = "X-EmoCaliber-Record"
# The SDK refuses to build a client without credentials; with no key this placeholder satisfies
# it and every request omits the Authorization header (``openai.Omit``), so it is never sent.
_NO_KEY = "no-key:authorization-header-omitted"


class ChatError(Exception):
    """A request that failed for good (non-retryable status, or retries exhausted)."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens

    def cost(self, price_in: float, price_out: float) -> float:
        """Cost in currency units given prices per 1M input / output tokens."""
        return self.prompt_tokens / 1e6 * price_in + self.completion_tokens / 1e6 * price_out


@dataclass
class ChatResult:
    content: str
    usage: Usage
    attempts: int
    model: str | None = None


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    failures: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)  # tokens billed, including retried bodies

    def note(self, reason: str) -> None:
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1


def read_api_key(env_names: tuple[str, ...] | list[str] = DEFAULT_KEY_ENVS) -> str | None:
    """The first non-empty of the given environment variables (a local server may need none)."""
    for name in env_names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def run_async(coro: Any) -> Any:
    """``asyncio.run`` on uvloop when it is installed (a faster event loop: the client's per-request
    CPU cost bounds throughput at high concurrency), else on the default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def image_data_url(data: bytes) -> str:
    """``data:`` URL for image bytes (media type sniffed from the magic number)."""
    import base64

    mime = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class ChatClient:
    """Use as ``async with ChatClient(...) as client: await client.chat(messages, record_id=...)``."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        concurrency: int = 16,
        timeout: float = 120.0,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        retry_after_cap: float = 120.0,
        log: Any = None,
        seed: int | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model = model
        self._key = api_key
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_cap = retry_after_cap
        self.stats = ClientStats()
        self._log = log
        self._rng = random.Random(seed)
        self._sem = asyncio.Semaphore(concurrency)
        self._sdk: Any = None

    async def __aenter__(self) -> Self:
        import openai

        self._sdk = openai.AsyncOpenAI(api_key=self._key or _NO_KEY, base_url=self.base_url,
                                       timeout=self.timeout, max_retries=0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sdk is not None:
            await self._sdk.close()

    def redact(self, text: str) -> str:
        """``text`` with the API key (and its Bearer header form) replaced by ``***``."""
        if self._key:
            text = text.replace(self._key, "***")
        return text

    def _emit(self, msg: str) -> None:
        if self._log is not None:
            self._log(self.redact(msg))

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        # Equal jitter: half fixed, half random, so a burst of 429s does not retry in lockstep.
        cap = min(self.backoff_max, self.backoff_base * (2**attempt))
        delay = cap / 2 + self._rng.uniform(0, cap / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_cap))
        return delay

    async def _once(self, body: dict[str, Any], record_id: str) -> ChatResult:
        import openai

        headers: dict[str, Any] = {RECORD_HEADER: record_id}
        if not self._key:
            headers["Authorization"] = openai.Omit()
        # Every outcome becomes a _Retryable or a ChatError raised outside the except blocks:
        # the SDK's exceptions quote raw bodies (which may echo the key) and must not be chained.
        failure: Exception
        try:
            completion = await self._sdk.chat.completions.create(**body, extra_headers=headers)
        except openai.APIStatusError as e:
            msg = f"HTTP {e.status_code}: {e.response.text[:300]}"
            if e.status_code in RETRY_STATUS:
                failure = _Retryable(msg, parse_retry_after(e.response.headers.get("retry-after")),
                                     e.status_code)
            else:
                failure = ChatError(self.redact(msg), status=e.status_code)
        except openai.APITimeoutError:
            failure = _Retryable(f"timeout after {self.timeout:g}s")
        except openai.APIConnectionError as e:
            cause = e.__cause__ or e  # the transport's own error, when the SDK kept it
            failure = _Retryable(f"connection error: {type(cause).__name__}: {cause}")
        except json.JSONDecodeError as e:  # a 200 whose body is not JSON
            failure = _Retryable(f"malformed body (not JSON: {e.msg}): {e.doc[:120]!r}")
        else:
            choices = completion.choices or []
            content = choices[0].message.content if choices else None
            if isinstance(content, str) and content.strip():
                u = completion.usage
                usage = Usage(int(u.prompt_tokens or 0), int(u.completion_tokens or 0)) if u else Usage()
                return ChatResult(content, usage, 0, completion.model)
            failure = _Retryable("malformed body (" + ("empty content" if choices else "no choices") + ")")
        raise failure

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        record_id: str,
        max_tokens: int = 1024,
        temperature: float = 0.7,
        extra: dict[str, Any] | None = None,
    ) -> ChatResult:
        """One chat completion with retries; raises :class:`ChatError` (key redacted) on failure.

        ``extra``: further request-body fields (the SDK's ``extra_body``), e.g. provider options.
        """
        body: dict[str, Any] = {"model": self.model, "messages": messages,
                                "max_tokens": max_tokens, "temperature": temperature}
        if extra:
            body["extra_body"] = extra
        last = ""
        last_status = None
        for attempt in range(self.max_retries + 1):
            async with self._sem:
                self.stats.requests += 1
                try:
                    result = await self._once(body, record_id)
                except _Retryable as e:
                    last, last_status = self.redact(str(e)), e.status
                    reason = f"http_{e.status}" if e.status else str(e).split(" ", 1)[0]
                    self.stats.note(reason)
                    retry_after = e.retry_after
                except ChatError as e:
                    self.stats.failures += 1
                    e.attempts = attempt + 1
                    raise
                else:
                    result.attempts = attempt + 1
                    self.stats.usage.add(result.usage)
                    return result
            if attempt == self.max_retries:
                break
            self.stats.retries += 1
            delay = self._delay(attempt, retry_after)
            self._emit(f"[{record_id}] attempt {attempt + 1} failed ({last}); retrying in {delay:.2f}s")
            await asyncio.sleep(delay)
        self.stats.failures += 1
        raise ChatError(f"gave up after {self.max_retries + 1} attempts: {last}",
                        status=last_status, attempts=self.max_retries + 1)
