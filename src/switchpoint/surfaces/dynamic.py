"""`model: "dynamic/{route}"` on /compat: walk the deployed route, sending each model step it reaches.

The route decides (conditions, splits, limits, fallbacks); this module only turns each model step into a
planned /compat target and hands the winning answer to the relay. The gateway's response cache and spend
rules hold for these calls as for any other: a cache hit answers before the walk (no route node counts
it), and the first model step reserves the budget, settled with the cost of whichever model answered.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from aiohttp import web

from switchpoint.errors import InvalidProvider
from switchpoint.exchange import Exchange, Target, governance, relay, upstream_headers
from switchpoint.exchange.caching import run_cached, whole_call_key
from switchpoint.providers.base import Dialect
from switchpoint.routing.attempts import RetryPolicy
from switchpoint.routing.compile import CompiledRoute, ModelStep
from switchpoint.routing.conditions import RouteRequest
from switchpoint.routing.evaluate import RouteFailed, run_route
from switchpoint.surfaces.planning import compat_target
from switchpoint.upstream import UpstreamAnswer

PREFIX = "dynamic/"


async def plan_dynamic(
    ex: Exchange, request: web.Request, obj: dict[str, Any], kind: str, client: Dialect
) -> web.StreamResponse:
    name = str(obj["model"])[len(PREFIX) :]
    route = ex.runtime.routes.get(ex.gateway_id, name)
    if route is None:
        raise InvalidProvider(f"Dynamic route '{name}' is not deployed on gateway '{ex.gateway_id}'")
    ex.route = f"{name}@{route.version_id}" if route.version_id else name

    async def run() -> web.StreamResponse:
        return await _walk(ex, request, route, obj, kind, client)

    surface = "compat/dynamic/" + client.value
    return await run_cached(ex, request, lambda: whole_call_key(ex, request.headers, surface, str(ex.route)), run)


async def _walk(
    ex: Exchange, request: web.Request, route: CompiledRoute, obj: dict[str, Any], kind: str, client: Dialect
) -> web.StreamResponse:
    runtime = ex.runtime
    targets: dict[str, Target] = {}
    budgeted = bool(ex.gateway.spend_limits)

    def send(step: ModelStep, policy: RetryPolicy) -> Awaitable[UpstreamAnswer]:
        """Plan the step (once per element) and start the attempt. Not a coroutine itself: the walk awaits
        `open` directly, one frame fewer to resume when the answer's head arrives."""
        target = targets.get(step.element_id)
        if target is None:
            planned = {**obj, "model": f"{step.provider}/{step.model}"}  # compat_target rewrites its input
            target = targets[step.element_id] = compat_target(runtime.registry, ex.account, planned, kind, client)
        ex.provider, ex.model = target.provider.name, target.model
        ex.attempts += 1
        if budgeted and ex.reservation is None:
            return _reserve_then_open(ex, request, target, policy)
        headers = upstream_headers(ex, request.headers, target)
        return runtime.upstream.open("POST", target.url, headers, target.body, policy.first_byte_timeout_ms)

    facts = RouteRequest(ex.options.metadata or {}, request.headers, obj)
    try:
        outcome = await run_route(route, facts, send, runtime.limiter, defaults=ex.options.retry)
    except RouteFailed as exc:
        ex.route_path = exc.path  # the log shows how far a failed walk got
        raise
    ex.route_path, ex.route_charges = outcome.path, outcome.charges
    target = targets[outcome.step.element_id]
    ex.provider, ex.model = target.provider.name, target.model
    try:
        return await relay(ex, request, target, outcome.answer)
    finally:
        outcome.answer.release()


async def _reserve_then_open(ex: Exchange, request: web.Request, target: Target, policy: RetryPolicy) -> UpstreamAnswer:
    """The first attempt of a budgeted call: hold its expected cost (429/2041 when a spend rule is spent,
    which ends the walk: the gateway's rules bind every model), then send."""
    reserving = governance.reserve_budget(ex, target)
    if reserving is not None:
        await reserving
    headers = upstream_headers(ex, request.headers, target)
    return await ex.runtime.upstream.open("POST", target.url, headers, target.body, policy.first_byte_timeout_ms)
