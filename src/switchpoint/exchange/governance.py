"""What governs a call around its attempts: the rate limit and the budget reservation, around the
response cache (`caching.py`).

Each stage reads and writes the `Exchange`; the policies themselves live in `limits.py`. A cache hit is
answered before any budget is reserved (a hit costs nothing), as on Cloudflare. A call whose cost the log
cannot tell (no usage) settles its budgets with `unmetered_cost`: nothing when the provider never answered
or answered an error (it bills neither), else an estimate from the bytes it relayed.
"""

from __future__ import annotations

from collections.abc import Awaitable

from aiohttp import web

from switchpoint.exchange.caching import cached_call
from switchpoint.exchange.core import Exchange, Target
from switchpoint.exchange.pipeline import attempt
from switchpoint.exchange.relay import relay
from switchpoint.formats.usage import Usage
from switchpoint.limits import Reservation

# Without a body to read, a budget reservation assumes this many output tokens.
ESTIMATED_OUTPUT_TOKENS = 512
# A call without usage is settled as if every this many bytes, asked or relayed, were one token.
BYTES_PER_TOKEN = 4


async def check_rate(ex: Exchange) -> None:
    """Count the call against the gateway's rate limit with remote counters (raises 429/2003 over it);
    `serve_call` checks in-process counters itself (`Limits.check_rate_now`), without a coroutine."""
    ex.rate = await ex.runtime.limits.check_rate(ex.gateway_id, ex.gateway, ex.token_id, ex.options.metadata)


def reserve_budget(ex: Exchange, target: Target) -> Awaitable[None] | None:
    """Hold the expected cost in every spend rule that applies (raises 429/2041 when one is spent). None when
    done (in-process counters, or no spend rule), else the reservation to await: so an in-process call
    makes no coroutine for it."""
    gateway = ex.gateway
    spend_limits = gateway.spend_limits
    if not spend_limits:
        return None
    runtime, options, provider = ex.runtime, ex.options, target.provider.name
    tokens_in = len(target.body) // BYTES_PER_TOKEN
    tokens_out = target.max_tokens or ESTIMATED_OUTPUT_TOKENS  # the request's own cap, when its plan read it
    custom = options.custom_cost
    if custom is None:
        estimate = runtime.prices.estimate(provider, target.model, tokens_in, tokens_out) or 0.0
    elif custom.total_cost is not None:
        estimate = float(custom.total_cost)  # the caller told us the price up front
    else:
        estimate = custom.cost(Usage(tokens_in, tokens_out)) or 0.0
    limits, model, metadata = runtime.limits, target.model, options.metadata
    if limits.immediate:
        ex.reservation = limits.reserve_now(ex.gateway_id, spend_limits, provider, model, metadata, estimate)
        return None
    return _hold_reservation(ex, limits.reserve(ex.gateway_id, gateway, provider, model, metadata, estimate))


async def _hold_reservation(ex: Exchange, reserve: Awaitable[Reservation | None]) -> None:
    ex.reservation = await reserve


def settle_budget(ex: Exchange, cost: float | None) -> None:
    """Correct the reservation with the real cost, and charge it to the route's budget elements; a cost the
    log does not know (None) is settled as `unmetered_cost`. Nothing here waits: memory applies it at once,
    Redis sends it with the next batch of refunds."""
    reservation, route_charges = ex.reservation, ex.route_charges
    if reservation is None and not route_charges:
        return
    if cost is None:
        cost = unmetered_cost(ex)
    limits = ex.runtime.limits
    if reservation is not None:
        limits.settle(reservation, cost, ex.provider, ex.model)
    if route_charges and cost:
        for charge in route_charges:
            limits.route_add_soon(charge.bucket, cost, charge.window_s, charge.technique)


def unmetered_cost(ex: Exchange) -> float:
    """What a call without usage costs its budgets (the log keeps its cost unknown). Nothing when no answer
    came (connect error, timeout before the first byte, a client gone before it) or the provider answered
    an error: providers bill neither. Otherwise (an answer without usage, a stream cut off by the client,
    499, or by the upstream) the price of the request and of the bytes relayed, `BYTES_PER_TOKEN` each:
    SSE framing makes that a generous count of a stream's tokens, and a cut-off provider may have
    generated past the last byte relayed."""
    status = ex.status
    if ex.ttfb is None or not (200 <= status < 300 or status == 499):
        return 0.0
    tokens_in, tokens_out = len(ex.body) // BYTES_PER_TOKEN, ex.response_size // BYTES_PER_TOKEN
    custom = ex.options.custom_cost
    if custom is not None:
        return custom.cost(Usage(tokens_in, tokens_out)) or 0.0
    return ex.runtime.prices.estimate(ex.provider, ex.model, tokens_in, tokens_out) or 0.0


async def governed_call(
    ex: Exchange, request: web.Request, target: Target, surface: str, query: str = ""
) -> web.StreamResponse:
    """One planned target, the whole way: cache lookup, budget reservation, attempts, relay."""

    async def run() -> web.StreamResponse:
        reserving = reserve_budget(ex, target)
        if reserving is not None:
            await reserving
        answered, answer = await attempt(ex, request.headers, [(target, ex.options.retry)])
        try:
            return await relay(ex, request, answered, answer)
        finally:
            answer.release()

    return await cached_call(ex, request, target, surface, query, run)
