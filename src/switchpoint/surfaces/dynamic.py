"""`model: "dynamic/{route}"` on /compat: walk the deployed route, sending each model step it reaches.

The route decides (conditions, splits, limits, fallbacks); this module only turns each model step into a
planned /compat target and hands the winning answer to the relay.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from aiohttp import web

from switchpoint.errors import InvalidProvider
from switchpoint.exchange import Exchange, Target, relay, upstream_headers
from switchpoint.providers.base import Dialect
from switchpoint.routing.attempts import RetryPolicy
from switchpoint.routing.compile import ModelStep
from switchpoint.routing.conditions import RouteRequest
from switchpoint.routing.evaluate import RouteFailed, run_route
from switchpoint.surfaces.planning import compat_target
from switchpoint.upstream import UpstreamAnswer

PREFIX = "dynamic/"


async def plan_dynamic(
    ex: Exchange, request: web.Request, obj: dict[str, Any], kind: str, client: Dialect
) -> web.StreamResponse:
    runtime = ex.runtime
    name = str(obj["model"])[len(PREFIX) :]
    route = runtime.routes.get(ex.gateway_id, name)
    if route is None:
        raise InvalidProvider(f"Dynamic route '{name}' is not deployed on gateway '{ex.gateway_id}'")
    ex.route = f"{name}@{route.version_id}" if route.version_id else name
    targets: dict[str, Target] = {}

    def send(step: ModelStep, policy: RetryPolicy) -> Awaitable[UpstreamAnswer]:
        """Plan the step (once per element) and start the attempt. Not a coroutine itself: the walk awaits
        `open` directly, one frame fewer to resume when the answer's head arrives."""
        target = targets.get(step.element_id)
        if target is None:
            planned = {**obj, "model": f"{step.provider}/{step.model}"}  # compat_target rewrites its input
            target = targets[step.element_id] = compat_target(runtime.registry, ex.account, planned, kind, client)
        ex.provider, ex.model = target.provider.name, target.model
        ex.attempts += 1
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
