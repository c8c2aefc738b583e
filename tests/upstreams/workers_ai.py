"""A fake Cloudflare Workers AI REST API: ``run/@cf/...`` in the v4 envelope, plus its OpenAI-style ``v1``.

Legacy models answer ``{"result": {"response": ...}}``; models whose id contains ``kimi`` or ``gpt-oss``
answer with an OpenAI ``chat.completion`` (reasoning included, usage on every stream chunk).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from . import content as c
from . import openai
from .content import JSON
from .scenarios import FlakyCounter
from .wire import FLAKY, BadRequest, JsonReply, Reply, StreamReply, json_response, read_json, respond, sse

PROVIDER = "workers-ai"
PREFIX = "/client/v4/accounts/{account_id}/ai"
OPENAI_STYLE = openai.Flavor(reasoning=True, usage_every_chunk=True, openai_extras=False)
COMPATIBLE = openai.Flavor(openai_extras=False)
INVALID_JSON = "Invalid JSON in request body"
_CODES = {400: 5004, 401: 10000, 403: 5016, 404: 3042, 405: 5019, 408: 3007, 413: 3006, 429: 3040}
_MESSAGES = {5004: "Invalid data", 3040: "Capacity temporarily exceeded", 3043: "Internal error"}


def envelope_error(status: int, message: str, code: int | None = None) -> JsonReply:
    """A failure in Cloudflare's v4 envelope."""
    code = code or _CODES.get(status, 3043)
    body = {"result": None, "success": False, "errors": [{"code": code, "message": message}], "messages": []}
    return JsonReply(body, status=status, headers=_headers())


def scenario_error(status: int, message: str) -> JsonReply:
    code = _CODES.get(status, 3043)
    return envelope_error(status, f"{_MESSAGES.get(code, 'Error')}: {message}", code)


def _headers() -> dict[str, str]:
    return {"cf-ray": c.new_id("", 16) + "-SJC", "cf-ai-req-id": c.new_id("", 32)}


def _ok(result: Any) -> JSON:
    return {"result": result, "success": True, "errors": [], "messages": []}


def is_openai_style(model: str) -> bool:
    return "kimi" in model or "gpt-oss" in model


def is_embedding_model(model: str) -> bool:
    return "bge" in model or "embed" in model


def check_model(model: Any) -> str:
    """The model id, or ``BadRequest`` code 5007 when the catalog has no such model."""
    if not isinstance(model, str) or not model:
        raise BadRequest("Invalid data: required property 'model' is missing", code="5004")
    if not model.startswith(("@cf/", "@hf/")) or model.rsplit("/", 1)[-1].startswith("unknown"):
        raise BadRequest(f"No such model {model} or task", code="5007")
    return model


def _check_auth(request: web.Request) -> JsonReply | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and key.strip() and not key.strip().startswith("invalid"):
        return None
    return envelope_error(401, "Authentication error", 10000)


def _legacy_tools(body: JSON) -> list[JSON]:
    tools = body.get("tools")
    if not isinstance(tools, list):
        return []
    specs = [t.get("function", t) for t in tools if isinstance(t, dict)]
    return [s for s in specs if isinstance(s, dict) and s.get("name")][:2]


def _legacy(body: JSON) -> Reply:
    messages = body.get("messages")
    if not isinstance(messages, list):
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise BadRequest("Invalid data: required properties at '/' are 'prompt' or 'messages'", code="5004")
        messages = [{"role": "user", "content": prompt}]
    user_text = c.last_user_text(messages)
    tools = [] if c.is_tool_result_turn(messages) else _legacy_tools(body)
    calls = [{"name": t["name"], "arguments": c.tool_arguments(t.get("parameters"), user_text)} for t in tools]
    text = [] if calls else c.pieces(c.reply_text(messages))
    limit = body.get("max_tokens")
    if isinstance(limit, int) and 0 < limit < len(text):
        text = text[:limit]
    prompt_tokens = c.prompt_tokens(messages)
    completion = len(text) + sum(len(c.json_pieces(c.dumps(call["arguments"]))) for call in calls)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }
    if body.get("stream") is not True:
        result: JSON = {"response": "".join(text)}
        if calls:
            result["tool_calls"] = calls
        return JsonReply(_ok({**result, "usage": usage}), headers=_headers())
    events = [sse({"response": piece}) for piece in text]
    if calls:
        events.append(sse({"response": "", "tool_calls": calls}))
    events += [sse({"response": "", "tool_calls": [], "usage": usage}), sse("[DONE]")]
    return StreamReply(events, headers=_headers())


