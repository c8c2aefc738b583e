"""A fake Anthropic Messages API (text, tool use, extended thinking, streaming) on the exact wire format.

Requires ``x-api-key`` (or ``Authorization: Bearer``) and ``anthropic-version``; errors use Anthropic's body.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import content as c
from .content import JSON
from .scenarios import FlakyCounter
from .wire import FLAKY, BadRequest, JsonReply, Reply, StreamReply, json_response, read_json, respond, sse

PROVIDER = "anthropic"
MODELS = (
    ("claude-opus-4-7", "Claude Opus 4.7"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5"),
)
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


@dataclass
class Answer:
    """The content blocks the fake model produces for one request, before framing as JSON or SSE."""

    model: str
    blocks: list[JSON]
    stop_reason: str
    input_tokens: int
    id: str = field(default_factory=lambda: c.new_id("msg_01", 22))

    @property
    def output_tokens(self) -> int:
        return sum(len(_block_pieces(block)) for block in self.blocks)


def error_body(status: int, message: str) -> JSON:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": c.new_id("req_011", 22),
    }


def error_reply(status: int, message: str) -> JsonReply:
    body = error_body(status, message)
    return JsonReply(body, status=status, headers={"request-id": body["request_id"]})


def _headers() -> dict[str, str]:
    return {
        "request-id": c.new_id("req_011", 22),
        "anthropic-organization-id": "00000000-fake-4000-8000-000000000000",
    }


def check_headers(request: web.Request) -> JsonReply | None:
    """401 without a key (``x-api-key`` or bearer token), 400 without ``anthropic-version``."""
    key = request.headers.get("x-api-key", "").strip()
    if not key:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else ""
    if not key:
        return error_reply(401, "x-api-key header is required")
    if key.startswith("invalid"):
        return error_reply(401, "invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        return error_reply(400, "anthropic-version: header is required")
    return None


def _tools(body: JSON) -> list[JSON]:
    tools = body.get("tools")
    choice = c.obj(body.get("tool_choice"))
    if not isinstance(tools, list) or choice.get("type") == "none":
        return []
    custom = [t for t in tools if isinstance(t, dict) and t.get("name") and t.get("type", "custom") == "custom"]
    if choice.get("type") == "tool":
        custom = [t for t in custom if t["name"] == choice.get("name")]
    single = choice.get("disable_parallel_tool_use") is True or choice.get("type") == "tool"
    return custom[:1] if single else custom[:2]


def _require(body: JSON) -> tuple[str, list[Any], int]:
    model, messages, max_tokens = body.get("model"), body.get("messages"), body.get("max_tokens")
    for name, value, kind in (
        ("model", model, str),
        ("messages", messages, list),
        ("max_tokens", max_tokens, int),
    ):
        if value is None:
            raise BadRequest(f"{name}: Field required")
        if not isinstance(value, kind):
            raise BadRequest(f"{name}: Input should be a valid {kind.__name__}")
    assert isinstance(model, str) and isinstance(messages, list) and isinstance(max_tokens, int)
    if not messages:
        raise BadRequest("messages: at least one message is required")
    return model, messages, max_tokens


def plan_answer(body: JSON) -> Answer:
    """Validate a Messages request and decide its blocks: tool_use when tools are offered, else text."""
    model, messages, max_tokens = _require(body)
    user_text = c.last_user_text(messages)
    blocks: list[JSON] = []
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        blocks.append({"type": "thinking", "thinking": f"Thinking about: {user_text}", "signature": "sig_" + "A" * 40})
    tools = [] if c.is_tool_result_turn(messages) else _tools(body)
    choice = c.obj(body.get("tool_choice"))
    if tools and choice.get("type", "auto") == "auto":
        blocks.append({"type": "text", "text": "Calling " + ", ".join(t["name"] for t in tools) + "."})
    for tool in tools:
        args = c.tool_arguments(tool.get("input_schema"), user_text)
        blocks.append({"type": "tool_use", "id": c.new_id("toolu_01", 22), "name": tool["name"], "input": args})
    stop = "tool_use" if tools else "end_turn"
    if not tools:
        text = c.pieces(c.reply_text(messages))
        if len(text) > max_tokens:
            text, stop = text[:max_tokens], "max_tokens"
        blocks.append({"type": "text", "text": "".join(text)})
    return Answer(model, blocks, stop, c.prompt_tokens(messages, body.get("system")))


def usage(answer: Answer, output_tokens: int) -> JSON:
    return {
        "input_tokens": answer.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def message(answer: Answer, *, streaming: bool = False) -> JSON:
    """The ``Message`` object (empty content and null stop_reason for the ``message_start`` event)."""
    return {
        "id": answer.id,
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": [] if streaming else answer.blocks,
        "stop_reason": None if streaming else answer.stop_reason,
        "stop_sequence": None,
        "usage": usage(answer, 1 if streaming else answer.output_tokens),
    }


def _block_pieces(block: JSON) -> list[str]:
    if block["type"] == "tool_use":
        return c.json_pieces(c.dumps(block["input"]))
    return c.pieces(block.get("text") or block.get("thinking") or "")


def _block_events(index: int, block: JSON) -> list[bytes]:
    kind = block["type"]
    start = {"tool_use": {**block, "input": {}}, "thinking": {**block, "thinking": "", "signature": ""}}
    opening = start.get(kind, {"type": "text", "text": ""})
    events = [sse({"type": "content_block_start", "index": index, "content_block": opening}, "content_block_start")]
    deltas: list[JSON] = [{"type": "input_json_delta", "partial_json": ""}] if kind == "tool_use" else []
    for piece in _block_pieces(block):
        if kind == "tool_use":
            deltas.append({"type": "input_json_delta", "partial_json": piece})
        elif kind == "thinking":
            deltas.append({"type": "thinking_delta", "thinking": piece})
        else:
            deltas.append({"type": "text_delta", "text": piece})
    if kind == "thinking":
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    for delta in deltas:
        events.append(sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta"))
    events.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
    return events


def stream_events(answer: Answer) -> list[bytes]:
    """The exact SSE sequence: message_start, blocks (ping after the first), message_delta, message_stop."""
    events = [sse({"type": "message_start", "message": message(answer, streaming=True)}, "message_start")]
    for index, block in enumerate(answer.blocks):
        block_events = _block_events(index, block)
        events.append(block_events[0])
        if index == 0:
            events.append(b'event: ping\ndata: {"type": "ping"}\n\n')
        events.extend(block_events[1:])
    delta = {"stop_reason": answer.stop_reason, "stop_sequence": None}
    events.append(
        sse(
            {"type": "message_delta", "delta": delta, "usage": {"output_tokens": answer.output_tokens}},
            "message_delta",
        )
    )
    events.append(sse({"type": "message_stop"}, "message_stop"))
    return events


def messages_reply(body: JSON) -> Reply:
    answer = plan_answer(body)
    if body.get("stream") is True:
        return StreamReply(stream_events(answer), headers=_headers())
    return JsonReply(message(answer), headers=_headers())


async def _messages(request: web.Request) -> web.StreamResponse:
    denied = check_headers(request)
    if denied is not None:
        return json_response(denied)
    try:
        body = await read_json(request, "There was an issue with your request body: invalid JSON")
        reply = messages_reply(body)
    except BadRequest as exc:
        return json_response(error_reply(400, exc.message))
    return await respond(request, PROVIDER, body["model"], reply, error_reply)


async def _count_tokens(request: web.Request) -> web.StreamResponse:
    denied = check_headers(request)
    if denied is not None:
        return json_response(denied)
    try:
        body = await read_json(request, "There was an issue with your request body: invalid JSON")
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise BadRequest("messages: Field required")
    except BadRequest as exc:
        return json_response(error_reply(400, exc.message))
    tokens = c.prompt_tokens(messages, body.get("system"))
    return json_response(JsonReply({"input_tokens": tokens}, headers=_headers()))


async def _models(request: web.Request) -> web.StreamResponse:
    denied = check_headers(request)
    if denied is not None:
        return json_response(denied)
    data = [
        {"type": "model", "id": mid, "display_name": name, "created_at": "2025-08-05T00:00:00Z"} for mid, name in MODELS
    ]
    body = {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
    return json_response(JsonReply(body, headers=_headers()))


async def _not_found(request: web.Request) -> web.StreamResponse:
    return json_response(error_reply(404, "Not Found"))


def create_app(middlewares: Iterable[Any] = ()) -> web.Application:
    """The Anthropic fake; its base URL is ``http://host:port`` (the SDK appends ``/v1/messages``)."""
    app = web.Application(middlewares=list(middlewares))
    app[FLAKY] = FlakyCounter()
    app.router.add_post("/v1/messages", _messages)
    app.router.add_post("/v1/messages/count_tokens", _count_tokens)
    app.router.add_get("/v1/models", _models)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app
