"""How the fake providers put a reply on the wire, acting out the selected failure scenario on the way.

Provider modules build a ``JsonReply`` or ``StreamReply`` from plain values; ``deliver`` writes it (paced,
stalled, truncated or broken off as the scenario says) and ``preflight`` handles scenarios that end a call
before any body is sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from .content import JSON, dumps
from .scenarios import FlakyCounter, Scenario, parse_scenario

FLAKY = web.AppKey("flaky", FlakyCounter)
OUTCOME = web.RequestKey("outcome", str)
DEFAULT_PACE = 0.002  # seconds between stream events: realistic, but keeps tests fast
JSON_PIECE_SIZE = 64  # bytes per body piece when a chunk scenario applies to a non-stream reply


class BadRequest(Exception):
    """A request the provider rejects with 400; each provider renders it in its own error format."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass
class JsonReply:
    body: JSON
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    indent: int | None = None  # OpenAI pretty-prints its non-stream bodies; the others are compact

    def encode(self) -> bytes:
        if self.indent is None:
            return dumps(self.body).encode()
        return json.dumps(self.body, indent=self.indent, ensure_ascii=False).encode()


@dataclass
class StreamReply:
    events: list[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200


Reply = JsonReply | StreamReply
ErrorFactory = Callable[[int, str], JsonReply]


def sse(data: object, event: str | None = None) -> bytes:
    """One server-sent event; ``data`` is JSON-encoded unless it is already a string (``[DONE]``)."""
    payload = data if isinstance(data, str) else dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


async def read_json(request: web.Request, invalid_message: str) -> JSON:
    """The request body as a JSON object, or ``BadRequest(invalid_message)``."""
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise BadRequest(invalid_message)
    return body


def json_response(reply: JsonReply) -> web.Response:
    return web.Response(
        body=reply.encode(),
        status=reply.status,
        headers={"content-type": "application/json", **reply.headers},
    )


def mark(request: web.Request, outcome: str) -> None:
    """Record how the call ended (read by the recording middleware in ``server``)."""
    request[OUTCOME] = outcome


async def preflight(
    request: web.Request,
    scenario: Scenario,
    flaky: FlakyCounter,
    provider: str,
    model: str,
    error: ErrorFactory,
) -> web.StreamResponse | None:
    """Act out scenarios that end or delay a call before its body; return the response ending it, if any."""
    if scenario.kind == "stall-before":
        await asyncio.sleep(scenario.delay)
        return None
    if scenario.kind == "reset-before-headers":
        abort(request)
        return web.StreamResponse()
    if scenario.kind == "flaky" and not flaky.should_fail(provider, model, scenario.failures):
        return None
    if scenario.kind in ("error", "flaky"):
        reply = error(scenario.status, f"Simulated upstream failure ({scenario.status}) for model {model}")
        if scenario.retry_after is not None:
            reply.headers["retry-after"] = scenario.retry_after
        mark(request, "error")
        return json_response(reply)
    return None


def abort(request: web.Request) -> None:
    """Close the connection under the response, so the client sees a disconnect or a broken chunked body."""
    transport = request.transport
    if transport is not None:
        transport.close()
    mark(request, "aborted")


def _split(body: bytes) -> list[bytes]:
    return [body[i : i + JSON_PIECE_SIZE] for i in range(0, len(body), JSON_PIECE_SIZE)]


async def deliver(request: web.Request, reply: Reply, scenario: Scenario) -> web.StreamResponse:
    """Send a successful reply, applying chunk scenarios to SSE events or to pieces of a JSON body."""
    chunked = scenario.kind in ("reset-after", "truncated-after", "stall-after", "slow-chunks")
    if isinstance(reply, JsonReply) and not chunked:
        mark(request, "complete")
        return json_response(reply)
    if isinstance(reply, JsonReply):
        events = _split(reply.encode())
        headers = {"content-type": "application/json", **reply.headers}
        pace = 0.0
    else:
        events = reply.events
        headers = {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            **reply.headers,
        }
        pace = DEFAULT_PACE
    if scenario.kind == "slow-chunks" or (scenario.kind in ("reset-after", "truncated-after") and scenario.delay):
        pace = scenario.delay
    response = web.StreamResponse(status=reply.status, headers=headers)
    response.enable_chunked_encoding()
    try:
        await response.prepare(request)
        for index, event in enumerate(events):
            if index == scenario.chunks and scenario.kind == "reset-after":
                abort(request)
                return response
            if index == scenario.chunks and scenario.kind == "truncated-after":
                mark(request, "truncated")
                await response.write_eof()
                return response
            if index == scenario.chunks and scenario.kind == "stall-after":
                await asyncio.sleep(scenario.delay)
            elif index and pace:
                await asyncio.sleep(pace)
            await response.write(event)
        await response.write_eof()
    except ConnectionError:
        mark(request, "client_disconnected")
        return response
    mark(request, "complete")
    return response


async def respond(
    request: web.Request, provider: str, model: str, reply: Reply, error: ErrorFactory
) -> web.StreamResponse:
    """Deliver ``reply`` under the scenario that ``model`` selects (errors, stalls, resets, ...)."""
    scenario = parse_scenario(model)
    early = await preflight(request, scenario, request.app[FLAKY], provider, model, error)
    if early is not None:
        return early
    return await deliver(request, reply, scenario)
