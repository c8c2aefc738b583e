"""The store of answers (`ResponseCache`) and the coalescing of identical concurrent misses (`Flight`): the
first call goes upstream; identical calls arriving meanwhile follow its stream live (`Live`) or, for a whole
answer, wait for it. Bytes live in a `state.CacheBackend`; the cache fails open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from multidict import CIMultiDict

from switchpoint.cache.answer import CachedAnswer
from switchpoint.cache.policy import HIT, MISS, STORED_HEADERS, CacheDirective, KeyMemo
from switchpoint.formats.usage import Usage
from switchpoint.state.base import CacheBackend, StateUnavailable

# Decoded entries kept beside their bytes, per cache (see `ResponseCache`).
DECODED_MAX_BYTES = 32 * 1024 * 1024
# How long `ResponseCache.aclose` waits for the stores still running.
CLOSE_WAIT_S = 5.0
log = logging.getLogger("switchpoint.cache")
# How a relayed answer opened, read at its first chunk: status, headers, stream, provider, model.
Opening = tuple[int, Iterable[tuple[str, str]], bool, str | None, str | None]

__all__ = ["DECODED_MAX_BYTES", "CachedAnswer", "Flight", "Live", "Recorder", "ResponseCache"]


class Live:
    """One leading call of a flight, as the identical calls that joined it see it. `ready` resolves to this
    object when the answer turns out to be a stream (followers then read `chunks` by index as they grow,
    until `ended`), or, when it does not, to the whole answer (None: make your own call). `chunks` is the
    leader's `Recorder.chunks`: one list, shared, never copied per follower; it goes when the last reader
    does. `joined` counts the calls waiting or following."""

    __slots__ = (
        "_flights", "_key", "_wake", "body", "chunks", "complete", "ended", "error", "header_map", "joined",
        "model", "provider", "ready", "size", "started", "status", "usage",
    )  # fmt: skip

    def __init__(self, flights: dict[str, Live], key: str) -> None:
        self._flights, self._key = flights, key
        self.ready: asyncio.Future[CachedAnswer | Live | None] = asyncio.get_running_loop().create_future()
        self._wake: asyncio.Future[None] | None = None
        self.joined = 0
        self.chunks: list[bytes] = []
        self.status = 0
        self.header_map: CIMultiDict[str] = CIMultiDict()
        self.provider: str | None = None
        self.model: str | None = None
        self.started = self.ended = self.complete = False
        self.error: str | None = None
        self.usage: Usage | None = None
        self.body: bytes | None = None
        self.size = 0

    def start(self, opening: Opening, chunks: list[bytes]) -> None:
        """The stream's status and headers (those a stored entry keeps) are known: followers may begin."""
        self.status, headers, _, self.provider, self.model = opening
        self.header_map = CIMultiDict((name, value) for name, value in headers if name.lower() in STORED_HEADERS)
        self.chunks, self.started = chunks, True
        if not self.ready.done():
            self.ready.set_result(self)

    def wake(self) -> None:
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set_result(None)

    async def changed(self) -> None:
        """Until the next chunk or the end. Shielded: a follower that leaves cancels only its own wait."""
        wake = self._wake
        if wake is None:
            wake = self._wake = asyncio.get_running_loop().create_future()
        await asyncio.shield(wake)

    def end(self, complete: bool, error: str | None, usage: Usage | None, body: bytes | None, size: int) -> None:
        """The leader's relay is over: `complete` when it reached the stream's end (any error event it wrote
        is in `chunks`), False when it was cut off (followers must not end cleanly)."""
        if self.ended:
            return
        self.complete, self.error, self.usage, self.body, self.size = complete, error, usage, body, size
        self.ended = True
        self.wake()

    def close(self) -> None:
        """Take no more joiners (the calls that joined keep reading)."""
        if self._flights.get(self._key) is self:
            del self._flights[self._key]


