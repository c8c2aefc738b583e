"""A fake OpenAI API (chat completions with text, tools, streaming; embeddings; models) on the exact wire.

The chat and embeddings builders are plain functions of the request body, reused by the Workers AI fake.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import content as c
from .content import JSON
from .scenarios import FlakyCounter
from .wire import FLAKY, BadRequest, JsonReply, Reply, StreamReply, json_response, read_json, respond, sse

PROVIDER = "openai"
INVALID_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
    "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. "
    "If you have trouble figuring out how to fix this, please contact us through our help center at "
    "help.openai.com.)"
)
MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o4-mini", "text-embedding-3-small")
_DIMENSIONS = {"3-large": 3072, "3-small": 1536, "ada-002": 1536, "bge-large": 1024, "bge-base": 768}
_ERROR_KINDS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass(frozen=True)
class Flavor:
    """Chat format variants: Workers AI's OpenAI-style models add reasoning and usage on every chunk."""

    reasoning: bool = False
    usage_every_chunk: bool = False
    openai_extras: bool = True  # service_tier, system_fingerprint, obfuscation, usage details


OPENAI = Flavor()


@dataclass
class Turn:
    """What the fake model answers for one request, before it is framed as JSON or SSE."""

    model: str
    text_pieces: list[str]
    calls: list[tuple[str, str, str]]  # (call id, function name, arguments JSON)
    reasoning_pieces: list[str]
    finish_reason: str
    prompt_tokens: int
    id: str = field(default_factory=lambda: c.new_id("chatcmpl-", 29))
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def completion_tokens(self) -> int:
        args = sum(len(c.json_pieces(arguments)) for _, _, arguments in self.calls)
        return len(self.text_pieces) + len(self.reasoning_pieces) + args


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> JSON:
    kind, default_code = _ERROR_KINDS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": kind, "param": param, "code": code or default_code}}


def error_reply(status: int, message: str) -> JsonReply:
    return JsonReply(error_body(status, message), status=status, headers=_headers(), indent=2)


def _headers() -> dict[str, str]:
    return {
        "x-request-id": c.new_id("req_", 32),
        "openai-version": "2020-10-01",
        "openai-organization": "user-fake",
        "openai-processing-ms": "3",
    }


