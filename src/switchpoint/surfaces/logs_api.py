"""The logs and analytics admin API, shaped after Cloudflare's logs API, behind the admin token.

    GET    /client/v4/accounts/{account}/ai-gateway/gateways/{gateway}/logs          list (filters, cursor)
    DELETE .../gateways/{gateway}/logs                                                delete by the same filters
    GET    .../gateways/{gateway}/logs/{id}                                           one record, bodies included
    PATCH  .../gateways/{gateway}/logs/{id}                                           {feedback, score, metadata}
    GET    .../gateways/{gateway}/logs/{id}/request | /response                      one body
    GET    .../gateways/{gateway}/analytics                                           time buckets (below)

Gateway `*` means every gateway. Bodies use the v4 envelope `{success, result, result_info?, errors,
messages}`; errors carry code 10000 (admin token), 2001 (unknown gateway), 7001 (bad parameter), 7404 (no
such log, or its payload was not collected) or 7503 (log store unavailable).

List parameters (Cloudflare's names): start_date, end_date (ISO-8601 or Unix seconds); provider, model,
status, success, cached, stream, event_id, id, feedback (1 up, -1 or 0 down), gateway, metadata.<key>
(repeat one to match any value); min_/max_ cost, duration, ttfb, tokens_in, tokens_out, total_tokens, score;
filters = JSON [{key, operator: eq|neq|contains|lt|gt, value: [...]}]; order_by (created_at, provider,
model, success, cached, cost, duration, ttfb, status_code), order_by_direction (asc|desc, default desc);
per_page (default 20, max 1000); page, or cursor (from result_info.cursor, created_at order only);
meta_info=true adds total_count and min/max of cost, duration and tokens (one more query over the range).
DELETE takes the same filters plus limit (and order_by/order_by_direction to say which go first).

Analytics parameters: start_date, end_date (default: the last 24 hours), interval (minute, hour, day, week
or seconds; default: about 300 buckets or fewer), group_by (provider, model, gateway or metadata.<key>), and
any list filter. Result: `{start, end, interval, group_by, buckets: [{start, group, requests, errors,
cached, cache_hit_ratio, tokens_in, tokens_out, cost, duration_p50, duration_p95, ttfb_p50, ttfb_p95}],
totals: {requests, errors, cached, cache_hit_ratio, tokens_in, tokens_out, cost}}`; empty buckets are
left out, latencies are milliseconds (ttfb only over records that have one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import orjson
from aiohttp import web

from switchpoint import auth
from switchpoint.errors import BadRequest, GatewayError, NotFound, Unauthorized, UnknownGateway
from switchpoint.surfaces.common import JSON, RUNTIME, resolve_gateway

PREFIX = "/client/v4/accounts/{account}/ai-gateway/gateways/{gateway}"
ALL_GATEWAYS = "*"
AUTH_CODE = 10000
UNKNOWN_GATEWAY_CODE = 2001
VALIDATION_CODE = 7001
NOT_FOUND_CODE = 7404
UNAVAILABLE_CODE = 7503

Pairs = Sequence[tuple[str, str]]


class LogStore(Protocol):
    """What the API needs from the log store (implemented by `analytics.SqlLogStore`). `gateway` None means
    every gateway. Raises `BadRequest` for bad parameters, `NotFound` for a missing log or body, and any
    other `GatewayError` (status 503) when the store cannot be reached."""

    async def list_logs(self, gateway: str | None, params: Pairs) -> tuple[list[dict[str, Any]], dict[str, Any]]: ...
    async def get_log(self, gateway: str | None, log_id: str) -> dict[str, Any]: ...
    async def get_body(self, gateway: str | None, log_id: str, which: str) -> Any: ...
    async def patch_log(self, gateway: str | None, log_id: str, body: Any) -> dict[str, Any]: ...
    async def delete_logs(self, gateway: str | None, params: Pairs) -> int: ...
    async def analytics(self, gateway: str | None, params: Pairs) -> dict[str, Any]: ...


LOG_STORE: web.AppKey[LogStore] = web.AppKey("log_store")


def _respond(result: Any, status: int = 200, errors: list[dict[str, Any]] | None = None, **extra: Any) -> web.Response:
    body = {"success": status < 400, "result": result, **extra, "errors": errors or [], "messages": []}
    return web.Response(status=status, body=orjson.dumps(body), content_type=JSON)


def _failure(err: GatewayError) -> web.Response:
    status = err.status
    if isinstance(err, Unauthorized):
        code = AUTH_CODE
    elif isinstance(err, UnknownGateway):
        code, status = UNKNOWN_GATEWAY_CODE, 404
    elif isinstance(err, NotFound):
        code = NOT_FOUND_CODE
    elif isinstance(err, BadRequest):
        code = VALIDATION_CODE
    else:
        code = UNAVAILABLE_CODE
    return _respond(None, status, [{"code": code, "message": err.message}])


Handler = Callable[[web.Request, LogStore, "str | None"], Awaitable[web.Response]]


def _endpoint(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Check the admin token, resolve the gateway (`*`: all), map every `GatewayError` to the envelope."""

    async def endpoint(request: web.Request) -> web.Response:
        runtime = request.app[RUNTIME]
        try:
            auth.check_admin(runtime.config.admin_token, request.headers.get("Authorization"))
            gateway: str | None = request.match_info["gateway"]
            if gateway == ALL_GATEWAYS:
                gateway = None
            else:
                resolve_gateway(runtime, request.match_info["account"], str(gateway))
            return await handler(request, request.app[LOG_STORE], gateway)
        except GatewayError as err:
            return _failure(err)

    endpoint.__name__ = handler.__name__
    return endpoint