class Recorder:
    """Collects an answer's chunks while they are relayed, up to `max_bytes`; beyond that it lets go of them
    (the answer is still served, just not cached). A flight's recorder shares its chunks with the calls
    following the stream (`live`): when some follow as it passes the cap, they are kept (a late joiner needs
    them all) and go when the flight ends and its last follower is done; when none does, the flight takes
    no more joiners and lets go of them. `orphaned`: the leading client left and the relay reads on for
    followers only."""

    __slots__ = ("_opening", "chunks", "live", "max_bytes", "orphaned", "overflowed", "size")

    def __init__(self, max_bytes: int, live: Live | None = None, opening: Callable[[], Opening] | None = None) -> None:
        self.chunks: list[bytes] = []
        self.max_bytes = max_bytes
        self.size = 0
        self.overflowed = False
        self.live = live
        self._opening = opening if live is not None else None
        self.orphaned = False

    @property
    def followed(self) -> bool:
        """Whether other calls read this stream (so it is read to its end even once its client left)."""
        live = self.live
        return live is not None and live.joined > 0

    def add(self, chunk: bytes) -> None:
        if self._opening is not None:
            self._open(self._opening)
        self.size += len(chunk)
        live = self.live
        if self.size > self.max_bytes and not self.overflowed:
            self.overflowed = True  # not cacheable
            if live is not None and live.joined == 0:
                # Nobody follows: take no more joiners (a late one would need every chunk) and keep none, so
                # a stream past the cap holds no more memory than any uncached one.
                live.close()
                live.chunks = []
                live = self.live = None
            if live is None:
                self.chunks = []
            # else: followers read these chunks; they are kept, for followers that join later too
        if live is not None:
            self.chunks.append(chunk)
            live.wake()
        elif not self.overflowed:
            self.chunks.append(chunk)

    def _open(self, opening: Callable[[], Opening]) -> None:
        """The first chunk: a stream goes live; a whole answer reaches joiners only once published."""
        self._opening = None
        how = opening()
        if self.live is not None and how[2]:
            self.live.start(how, self.chunks)
        else:
            self.live = None

    def answer(
        self,
        status: int,
        headers: Iterable[tuple[str, str]],
        stream: bool,
        provider: str | None = None,
        model: str | None = None,
        usage: Usage | None = None,
    ) -> CachedAnswer | None:
        """What was recorded, or None when it outgrew `max_bytes`."""
        if self.overflowed:
            return None
        return CachedAnswer.capture(status, headers, self.chunks, stream, provider, model, usage)


class ResponseCache:
    """Entries in a `CacheBackend`, fail-open (an unreachable store is a miss, a failed write is dropped;
    `failures` counts both), and the in-flight calls of this process for coalescing.

    Entries read back are decoded once: the decoded answer is kept beside the bytes it came from (bounded
    by `DECODED_MAX_BYTES`) and reused while the store returns those same bytes. Writes run off the request
    path (`store_soon`); `aclose` waits for those still running."""

    def __init__(self, backend: CacheBackend, max_entry_bytes: int = 25 * 1024 * 1024) -> None:
        self._backend = backend
        self.max_entry_bytes = max_entry_bytes
        self._flights: dict[str, Live] = {}
        self._decoded: dict[str, tuple[bytes, CachedAnswer]] = {}
        self._decoded_bytes = 0
        self._storing: set[asyncio.Task[bool]] = set()
        self.keys = KeyMemo()
        self.failures = 0

    def recorder(self) -> Recorder:
        return Recorder(self.max_entry_bytes)

    async def lookup(self, key: str) -> CachedAnswer | None:
        try:
            data = await self._backend.get(key)
        except StateUnavailable:
            self.failures += 1
            return None
        if data is None:
            return None
        known = self._decoded.get(key)
        if known is not None and (known[0] is data or known[0] == data):
            return known[1]
        try:
            answer = CachedAnswer.from_bytes(data)
        except (ValueError, KeyError, TypeError):
            log.warning("dropping an unreadable cache entry")
            return None
        self._remember(key, data, answer)
        return answer

    def _remember(self, key: str, data: bytes, answer: CachedAnswer) -> None:
        size = 2 * len(data)  # the bytes and the decoded chunks; a replaced entry is counted twice, at worst
        if size <= DECODED_MAX_BYTES // 16:
            if self._decoded_bytes + size > DECODED_MAX_BYTES:
                self._decoded.clear()
                self._decoded_bytes = 0
            self._decoded[key] = (data, answer)
            self._decoded_bytes += size

    def cacheable(self, answer: CachedAnswer) -> bool:
        return 200 <= answer.status < 300 and answer.size <= self.max_entry_bytes

    async def store(self, key: str, answer: CachedAnswer, ttl_s: float) -> bool:
        """Keep a successful answer that fits the entry cap; True when it was handed to the store."""
        if not self.cacheable(answer):
            return False
        try:
            await self._backend.set(key, answer.to_bytes(), ttl_s)
        except StateUnavailable:
            self.failures += 1
            return False
        return True

    def store_soon(self, key: str, answer: CachedAnswer, ttl_s: float) -> asyncio.Task[bool]:
        """`store` in a task of its own, tracked until it ends; a write that fails in any way (or is
        cancelled at shutdown) counts in `failures`."""
        task = asyncio.get_running_loop().create_task(self.store(key, answer, ttl_s))
        self._storing.add(task)
        task.add_done_callback(self._stored)
        return task

    def _stored(self, task: asyncio.Task[bool]) -> None:
        self._storing.discard(task)
        if task.cancelled():
            self.failures += 1
        elif (exc := task.exception()) is not None:
            self.failures += 1
            log.warning("a cache write failed: %r", exc)

    async def aclose(self) -> None:
        """Let the writes still running finish (for `CLOSE_WAIT_S` at most; the rest are cancelled)."""
        if self._storing:
            _, late = await asyncio.wait(set(self._storing), timeout=CLOSE_WAIT_S)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)

    def flight(self, key: str, directive: CacheDirective) -> Flight:
        """One cacheable call: `async with cache.flight(key, directive) as flight` (see `Flight`)."""
        return Flight(self, key, directive)


