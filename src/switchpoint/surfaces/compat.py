"""`/compat/chat/completions` and `/compat/embeddings`: one OpenAI-format endpoint for every provider.

`model` is `{provider}/{model}`, split on the first `/`; the body is forwarded with only `model` changed.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from switchpoint.errors import BadRequest, InvalidProvider, MethodNotAllowed, NotFound, UnsupportedRoute
from switchpoint.exchange import Exchange, Target, attempt, relay
from switchpoint.providers.base import Dialect, Provider
from switchpoint.providers.registry import Registry
from switchpoint.surfaces.common import RUNTIME, json_object, serve_call

CHAT = "chat"
EMBEDDINGS = "embeddings"


def resolve_model(registry: Registry, model: Any) -> tuple[Provider, str]:
    """`workers-ai/@cf/moonshotai/kimi-k2.5` → (workers-ai, `@cf/moonshotai/kimi-k2.5`)."""
    if not isinstance(model, str) or not model:
        raise BadRequest("Missing required parameter: 'model' (a string such as 'openai/gpt-4o-mini')")
    prefix, sep, upstream_model = model.partition("/")
    if prefix == "dynamic":
        raise InvalidProvider(f"Dynamic route '{upstream_model}' is not deployed on this gateway")
    provider = registry.for_compat(prefix)
    if provider is None or not sep or not upstream_model:
        raise InvalidProvider(
            f"Invalid provider in model '{model}': expected '{{provider}}/{{model}}' with a known provider"
        )
    return provider, upstream_model


def compat_target(registry: Registry, account: str, obj: dict[str, Any], kind: str) -> Target:
    """Plan one /compat request: pick the provider, rewrite `model`, choose the provider's path."""
    provider, upstream_model = resolve_model(registry, obj.get("model"))
    if provider.dialect is not Dialect.OPENAI:
        raise UnsupportedRoute(
            f"'{provider.name}' speaks its own format and /compat cannot translate it yet; "
            f"call /{provider.name}/v1/messages directly"
        )
    path = provider.compat_chat_path if kind == CHAT else provider.compat_embeddings_path
    if path is None:
        raise UnsupportedRoute(f"'{provider.name}' has no {kind} endpoint")
    obj["model"] = upstream_model
    return Target(
        provider=provider,
        url=provider.upstream_url(account, path),
        body=orjson.dumps(obj),
        model=upstream_model,
        path=path,
    )


def _planner(kind: str) -> Any:
    async def plan(ex: Exchange, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            raise MethodNotAllowed(f"{request.method} is not allowed here; use POST")
        obj = json_object(ex.body)
        ex.stream = obj.get("stream") is True
        target = compat_target(request.app[RUNTIME].registry, ex.account, obj, kind)
        ex.provider, ex.model = target.provider.name, target.model
        target, answer = await attempt(ex, request.headers, [(target, ex.options.retry)])
        try:
            return await relay(ex, request, target, answer)
        finally:
            answer.release()

    return plan


_PLAN_CHAT = _planner(CHAT)
_PLAN_EMBEDDINGS = _planner(EMBEDDINGS)


async def chat(request: web.Request) -> web.StreamResponse:
    return await serve_call(request, "compat", "openai", _PLAN_CHAT)


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await serve_call(request, "compat", "openai", _PLAN_EMBEDDINGS)


async def unknown(request: web.Request) -> web.StreamResponse:
    async def plan(ex: Exchange, request: web.Request) -> web.StreamResponse:
        raise NotFound(f"Unknown /compat path '{request.match_info['rest']}': use chat/completions or embeddings")

    return await serve_call(request, "compat", "openai", plan)
