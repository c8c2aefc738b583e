"""What governs a call around its attempts: the rate limit, the budget reservation and the response cache.

Each stage reads and writes the `Exchange`; the policies themselves live in `limits.py` and `cache.py`.
A cache hit is answered before any budget is reserved (a hit costs nothing), as on Cloudflare.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from switchpoint.cache import CachedAnswer, cache_key, credential_identity
from switchpoint.exchange.core import Exchange, Target
from switchpoint.exchange.pipeline import attempt, upstream_headers
from switchpoint.exchange.relay import gateway_headers, relay
from switchpoint.formats.usage import Usage, usage_from_body, usage_from_sse

# Without a body to read, a budget reservation assumes this many output tokens.
ESTIMATED_OUTPUT_TOKENS = 512


async def check_rate(ex: Exchange) -> None:
    """Count the call against the gateway's rate limit (raises 429/2003 over it)."""
    if ex.gateway.rate_limit is not None:
        ex.rate = await ex.runtime.limits.check_rate(ex.gateway_id, ex.gateway, ex.token_id, ex.options.metadata)


async def reserve_budget(ex: Exchange, target: Target) -> None:
    """Hold the expected cost in every spend rule that applies (raises 429/2041 when one is spent)."""
    if not ex.gateway.spend_limits:
        return
    guess = Usage(len(target.body) // 4, ESTIMATED_OUTPUT_TOKENS)  # ~4 bytes a token
    custom = ex.options.custom_cost
    if custom is not None and custom.total_cost is not None:
        estimate = float(custom.total_cost)  # the caller told us the price up front
    else:
        estimate = ex.runtime.prices.cost(target.provider.name, target.model, guess, custom).cost or 0.0
    ex.reservation = await ex.runtime.limits.reserve(
        ex.gateway_id, ex.gateway, target.provider.name, target.model, ex.options.metadata, estimate
    )


def settle_budget(ex: Exchange, cost: float | None) -> None:
    """Correct the reservation with the real cost, and charge it to the route's budget elements, off the
    response path."""
    if ex.reservation is not None:
        _background(ex, ex.runtime.limits.settle(ex.reservation, cost, ex.provider, ex.model))
    if ex.route_charges and cost:
        _background(ex, _charge_route(ex, cost))


async def _charge_route(ex: Exchange, cost: float) -> None:
    for charge in ex.route_charges:
        await ex.runtime.limiter.add(charge.bucket, cost, charge.window_s, charge.technique)


def _background(ex: Exchange, work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.create_task(work)
    background = ex.runtime.background
    background.add(task)
    task.add_done_callback(background.discard)


Run = Callable[[], Awaitable[web.StreamResponse]]


async def cached_call(
    ex: Exchange, request: web.Request, target: Target, surface: str, query: str, run: Run
) -> web.StreamResponse:
    """`run` the call unless the cache has its answer; identical concurrent misses wait for the first one."""
    directive = ex.cache_directive
    if directive is None:
        return await run()
    runtime = ex.runtime
    sent = upstream_headers(ex, request.headers, target)
    credential = credential_identity(sent.get(target.provider.auth.header), ex.token_id)
    key = cache_key(
        ex.gateway_id, surface, target.provider.name, ex.method, target.path, query, ex.body,
        request.headers, credential, directive.custom_key,
    )  # fmt: skip
    async with runtime.cache.flight(key, directive) as flight:
        ex.cache_status = flight.status
        if flight.answer is not None:
            return await replay(ex, request, flight.answer)
        ex.recorder = runtime.cache.recorder()
        try:
            response = await run()
        except BaseException:
            await flight.publish(None)
            raise
        await flight.publish(_cacheable(ex))
    return response


def _cacheable(ex: Exchange) -> CachedAnswer | None:
    if ex.recorder is None or ex.error is not None or not 200 <= ex.status < 300:
        return None
    return ex.recorder.answer(ex.status, ex.response_headers.items(), ex.stream, ex.provider, ex.model)


async def replay(ex: Exchange, request: web.Request, answer: CachedAnswer) -> web.StreamResponse:
    """Serve a stored answer: the same status, headers and bytes (a stream keeps its chunks and framing)."""
    ex.cached, ex.status, ex.stream = True, answer.status, answer.stream
    ex.provider, ex.model = answer.provider or ex.provider, answer.model or ex.model
    ex.mark_first_byte()
    body = answer.body
    ex.response_body, ex.response_size = body, len(body)
    ex.usage = usage_from_sse(body) if answer.stream else usage_from_body(body)
    headers = _replay_headers(answer.headers, ex)
    if not answer.stream:
        return web.Response(status=answer.status, body=body, headers=headers)
    response = web.StreamResponse(status=answer.status, headers=headers)
    await response.prepare(request)
    for chunk in answer.chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


def _replay_headers(stored: tuple[tuple[str, str], ...], ex: Exchange) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict(stored)
    gateway_headers(headers, ex)
    return headers


async def governed_call(
    ex: Exchange, request: web.Request, target: Target, surface: str, query: str = ""
) -> web.StreamResponse:
    """One planned target, the whole way: cache lookup, budget reservation, attempts, relay."""

    async def run() -> web.StreamResponse:
        await reserve_budget(ex, target)
        answered, answer = await attempt(ex, request.headers, [(target, ex.options.retry)])
        try:
            return await relay(ex, request, answered, answer)
        finally:
            answer.release()

    return await cached_call(ex, request, target, surface, query, run)
