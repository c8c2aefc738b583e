"""What every surface shares: the runtime key, body reading, gateway lookup, error rendering, the call frame.

`serve_call` is the frame each surface handler runs in: it turns every `GatewayError` into a body in the
client's dialect and makes sure each call that got past authentication leaves exactly one log record.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from switchpoint.cache import cache_directive
from switchpoint.config import GatewayConfig
from switchpoint.errors import BadRequest, GatewayError, PayloadTooLarge, UnknownGateway
from switchpoint.exchange import (
    Exchange,
    Runtime,
    authenticate,
    default_options,
    gateway_headers,
    governance,
    parse_options,
)
from switchpoint.formats import anthropic, cloudflare, openai
from switchpoint.limits import RateLimitExceeded

RUNTIME = web.AppKey("runtime", Runtime)
JSON = "application/json"

Plan = Callable[[Exchange, web.Request], Awaitable[web.StreamResponse]]


def render_error(err: GatewayError, dialect: str, ex: Exchange | None = None) -> web.Response:
    if dialect == "openai":
        body = openai.error_body(err.message, err.openai_type, err.cf_code)
    elif dialect == "anthropic":
        body = anthropic.error_body(err.status, err.message, err.cf_code)
    else:
        body = cloudflare.error_body(err.status, err.cf_code, err.message)
    headers: CIMultiDict[str] = CIMultiDict()
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, round(err.retry_after)))
    if isinstance(err, RateLimitExceeded):
        headers.update(err.headers())
    if ex is not None:
        gateway_headers(headers, ex)
    return web.Response(status=err.status, body=body, content_type=JSON, headers=headers)


def resolve_gateway(runtime: Runtime, account: str, gateway_id: str) -> GatewayConfig:
    gateway = runtime.config.gateways.get(gateway_id)
    if gateway is None or (gateway.account_id is not None and gateway.account_id != account):
        raise UnknownGateway(f"Gateway '{gateway_id}' is not configured")
    return gateway


async def read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"Request body is larger than the {limit}-byte limit")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"Request body is larger than the {limit}-byte limit") from None


def json_object(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Request body is not valid JSON: {exc.args[0]}") from None
    if not isinstance(value, dict):
        raise BadRequest("Request body must be a JSON object")
    return value


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


async def serve_call(request: web.Request, surface: str, dialect: str, plan: Plan) -> web.StreamResponse:
    """Resolve, authenticate and frame one call; `plan` does the surface-specific rest."""
    runtime = request.app[RUNTIME]
    match = request.match_info
    account, gateway_id = match["account"], match["gateway"]
    headers = request.headers
    ex: Exchange | None = None
    try:
        gateway = resolve_gateway(runtime, account, gateway_id)
        token_id = authenticate(runtime.snapshot, gateway_id, headers) if gateway.authentication else None
        ex = Exchange(
            runtime=runtime,
            gateway_id=gateway_id,
            gateway=gateway,
            account=account,
            surface=surface,
            method=request.method,
            path=request.path,
            options=default_options(gateway),
            client_dialect=dialect,
            user_agent=headers.get("user-agent"),
        )
        ex.token_id = token_id
        ex.options = parse_options(headers, gateway)
        ex.cache_directive = cache_directive(gateway, ex.method, headers)
        rate_limit = gateway.rate_limit
        if rate_limit is not None:
            limits = runtime.limits
            if limits.immediate:  # in-process counters answer at once: no coroutine for it
                ex.rate = limits.check_rate_now(gateway_id, rate_limit, token_id, ex.options.metadata)
            else:
                await governance.check_rate(ex)
        ex.body = await read_body(request, runtime.config.server.max_body_bytes)
        return await plan(ex, request)
    except GatewayError as err:
        if ex is not None:
            ex.status = err.status
            ex.error = err.message
            ex.error_kind = _snake(type(err).__name__)
        return render_error(err, dialect, ex)
    except (asyncio.CancelledError, ConnectionResetError):
        if ex is not None:
            ex.status, ex.error = 499, "client disconnected"
        raise
    finally:
        if ex is not None:
            governance.settle_budget(ex, ex.finish()["cost"])
