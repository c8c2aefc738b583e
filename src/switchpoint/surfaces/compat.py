"""`/compat/chat/completions` and `/compat/embeddings`: one OpenAI-format endpoint for every provider.

`model` is `{provider}/{model}`, split on the first `/` (the body is forwarded with only `model` changed, or
translated when the provider speaks another format), or `dynamic/{route}`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from switchpoint.errors import MethodNotAllowed, NotFound
from switchpoint.exchange import Exchange, governance
from switchpoint.providers.base import Dialect
from switchpoint.surfaces.common import json_object, serve_call
from switchpoint.surfaces.dynamic import PREFIX as DYNAMIC
from switchpoint.surfaces.dynamic import plan_dynamic
from switchpoint.surfaces.planning import CHAT, EMBEDDINGS, PLANS, Plan, compat_target


async def planned_call(
    ex: Exchange, request: web.Request, kind: str, client: Dialect, surface: str
) -> web.StreamResponse:
    """A /compat call for a client speaking `client`: its plan (remembered by raw body, so a repeated
    request is neither parsed nor re-serialised), or a dynamic route's walk, then the governed call."""
    if request.method != "POST":
        raise MethodNotAllowed(f"{request.method} is not allowed here; use POST")
    registry = ex.runtime.registry  # the app's (`serve_call` built the exchange from it)
    plan = PLANS.get(registry, ex.account, kind, client, ex.body)
    if plan is None:
        obj = json_object(ex.body)
        ex.stream = obj.get("stream") is True
        if str(obj.get("model", "")).startswith(DYNAMIC):
            return await plan_dynamic(ex, request, obj, kind, client)
        plan = Plan(compat_target(registry, ex.account, obj, kind, client), ex.stream)
        PLANS.put(registry, ex.account, kind, client, ex.body, plan)
    target, ex.stream = plan
    ex.provider, ex.model = target.provider.name, target.model
    return await governance.governed_call(ex, request, target, surface)


def _planner(kind: str) -> Any:
    async def plan(ex: Exchange, request: web.Request) -> web.StreamResponse:
        return await planned_call(ex, request, kind, Dialect.OPENAI, "compat/openai")

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
