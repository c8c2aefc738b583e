"""Runs the three fake providers on 127.0.0.1 (one random port each) and records every request they receive.

``start_upstreams()`` serves them on the caller's event loop; ``UpstreamsThread`` serves them from a dedicated
thread with its own loop, for tests that drive synchronous SDK clients.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from . import anthropic, openai, workers_ai
from .wire import FLAKY, OUTCOME

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SHUTDOWN_TIMEOUT = 1.0


@dataclass
class RecordedRequest:
    """One request exactly as it reached a fake upstream, and how the call ended.

    ``outcome`` is ``pending`` while in flight, then ``complete``, ``error`` (scenario error reply),
    ``aborted`` (scenario reset), ``truncated`` (scenario clean early end) or ``client_disconnected``.
    """

    provider: str
    method: str
    path: str
    query_string: str
    headers: CIMultiDict[str]
    body: bytes
    status: int | None = None
    outcome: str = "pending"

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def api_key(self) -> str | None:
        """The provider credential the upstream saw (``x-api-key`` or the bearer token)."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    @property
    def model(self) -> str | None:
        """The model the request asked for: from the JSON body, else the Workers AI ``run/`` path."""
        try:
            body = self.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            return str(body["model"])
        _, found, model = self.path.partition("/ai/run/")
        return model if found else None


def _recorder(provider: str, requests: list[RecordedRequest]) -> Any:
    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        entry = RecordedRequest(
            provider, request.method, request.path, request.query_string, CIMultiDict(request.headers), body
        )
        requests.append(entry)
        try:
            response = await handler(request)
        except (asyncio.CancelledError, ConnectionError):
            entry.outcome = "client_disconnected"
            raise
        except web.HTTPException as exc:
            entry.status, entry.outcome = exc.status, "complete"
            raise
        entry.outcome = request.get(OUTCOME, "complete")
        entry.status = None if entry.outcome == "aborted" and not response.prepared else response.status
        return response

    return record


class Upstreams:
    """The running fakes: base URLs to point clients (or the gateway) at, and the requests they received."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._runners: dict[str, web.AppRunner] = {}
        self.origins: dict[str, str] = {}

    async def _start(self) -> None:
        factories = {
            "openai": openai.create_app,
            "anthropic": anthropic.create_app,
            "workers-ai": workers_ai.create_app,
        }
        for provider, create_app in factories.items():
            app = create_app([_recorder(provider, self.requests)])
            runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            self._runners[provider] = runner
            self.origins[provider] = f"http://{host}:{port}"

    @property
    def openai_base(self) -> str:
        return self.origins["openai"] + "/v1"

    @property
    def anthropic_base(self) -> str:
        return self.origins["anthropic"]

    @property
    def workers_ai_base(self) -> str:
        """Keeps the literal ``{account_id}`` placeholder: the gateway formats it in."""
        return self.origins["workers-ai"] + "/client/v4/accounts/{account_id}/ai/"

    def workers_ai_url(self, account_id: str = "test-account") -> str:
        return self.workers_ai_base.format(account_id=account_id)

    def requests_for(self, provider: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.provider == provider]

    def calls(self, provider: str, model: str) -> int:
        """How many calls the provider has counted for a ``flaky-...`` model string."""
        return self._runners[provider].app[FLAKY].calls(provider, model)

    def clear(self) -> None:
        """Forget recorded requests and reset the flaky counters."""
        self.requests.clear()
        for runner in self._runners.values():
            runner.app[FLAKY].clear()

    async def close(self) -> None:
        for runner in self._runners.values():
            await runner.cleanup()
        self._runners.clear()


async def start_upstreams() -> Upstreams:
    """Start all three fakes on the running loop; ``await ups.close()`` when done."""
    upstreams = Upstreams()
    try:
        await upstreams._start()
    except BaseException:
        await upstreams.close()
        raise
    return upstreams


class UpstreamsThread:
    """The same fakes served from a background thread with its own event loop (``start()`` / ``stop()``)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._upstreams: Upstreams | None = None

    @property
    def upstreams(self) -> Upstreams:
        if self._upstreams is None:
            raise RuntimeError("UpstreamsThread is not started")
        return self._upstreams

    def start(self) -> UpstreamsThread:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-upstreams", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._upstreams = asyncio.run_coroutine_threadsafe(start_upstreams(), loop).result(timeout=10)
        except BaseException:
            self._shutdown_loop()
            raise
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        if self._upstreams is not None:
            asyncio.run_coroutine_threadsafe(self._upstreams.close(), self._loop).result(timeout=10)
            self._upstreams = None
        self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> UpstreamsThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.upstreams.requests

    @property
    def openai_base(self) -> str:
        return self.upstreams.openai_base

    @property
    def anthropic_base(self) -> str:
        return self.upstreams.anthropic_base

    @property
    def workers_ai_base(self) -> str:
        return self.upstreams.workers_ai_base

    def workers_ai_url(self, account_id: str = "test-account") -> str:
        return self.upstreams.workers_ai_url(account_id)

    def requests_for(self, provider: str) -> list[RecordedRequest]:
        return self.upstreams.requests_for(provider)

    def calls(self, provider: str, model: str) -> int:
        return self.upstreams.calls(provider, model)

    def clear(self) -> None:
        self.upstreams.clear()
