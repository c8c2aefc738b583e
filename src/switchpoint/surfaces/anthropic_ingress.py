"""`/compat/v1/messages`: the Anthropic Messages API in front of every model.

Anthropic SDK clients and coding agents keep their client and pick any model as `{provider}/{model}`;
Anthropic models are forwarded as they are, OpenAI-format ones translated both ways, streams included.
"""

from __future__ import annotations

from aiohttp import web

from switchpoint.exchange import Exchange
from switchpoint.providers.base import Dialect
from switchpoint.surfaces.common import serve_call
from switchpoint.surfaces.compat import planned_call
from switchpoint.surfaces.planning import CHAT


async def _plan(ex: Exchange, request: web.Request) -> web.StreamResponse:
    return await planned_call(ex, request, CHAT, Dialect.ANTHROPIC, "compat/anthropic")


async def messages(request: web.Request) -> web.StreamResponse:
    return await serve_call(request, "compat", "anthropic", _plan)