def check_auth(request: web.Request) -> JsonReply | None:
    """401 unless ``Authorization: Bearer <key>``; any non-empty key passes unless it starts ``invalid``."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        message = (
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    elif key.startswith("invalid"):
        message = (
            f"Incorrect API key provided: {key[:8]}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )
    else:
        return None
    return JsonReply(error_body(401, message, code="invalid_api_key"), status=401, headers=_headers(), indent=2)


def _function_tools(body: JSON) -> list[JSON]:
    tools = body.get("tools")
    if not isinstance(tools, list) or body.get("tool_choice") == "none":
        return []
    functions = [t["function"] for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        functions = [f for f in functions if f.get("name") == choice["function"].get("name")]
    if body.get("parallel_tool_calls") is False or isinstance(choice, dict):
        return functions[:1]
    return functions[:2]


def _max_tokens(body: JSON) -> int | None:
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    return limit if isinstance(limit, int) and limit > 0 else None


def plan_turn(body: JSON, flavor: Flavor = OPENAI) -> Turn:
    """Validate a chat request and decide the answer: tool calls when tools are offered, else echoed text."""
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter")
    if not isinstance(messages, list):
        raise BadRequest("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
    if not messages:
        raise BadRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "messages",
            "empty_array",
        )
    user_text = c.last_user_text(messages)
    reasoning = c.pieces(f"Thinking about: {user_text}") if flavor.reasoning else []
    tools = [] if c.is_tool_result_turn(messages) else _function_tools(body)
    calls = [
        (c.new_id("call_"), str(t.get("name", "")), c.dumps(c.tool_arguments(t.get("parameters"), user_text)))
        for t in tools
    ]
    text = [] if calls else c.pieces(c.reply_text(messages))
    limit, finish = _max_tokens(body), "tool_calls" if calls else "stop"
    if limit is not None and len(text) > limit:
        text, finish = text[:limit], "length"
    return Turn(model, text, calls, reasoning, finish, c.prompt_tokens(messages))


def usage(turn: Turn, flavor: Flavor = OPENAI, completion: int | None = None) -> JSON:
    done = turn.completion_tokens if completion is None else completion
    body: JSON = {"prompt_tokens": turn.prompt_tokens, "completion_tokens": done}
    body["total_tokens"] = turn.prompt_tokens + done
    if flavor.openai_extras or completion is None:
        body["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
        body["completion_tokens_details"] = {
            "reasoning_tokens": len(turn.reasoning_pieces),
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return body


def _envelope(turn: Turn, obj: str, flavor: Flavor) -> JSON:
    head: JSON = {"id": turn.id, "object": obj, "created": turn.created, "model": turn.model}
    if flavor.openai_extras:
        head["service_tier"] = "default"
        head["system_fingerprint"] = "fp_fake0001"
    return head


def completion(turn: Turn, flavor: Flavor = OPENAI) -> JSON:
    """The non-streaming ``chat.completion`` object."""
    message: JSON = {"role": "assistant", "content": "".join(turn.text_pieces) if not turn.calls else None}
    if flavor.reasoning:
        message["reasoning_content"] = "".join(turn.reasoning_pieces)
    if turn.calls:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            for cid, name, args in turn.calls
        ]
    message["refusal"] = None
    message["annotations"] = []
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": turn.finish_reason}
    return {**_envelope(turn, "chat.completion", flavor), "choices": [choice], "usage": usage(turn, flavor)}


def _deltas(turn: Turn) -> Iterable[JSON]:
    first: JSON = {"role": "assistant", "content": None if turn.calls else ""}
    inline_head = bool(turn.calls) and not turn.reasoning_pieces  # OpenAI opens the first call in chunk one
    if inline_head:
        cid, name, _ = turn.calls[0]
        first["tool_calls"] = [_call_head(0, cid, name)]
    first["refusal"] = None
    yield first
    for piece in turn.reasoning_pieces:
        yield {"reasoning_content": piece}
    for piece in turn.text_pieces:
        yield {"content": piece}
    for index, (cid, name, args) in enumerate(turn.calls):
        if index or not inline_head:
            yield {"tool_calls": [_call_head(index, cid, name)]}
        for piece in c.json_pieces(args):
            yield {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}


def _call_head(index: int, cid: str, name: str) -> JSON:
    return {"index": index, "id": cid, "type": "function", "function": {"name": name, "arguments": ""}}


def chunks(turn: Turn, body: JSON, flavor: Flavor = OPENAI) -> list[bytes]:
    """The SSE events of a streamed completion, ``data: [DONE]`` included."""
    options = c.obj(body.get("stream_options"))
    include_usage = bool(options.get("include_usage")) and not flavor.usage_every_chunk
    obfuscate = flavor.openai_extras and options.get("include_obfuscation", True) is not False
    head = _envelope(turn, "chat.completion.chunk", flavor)
    deltas = list(_deltas(turn))
    usage_field = include_usage or flavor.usage_every_chunk  # OpenAI sends "usage": null until the last chunk
    events: list[bytes] = []

    def emit(choices: list[JSON], usage_value: JSON | None, with_usage: bool) -> None:
        chunk: JSON = {**head, "choices": choices}
        if with_usage:
            chunk["usage"] = usage_value
        if obfuscate:
            chunk["obfuscation"] = c.new_id("", 4 + len(events) % 9)
        events.append(sse(chunk))

    for done, delta in enumerate(deltas):
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        so_far = min(done, turn.completion_tokens)
        emit([choice], usage(turn, flavor, so_far) if flavor.usage_every_chunk else None, usage_field)
    final = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": turn.finish_reason}
    emit(
        [final],
        usage(turn, flavor, turn.completion_tokens) if flavor.usage_every_chunk else None,
        usage_field,
    )
    if include_usage:
        emit([], usage(turn, flavor), True)
    events.append(sse("[DONE]"))
    return events


def chat_reply(
    body: JSON, flavor: Flavor = OPENAI, headers: dict[str, str] | None = None, indent: int | None = 2
) -> Reply:
    """The whole answer to a chat request: a JSON completion, or SSE chunks when ``stream`` is true."""
    turn = plan_turn(body, flavor)
    extra = _headers() if headers is None else headers
    if body.get("stream") is True:
        return StreamReply(chunks(turn, body, flavor), headers=extra)
    return JsonReply(completion(turn, flavor), headers=extra, indent=indent)


def _embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) for v in value):
            return [c.dumps(value)]
        if all((isinstance(v, str) and v) or (isinstance(v, list) and v) for v in value):
            return [v if isinstance(v, str) else c.dumps(v) for v in value]
    if value is None:
        raise BadRequest("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    raise BadRequest(
        "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
    )


def default_dimensions(model: str) -> int:
    return next((dims for key, dims in _DIMENSIONS.items() if key in model), 16)


def embeddings(body: JSON) -> JSON:
    """The ``list`` of embeddings for a request; ``encoding_format: base64`` packs float32 little-endian."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter")
    texts = _embedding_inputs(body.get("input"))
    dims = body.get("dimensions")
    size = dims if isinstance(dims, int) and dims > 0 else default_dimensions(model)
    as_base64 = body.get("encoding_format") == "base64"
    data: list[JSON] = []
    for index, text in enumerate(texts):
        vector = c.embedding_of(text, size)
        encoded: Any = base64.b64encode(c.float32_bytes(vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(max(c.count_tokens(t), 1) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _bad_request(exc: BadRequest) -> JsonReply:
    return JsonReply(error_body(400, exc.message, exc.param, exc.code), 400, _headers(), indent=2)


async def _chat(request: web.Request) -> web.StreamResponse:
    denied = check_auth(request)
    if denied is not None:
        return json_response(denied)
    try:
        body = await read_json(request, INVALID_JSON)
        reply = chat_reply(body)
    except BadRequest as exc:
        return json_response(_bad_request(exc))
    return await respond(request, PROVIDER, body["model"], reply, error_reply)


async def _embeddings(request: web.Request) -> web.StreamResponse:
    denied = check_auth(request)
    if denied is not None:
        return json_response(denied)
    try:
        body = await read_json(request, INVALID_JSON)
        reply = JsonReply(embeddings(body), headers=_headers(), indent=2)
    except BadRequest as exc:
        return json_response(_bad_request(exc))
    return await respond(request, PROVIDER, body["model"], reply, error_reply)


async def _models(request: web.Request) -> web.StreamResponse:
    denied = check_auth(request)
    if denied is not None:
        return json_response(denied)
    data = [{"id": m, "object": "model", "created": 1715367049, "owned_by": "system"} for m in MODELS]
    return json_response(JsonReply({"object": "list", "data": data}, headers=_headers(), indent=2))


async def _not_found(request: web.Request) -> web.StreamResponse:
    error = {"message": f"Invalid URL ({request.method} {request.path})", "type": "invalid_request_error"}
    return json_response(JsonReply({"error": {**error, "param": None, "code": None}}, 404, _headers(), 2))


def create_app(middlewares: Iterable[Any] = ()) -> web.Application:
    """The OpenAI fake; its base URL is ``http://host:port/v1``."""
    app = web.Application(middlewares=list(middlewares))
    app[FLAKY] = FlakyCounter()
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/v1/embeddings", _embeddings)
    app.router.add_get("/v1/models", _models)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app
