"""`/compat/v1/messages`: the Anthropic Messages API in front of every model.

Anthropic SDK clients and coding agents keep their client and pick any model as `{provider}/{model}`;
Anthropic models are forwarded as they are, OpenAI-format ones translated both ways, streams included.
"""

from __future__ import annotations

from aiohttp import web

from switchpoint.errors import MethodNotAllowed
from switchpoint.exchange import Exchange, attempt, relay
from switchpoint.providers.base import Dialect
from switchpoint.surfaces.common import RUNTIME, json_object, serve_call
from switchpoint.surfaces.compat import CHAT, compat_target


async def _plan(ex: Exchange, request: web.Request) -> web.StreamResponse:
    if request.method != "POST":
        raise MethodNotAllowed(f"{request.method} is not allowed here; use POST")
    obj = json_object(ex.body)
    ex.stream = obj.get("stream") is True
    target = compat_target(request.app[RUNTIME].registry, ex.account, obj, CHAT, client=Dialect.ANTHROPIC)
    ex.provider, ex.model = target.provider.name, target.model
    target, answer = await attempt(ex, request.headers, [(target, ex.options.retry)])
    try:
        return await relay(ex, request, target, answer)
    finally:
        answer.release()


async def messages(request: web.Request) -> web.StreamResponse:
    return await serve_call(request, "compat", "anthropic", _plan)
