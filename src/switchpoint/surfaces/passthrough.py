"""`/{provider}/{rest}`: the client's request sent to the provider's own API, bytes in, bytes out.

One exception, on gateways with spend rules: an OpenAI-format chat stream that did not ask for usage is
sent asking for it (as /compat does), and the usage chunk is taken out of what the client gets, so the
budget is settled with the real cost and the client still gets the bytes it would have got.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from switchpoint.errors import InvalidProvider
from switchpoint.exchange import Exchange, Target, governance
from switchpoint.providers.base import Dialect, Provider
from switchpoint.surfaces.common import serve_call
from switchpoint.surfaces.planning import ask_for_stream_usage

# Only small JSON bodies are parsed: to name the model in the log, and to meter a budgeted stream.
_MODEL_PEEK_LIMIT = 1 << 20
_ASK_FOR_USAGE = b'{"stream_options":{"include_usage":true},'


def _peek_model(body: bytes, rest: str) -> tuple[str | None, bool, dict[str, Any] | None]:
    """The model (from the body, or a Workers AI `@cf/` path), whether a stream was asked for, and the
    body's JSON object when it was one."""
    model: str | None = None
    stream = False
    obj: Any = None
    if body[:1] == b"{" and len(body) <= _MODEL_PEEK_LIMIT:
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            value = obj.get("model")
            model = value if isinstance(value, str) else None
            stream = obj.get("stream") is True
    if model is None and "@" in rest:
        model = rest[rest.index("@") :]
    return model, stream, obj


def _metered_body(ex: Exchange, provider: Provider, rest: str, obj: dict[str, Any]) -> bytes | None:
    """The body asking for stream usage, when this stream is under a spend rule, speaks OpenAI's chat
    format and did not ask for usage itself; else None (the body goes as it came)."""
    if provider.dialect is not Dialect.OPENAI or not rest.endswith("chat/completions"):
        return None
    if not ex.runtime.limits.spend_applies(
        ex.gateway_id, ex.gateway.spend_limits, provider.name, ex.model, ex.options.metadata
    ):
        return None
    if "stream_options" not in obj:  # the usual case: prepended, every byte the client sent kept
        return _ASK_FOR_USAGE + ex.body[1:]
    return orjson.dumps(obj) if ask_for_stream_usage(obj) else None


async def _plan(ex: Exchange, request: web.Request) -> web.StreamResponse:
    runtime = ex.runtime  # the app's (`serve_call` built the exchange from it)
    slug = request.match_info["provider"]
    provider = runtime.registry.get(slug)
    if provider is None:
        raise InvalidProvider(f"Invalid provider: '{slug}'")
    raw_path, _, raw_query = request.raw_path.partition("?")
    rest = raw_path.split("/", 5)[5] if raw_path.count("/") >= 5 else ""  # as sent, still percent-encoded
    ex.provider = provider.name
    ex.model, ex.stream, obj = _peek_model(ex.body, rest)
    url = provider.upstream_url(ex.account, rest, raw_query)
    body = None
    if ex.stream and ex.gateway.spend_limits and obj is not None:
        body = _metered_body(ex, provider, rest, obj)
    if body is None:
        target = Target(provider=provider, url=url, body=ex.body, model=ex.model, path=rest)
    else:
        target = Target(provider=provider, url=url, body=body, model=ex.model, path=rest, strip_usage=True)
    return await governance.governed_call(ex, request, target, "passthrough", raw_query)


async def handle(request: web.Request) -> web.StreamResponse:
    return await serve_call(request, "passthrough", "cloudflare", _plan)
