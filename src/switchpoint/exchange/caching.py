"""The response cache around a call: answer from a stored entry, or run the call and store its answer.

Identical concurrent misses join the first one (`ResponseCache.flight`): a stream is followed live, chunk
by chunk as the first call relays it, a whole answer is waited for; the policy (what is
cacheable, the key, the stored form) lives in `cache`. A hit runs here and nowhere upstream of it: its key
comes from a memo of the raw question when it was asked before, and its usage from the stored entry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from itertools import repeat

from aiohttp import web
from multidict import CIMultiDictProxy

from switchpoint.cache import (
    HIT,
    MISS,
    VARY_HEADERS,
    CachedAnswer,
    CacheDirective,
    Flight,
    cache_key,
    credential_identity,
)
from switchpoint.errors import UpstreamTimeout
from switchpoint.exchange.core import Exchange, Target
from switchpoint.exchange.pipeline import KEY_SLOTS, upstream_headers
from switchpoint.exchange.relay import gateway_headers
from switchpoint.providers.base import Provider
from switchpoint.providers.registry import Registry

Run = Callable[[], Awaitable[web.StreamResponse]]
_CREDENTIAL_HEADERS: dict[str, tuple[Provider, tuple[str, ...]]] = {}
_ALL_KEY_HEADERS: dict[int, tuple[Registry, tuple[str, ...]]] = {}


def cached_call(
    ex: Exchange, request: web.Request, target: Target, surface: str, query: str, run: Run
) -> Awaitable[web.StreamResponse]:
    """`run` the call unless the cache has its answer; identical concurrent misses wait for the first one.
    Await what it returns (a plain function handing over the coroutine: one coroutine fewer a call)."""
    directive = ex.cache_directive
    if directive is None:
        return run()
    return _answer(ex, request, call_key(ex, request.headers, target, surface, query), directive, run)


def run_cached(ex: Exchange, request: web.Request, key: Callable[[], str], run: Run) -> Awaitable[web.StreamResponse]:
    """`run` the call, or, when it is cacheable, answer from the entry under `key()` (computed only then)
    or run it and store its answer. Await what it returns, as with `cached_call`."""
    directive = ex.cache_directive
    if directive is None:
        return run()
    return _answer(ex, request, key(), directive, run)


async def _answer(
    ex: Exchange, request: web.Request, key: str, directive: CacheDirective, run: Run
) -> web.StreamResponse:
    """A cacheable call: the entry under `key`, or `run` and store its answer; an identical call already
    running is joined instead (its stream followed live, or its whole answer replayed)."""
    cache = ex.runtime.cache
    flight = cache.flight(key, directive)
    timeout_ms = ex.options.retry.first_byte_timeout_ms
    try:
        await flight.enter(timeout_ms)
    except TimeoutError:  # a joiner's own first-byte timeout, as its own call would have had it
        raise UpstreamTimeout.first_byte(timeout_ms or 0) from None  # (raised only when there is one)
    answer = flight.answer
    if answer is not None:  # a hit registered no flight: nothing to release
        ex.cache_status = HIT
        return replay(ex, answer) if not answer.stream else await replay_stream(ex, request, answer)
    if flight.live is not None:
        ex.cache_status = HIT
        return await follow(ex, request, flight)
    ex.cache_status = MISS
    if not flight.leads:  # skip_lookup: nobody joins this call
        ex.recorder = cache.recorder()
        response = await run()
        flight.publish(_cacheable(ex))
        return response
    return await _lead(ex, flight, run)


async def _lead(ex: Exchange, flight: Flight, run: Run) -> web.StreamResponse:
    """The leading call runs in a task of its own, so that a client that leaves while others follow its
    stream does not cancel the upstream read they need: the relay reads on for them (`Recorder.orphaned`)
    and this call is logged as the client disconnect it was, once they have it all."""
    recorder = ex.recorder = flight.recorder(lambda: (ex.status, _sent_headers(ex), ex.stream, ex.provider, ex.model))
    task = asyncio.get_running_loop().create_task(_run_leading(ex, flight, run))
    task.add_done_callback(_retrieve)
    stayed = False
    while True:
        try:
            response = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done() or stayed or not flight.followed:
                task.cancel()  # as if it ran here: it unwinds (the relay notes what it sent) before the log
                await asyncio.wait((task,))
                raise
            stayed = recorder.orphaned = True  # the client left: read on for the calls that follow
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
    if recorder.orphaned:
        ex.status, ex.error = 499, "client disconnected"
    return response


async def _run_leading(ex: Exchange, flight: Flight, run: Run) -> web.StreamResponse:
    """`run`, then publish how it went: its answer to the cache and the waiters, its end to the followers.
    The stream reached its end when the relay returned without a client disconnect of its own (499), or
    when only its last write failed because the client had left while it read on for followers."""
    try:
        try:
            response = await run()
        except ConnectionResetError:
            recorder = ex.recorder
            _publish(ex, flight, recorder is not None and recorder.orphaned and ex.status != 499)
            raise
        except BaseException:
            _publish(ex, flight, False)
            raise
        _publish(ex, flight, ex.status != 499)
    finally:
        flight.release()
    return response


def _publish(ex: Exchange, flight: Flight, complete: bool) -> None:
    flight.publish(
        _cacheable(ex) if complete else None, complete, ex.error, ex.usage, ex.response_body, ex.response_size
    )


def _retrieve(task: asyncio.Task[web.StreamResponse]) -> None:
    """The outcome of a leading call whose client left is nobody's to read: take it so none is reported lost."""
    if not task.cancelled():
        task.exception()


