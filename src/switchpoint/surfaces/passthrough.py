"""`/{provider}/{rest}`: the client's request sent to the provider's own API, bytes in, bytes out."""

from __future__ import annotations

import orjson
from aiohttp import web

from switchpoint.errors import InvalidProvider
from switchpoint.exchange import Exchange, Target, governance
from switchpoint.surfaces.common import serve_call

# Only small JSON bodies are parsed, and only to name the model in the log.
_MODEL_PEEK_LIMIT = 1 << 20


def _peek_model(body: bytes, rest: str) -> tuple[str | None, bool]:
    """The model (from the body, or a Workers AI `@cf/` path) and whether a stream was asked for."""
    model: str | None = None
    stream = False
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
    return model, stream


async def _plan(ex: Exchange, request: web.Request) -> web.StreamResponse:
    runtime = ex.runtime  # the app's (`serve_call` built the exchange from it)
    slug = request.match_info["provider"]
    provider = runtime.registry.get(slug)
    if provider is None:
        raise InvalidProvider(f"Invalid provider: '{slug}'")
    raw_path, _, raw_query = request.raw_path.partition("?")
    rest = raw_path.split("/", 5)[5] if raw_path.count("/") >= 5 else ""  # as sent, still percent-encoded
    ex.provider = provider.name
    ex.model, ex.stream = _peek_model(ex.body, rest)
    url = provider.upstream_url(ex.account, rest, raw_query)
    target = Target(provider=provider, url=url, body=ex.body, model=ex.model, path=rest)
    return await governance.governed_call(ex, request, target, "passthrough", raw_query)


async def handle(request: web.Request) -> web.StreamResponse:
    return await serve_call(request, "passthrough", "cloudflare", _plan)
