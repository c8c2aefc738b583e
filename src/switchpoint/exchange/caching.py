"""The response cache around a call: answer from a stored entry, or run the call and store its answer.

Identical concurrent misses wait for the first one (`ResponseCache.flight`); the policy (what is
cacheable, the key, the stored form) lives in `cache.py`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from multidict import CIMultiDict

from switchpoint.cache import CachedAnswer, cache_key, credential_identity
from switchpoint.exchange.core import Exchange, Target
from switchpoint.exchange.pipeline import upstream_headers
from switchpoint.exchange.relay import gateway_headers
from switchpoint.formats.usage import usage_from_body, usage_from_sse

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
