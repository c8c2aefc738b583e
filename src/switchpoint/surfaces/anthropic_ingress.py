"""`/compat/v1/messages`: the Anthropic Messages API in front of every model.

Anthropic SDK clients and coding agents keep their client and pick any model as `{provider}/{model}`;
Anthropic models are forwarded as they are, OpenAI-format ones translated both ways, streams included.
"""

from __future__ import annotations

from aiohttp import web

from switchpoint.errors import MethodNotAllowed
from switchpoint.exchange import Exchange, governance
from switchpoint.providers.base import Dialect
from switchpoint.surfaces.common import RUNTIME, json_object, serve_call
from switchpoint.surfaces.dynamic import PREFIX as DYNAMIC
from switchpoint.surfaces.dynamic import plan_dynamic
from switchpoint.surfaces.planning import CHAT, PLANS, Plan, compat_target


async def _plan(ex: Exchange, request: web.Request) -> web.StreamResponse:
    if request.method != "POST":
        raise MethodNotAllowed(f"{request.method} is not allowed here; use POST")
    registry = request.app[RUNTIME].registry
    plan = PLANS.get(registry, ex.account, CHAT, Dialect.ANTHROPIC, ex.body)
    if plan is None:
        obj = json_object(ex.body)
        ex.stream = obj.get("stream") is True
        if str(obj.get("model", "")).startswith(DYNAMIC):
            return await plan_dynamic(ex, request, obj, CHAT, Dialect.ANTHROPIC)
        plan = Plan(compat_target(registry, ex.account, obj, CHAT, client=Dialect.ANTHROPIC), ex.stream)
        PLANS.put(registry, ex.account, CHAT, Dialect.ANTHROPIC, ex.body, plan)
    target, ex.stream = plan
    ex.provider, ex.model = target.provider.name, target.model
    return await governance.governed_call(ex, request, target, "compat/anthropic")


async def messages(request: web.Request) -> web.StreamResponse:
    return await serve_call(request, "compat", "anthropic", _plan)