class Flight:
    """A cacheable call in progress. The first call for a key looks it up and, on a miss, is the one that
    goes upstream (it registers a `Live`); identical calls arriving meanwhile join it. `answer` set: serve
    it (a stored hit, or the leader's whole answer). `live` set: follow the leader's stream as it is
    relayed (`Live`), then `leave`. Neither: call upstream with `recorder(...)` as the relay's recorder and
    `publish` what the client got (None when it failed): that ends the stream for its followers, hands a
    whole answer to its waiters and stores a cacheable answer off the request path (the flight stays
    joinable until the store has it). When a whole answer is not cacheable (an error, too large) or the call
    ends without publishing, waiters get `answer is None` and make their own calls. A `skip_lookup` call
    neither waits nor is waited for. Coalescing is per process (each worker coalesces its own callers). A
    class, not a generator context manager: it runs on every hit."""

    __slots__ = ("_cache", "_directive", "_key", "_lead", "_storing", "answer", "live")

    def __init__(self, cache: ResponseCache, key: str, directive: CacheDirective) -> None:
        self._cache, self._key, self._directive = cache, key, directive
        self._lead: Live | None = None
        self._storing: asyncio.Task[bool] | None = None
        self.answer: CachedAnswer | None = None
        self.live: Live | None = None

    async def __aenter__(self) -> Flight:
        return await self.enter()

    async def enter(self, wait_ms: int | None = None) -> Flight:
        """`async with`'s entry, for callers that `release` themselves (a hit holds nothing to release, so
        its caller may skip that). Look the key up first, then join a running call or become the one: no
        await separates the check from the registration, so identical misses still coalesce, and a hit
        registers nothing. A joiner waits `wait_ms` at most for the stream to start or the answer to come
        (raises TimeoutError)."""
        if self._directive.skip_lookup:
            return self
        flights = self._cache._flights
        running = flights.get(self._key)
        if running is None:
            self.answer = await self._cache.lookup(self._key)
            if self.answer is not None:
                return self
            running = flights.get(self._key)  # another miss may have registered while we looked
            if running is None:
                flights[self._key] = self._lead = Live(flights, self._key)
                return self
        running.joined += 1
        try:
            if wait_ms is None:
                got = await asyncio.shield(running.ready)
            else:
                async with asyncio.timeout(wait_ms / 1000):
                    got = await asyncio.shield(running.ready)
        except BaseException:
            running.joined -= 1
            raise
        if isinstance(got, Live):
            self.live = got
        else:
            running.joined -= 1
            self.answer = got
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    @property
    def leads(self) -> bool:
        """Whether this call is the one others may join."""
        return self._lead is not None

    @property
    def followed(self) -> bool:
        lead = self._lead
        return lead is not None and lead.joined > 0

    def recorder(self, opening: Callable[[], Opening]) -> Recorder:
        """The relay's recorder for the leading call; `opening` tells, at the first chunk, how it opened."""
        return Recorder(self._cache.max_entry_bytes, self._lead, opening)

    def leave(self) -> None:
        """A follower is done with the stream."""
        if self.live is not None:
            self.live.joined -= 1
            self.live = None

    def release(self) -> None:
        """Unregister this call's flight, if it registered one (waiters still waiting get None, followers
        an unfinished end); a store still running keeps it joinable until it ends."""
        lead = self._lead
        if lead is None:
            return
        lead.end(False, None, None, None, 0)
        if not lead.ready.done():
            lead.ready.set_result(None)
        storing = self._storing
        if storing is not None and not storing.done():
            storing.add_done_callback(lambda _: lead.close())
        else:
            lead.close()
        self._lead = None

    @property
    def status(self) -> str:
        """The value of `cf-aig-cache-status` for this call: a follower is served another call's answer."""
        return HIT if self.answer is not None or self.live is not None else MISS

    def publish(
        self,
        answer: CachedAnswer | None,
        complete: bool = False,
        error: str | None = None,
        usage: Usage | None = None,
        body: bytes | None = None,
        size: int = 0,
    ) -> None:
        """The call is over. `answer`: what its client got, when cacheable; the rest tell a streamed call's
        followers how it ended (`Live.end`) and what to log."""
        if answer is not None and not self._cache.cacheable(answer):
            answer = None
        lead = self._lead
        if lead is not None:
            if lead.started:
                lead.end(complete, error, usage, body, size)
            elif not lead.ready.done():
                lead.ready.set_result(answer)
        if answer is not None:
            self._storing = self._cache.store_soon(self._key, answer, self._directive.ttl_s)