def _embedding_result(body: JSON, model: str) -> JSON:
    text = body.get("text")
    texts = [text] if isinstance(text, str) else text
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadRequest("Invalid data: required properties at '/' are 'text'", code="5004")
    size = openai.default_dimensions(model)
    data = [c.embedding_of(t, size) for t in texts]
    return {"shape": [len(data), size], "data": data, "pooling": "mean"}


def run_reply(model: str, body: JSON) -> Reply:
    """The answer of ``POST run/{model}`` for any supported model kind."""
    if is_embedding_model(model):
        return JsonReply(_ok(_embedding_result(body, model)), headers=_headers())
    if not is_openai_style(model):
        return _legacy(body)
    if not isinstance(body.get("messages"), list) and isinstance(body.get("prompt"), str):
        body = {**body, "messages": [{"role": "user", "content": body["prompt"]}]}
    request_body = {**body, "model": model}
    reply = openai.chat_reply(request_body, OPENAI_STYLE, headers=_headers(), indent=None)
    if isinstance(reply, JsonReply):
        reply.body = _ok(reply.body)
    return reply


def _bad_request(exc: BadRequest) -> JsonReply:
    code = int(exc.code) if exc.code and exc.code.isdigit() else 5004
    return envelope_error(400, exc.message, code)


async def _run(request: web.Request) -> web.StreamResponse:
    denied = _check_auth(request)
    if denied is not None:
        return json_response(denied)
    try:
        model = check_model(request.match_info["model"])
        body = await read_json(request, INVALID_JSON)
        reply = run_reply(model, body)
    except BadRequest as exc:
        return json_response(_bad_request(exc))
    return await respond(request, PROVIDER, model, reply, scenario_error)


async def _chat(request: web.Request) -> web.StreamResponse:
    denied = _check_auth(request)
    if denied is not None:
        return json_response(denied)
    try:
        body = await read_json(request, INVALID_JSON)
        model = check_model(body.get("model"))
        flavor = OPENAI_STYLE if is_openai_style(model) else COMPATIBLE
        reply = openai.chat_reply(body, flavor, headers=_headers(), indent=None)
    except BadRequest as exc:
        return json_response(_bad_request(exc))
    return await respond(request, PROVIDER, model, reply, scenario_error)


async def _embeddings(request: web.Request) -> web.StreamResponse:
    denied = _check_auth(request)
    if denied is not None:
        return json_response(denied)
    try:
        body = await read_json(request, INVALID_JSON)
        model = check_model(body.get("model"))
        reply = JsonReply(openai.embeddings(body), headers=_headers())
    except BadRequest as exc:
        return json_response(_bad_request(exc))
    return await respond(request, PROVIDER, model, reply, scenario_error)


async def _not_found(request: web.Request) -> web.StreamResponse:
    message = f"Could not route to {request.path}, perhaps your object identifier is invalid?"
    return json_response(envelope_error(404, message, 7003))


def create_app(middlewares: Iterable[Any] = ()) -> web.Application:
    """The Workers AI fake; its base URL is ``http://host:port/client/v4/accounts/{account_id}/ai/``."""
    app = web.Application(middlewares=list(middlewares))
    app[FLAKY] = FlakyCounter()
    app.router.add_post(PREFIX + "/run/{model:.+}", _run)
    app.router.add_post(PREFIX + "/v1/chat/completions", _chat)
    app.router.add_post(PREFIX + "/v1/embeddings", _embeddings)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app