def _sent_headers(ex: Exchange) -> Iterable[tuple[str, str]]:
    headers = ex.response_headers
    return headers.items() if headers is not None else ()


async def follow(ex: Exchange, request: web.Request, flight: Flight) -> web.StreamResponse:
    """Serve a call that joined a running identical one from the stream that call is relaying: the same
    status, the headers an entry keeps (with this call's own gateway headers), the chunks already relayed
    and each further one as it is, then the same end. A stream cut off upstream of its end is cut off here
    too (the connection closes without the final chunk), never ended as if complete."""
    live = flight.live
    assert live is not None
    try:
        ex.cached, ex.status, ex.stream = True, live.status, True
        ex.provider, ex.model = live.provider or ex.provider, live.model or ex.model
        response = web.StreamResponse(status=live.status, headers=live.header_map)
        gateway_headers(response.headers, ex)
        await response.prepare(request)
        ex.mark_first_byte()
        sent = 0
        while True:
            chunks = live.chunks
            while sent < len(chunks):
                await response.write(chunks[sent])
                sent += 1
            if live.ended:
                break
            await live.changed()
    finally:
        flight.leave()
    ex.usage, ex.response_body, ex.response_size, ex.error = live.usage, live.body, live.size, live.error
    if not live.complete:
        ex.error = ex.error or "the stream this call followed was cut off"
        transport = request.transport
        if transport is not None:
            transport.close()
        return response
    await response.write_eof()
    return response


def _credential_headers(provider: Provider) -> tuple[str, ...]:
    """The client headers `upstream_headers` may take the provider credential from, once per provider."""
    known = _CREDENTIAL_HEADERS.get(provider.name)
    if known is None or known[0] is not provider:
        names = tuple(dict.fromkeys((*_sent_key_headers(provider), *KEY_SLOTS)))
        known = _CREDENTIAL_HEADERS[provider.name] = (provider, names)
    return known[1]


def _sent_key_headers(provider: Provider) -> tuple[str, ...]:
    """Every header a provider takes a key from (its own slot and the others it accepts, such as Anthropic's
    `authorization` beside `x-api-key`): whichever of them the upstream request carries names the tenant."""
    return tuple(dict.fromkeys(name.lower() for name in (provider.auth.header, *provider.key_headers)))


def question(
    ex: Exchange, headers: CIMultiDictProxy[str], target: Target, surface: str, query: str
) -> tuple[object, ...]:
    """Every input of the key: those of `cache_key` (of the headers, `VARY_HEADERS`' first values, as it
    reads them), and those `upstream_headers` reads to decide the provider credential (every value of the
    client's key headers, a step's own headers, translation, the BYOK alias; the stored keys come in
    through the snapshot `KeyMemo` checks)."""
    provider = target.provider
    directive = ex.cache_directive
    return (
        ex.gateway_id, surface, provider.name, ex.method, target.path, query, ex.body,
        directive.custom_key if directive is not None else None, ex.token_id, ex.options.byok_alias,
        target.translator is not None, tuple(target.headers.items()) if target.headers else None,
        tuple(map(headers.get, VARY_HEADERS)),
        tuple(map(tuple, map(headers.getall, _credential_headers(provider), repeat(())))),  # each one's values
    )  # fmt: skip