def _query(request: web.Request) -> list[tuple[str, str]]:
    return list(request.query.items())


@_endpoint
async def list_logs(request: web.Request, store: LogStore, gateway: str | None) -> web.Response:
    """List records matching the query's filters, one page."""
    rows, info = await store.list_logs(gateway, _query(request))
    return _respond(rows, result_info=info)


@_endpoint
async def delete_logs(request: web.Request, store: LogStore, gateway: str | None) -> web.Response:
    """Delete records matching the query's filters."""
    return _respond({"deleted": await store.delete_logs(gateway, _query(request))})


@_endpoint
async def get_log(request: web.Request, store: LogStore, gateway: str | None) -> web.Response:
    """One record with its bodies."""
    return _respond(await store.get_log(gateway, request.match_info["log_id"]))


@_endpoint
async def patch_log(request: web.Request, store: LogStore, gateway: str | None) -> web.Response:
    """Set feedback, score and/or metadata on one record."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    return _respond(await store.patch_log(gateway, request.match_info["log_id"], body))


@_endpoint
async def get_request(request: web.Request, store: LogStore, gateway: str | None) -> web.Response:
    """The request body of one record."""
    return _respond(await store.get_body(gateway, request.match_info["log_id"], "request"))


@_endpoint
async def get_response(request: web.Request, store: LogStore, gateway: str | None) -> web.Response:
    """The response body of one record."""
    return _respond(await store.get_body(gateway, request.match_info["log_id"], "response"))


@_endpoint
async def analytics(request: web.Request, store: LogStore, gateway: str | None) -> web.Response:
    """Time-bucketed analytics for the gateway."""
    return _respond(await store.analytics(gateway, _query(request)))


LOGS_ROUTES: list[tuple[str, str, Callable[[web.Request], Awaitable[web.Response]]]] = [
    ("GET", PREFIX + "/logs", list_logs),
    ("DELETE", PREFIX + "/logs", delete_logs),
    ("GET", PREFIX + "/logs/{log_id}", get_log),
    ("PATCH", PREFIX + "/logs/{log_id}", patch_log),
    ("GET", PREFIX + "/logs/{log_id}/request", get_request),
    ("GET", PREFIX + "/logs/{log_id}/response", get_response),
    ("GET", PREFIX + "/analytics", analytics),
]