def call_key(ex: Exchange, headers: CIMultiDictProxy[str], target: Target, surface: str, query: str) -> str:
    """The cache key of this call (`cache.cache_key`), from the memo when the same question came before."""
    memo = ex.runtime.cache.keys
    asked = question(ex, headers, target, surface, query)
    snapshot = ex.runtime.snapshot
    key = memo.get(asked, snapshot)
    if key is None:
        provider = target.provider
        sent = upstream_headers(ex, headers, target)
        credential = credential_identity(
            ex.token_id, *(",".join(sent.getall(name, ())) or None for name in _sent_key_headers(provider))
        )
        path = provider.path_rule(provider.base_url, target.path.lstrip("/"))  # as the upstream URL has it
        custom = ex.cache_directive.custom_key if ex.cache_directive is not None else None
        key = cache_key(
            ex.gateway_id, surface, provider.name, ex.method, path, query, ex.body, headers, credential, custom
        )
        memo.put(asked, snapshot, key, len(ex.body))
    return key


def whole_call_key(ex: Exchange, headers: CIMultiDictProxy[str], surface: str, plan: str) -> str:
    """The key of a call whose provider is chosen inside it (a dynamic route's walk, universal steps):
    `plan` names what decides (`route@version`, so a new deployment never answers from the old one's
    entries); the credential covers the gateway token and every key header any provider reads, since any
    of them may be the one sent upstream."""
    registry = ex.runtime.registry
    names = _ALL_KEY_HEADERS.get(id(registry))
    if names is None or names[0] is not registry:
        found = {name for provider in registry.by_slug.values() for name in _credential_headers(provider)}
        names = _ALL_KEY_HEADERS[id(registry)] = (registry, tuple(sorted(found)))
    sent = [",".join(headers.getall(name, ())) or None for name in names[1]]
    credential = credential_identity(ex.token_id, ex.options.byok_alias, *sent)
    custom = ex.cache_directive.custom_key if ex.cache_directive is not None else None
    return cache_key(ex.gateway_id, surface, "", ex.method, plan, "", ex.body, headers, credential, custom)


def _cacheable(ex: Exchange) -> CachedAnswer | None:
    if ex.recorder is None or ex.error is not None or not 200 <= ex.status < 300:
        return None
    headers = ex.response_headers.items() if ex.response_headers is not None else ()
    return ex.recorder.answer(ex.status, headers, ex.stream, ex.provider, ex.model, ex.usage)


def _replayed(ex: Exchange, answer: CachedAnswer) -> bytes:
    """The exchange as the stored call left it (its usage too, for the log); returns the body."""
    ex.cached, ex.status, ex.stream = True, answer.status, answer.stream
    ex.provider, ex.model = answer.provider or ex.provider, answer.model or ex.model
    ex.mark_first_byte()
    body = answer.body
    ex.response_body, ex.response_size = body, len(body)
    ex.usage = answer.usage
    return body


def replay(ex: Exchange, answer: CachedAnswer) -> web.Response:
    """Serve a stored whole answer: the same status, headers and bytes. The response copies the entry's
    prebuilt headers; this call's are added to the copy. (No coroutine: nothing here waits.)"""
    whole = web.Response(status=answer.status, body=_replayed(ex, answer), headers=answer.header_map)
    gateway_headers(whole.headers, ex)
    return whole


async def replay_stream(ex: Exchange, request: web.Request, answer: CachedAnswer) -> web.StreamResponse:
    """Serve a stored stream: the same status, headers and chunks, with their framing."""
    _replayed(ex, answer)
    response = web.StreamResponse(status=answer.status, headers=answer.header_map)
    gateway_headers(response.headers, ex)
    await response.prepare(request)
    for chunk in answer.chunks:
        await response.write(chunk)
    await response.write_eof()
    return response
