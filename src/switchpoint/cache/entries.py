"""Stored answers (whole bodies and streams, replayed with their original framing), the store they live
in, and the coalescing of identical concurrent misses. Bytes live in a `state.CacheBackend`; the cache
fails open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson
from multidict import CIMultiDict

from switchpoint.cache.policy import HIT, MISS, STORED_HEADERS, CacheDirective, KeyMemo
from switchpoint.formats.usage import Usage, usage_from_body, usage_from_sse
from switchpoint.state.base import CacheBackend, StateUnavailable

_MAGIC = b"SPC1"
# Decoded entries kept beside their bytes, per cache (see `ResponseCache`).
DECODED_MAX_BYTES = 32 * 1024 * 1024
log = logging.getLogger("switchpoint.cache")


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A successful answer as the client got it: a whole body is one chunk; a stream keeps every chunk as
    it came, so a replay writes the same bytes with the same framing. `usage` is the call's own, kept so a
    hit is logged with its tokens without reading the body again."""

    status: int
    headers: tuple[tuple[str, str], ...]
    chunks: tuple[bytes, ...]
    stream: bool
    provider: str | None = None
    model: str | None = None
    usage: Usage | None = None
    # `headers` as a multidict, built once: a replay hands it to the response, which copies it (cheaper than
    # building one from the tuple on every hit); never mutated
    header_map: CIMultiDict[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "header_map", CIMultiDict(self.headers))

    @classmethod
    def capture(
        cls,
        status: int,
        headers: Iterable[tuple[str, str]],
        chunks: Sequence[bytes],
        stream: bool,
        provider: str | None = None,
        model: str | None = None,
        usage: Usage | None = None,
    ) -> CachedAnswer:
        """Keep only `STORED_HEADERS` of the response headers."""
        kept = tuple((name, value) for name, value in headers if name.lower() in STORED_HEADERS)
        return cls(status, kept, tuple(chunks), stream, provider, model, usage)

    @property
    def body(self) -> bytes:
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)

    @property
    def size(self) -> int:
        return sum(map(len, self.chunks))

    def to_bytes(self) -> bytes:
        u = self.usage
        meta = {
            "status": self.status,
            "headers": self.headers,
            "stream": self.stream,
            "chunks": [len(chunk) for chunk in self.chunks],
            "provider": self.provider,
            "model": self.model,
            "usage": None
            if u is None
            else (u.tokens_in, u.tokens_out, u.cache_read_tokens, u.cache_write_tokens, u.reasoning_tokens),
        }
        head = orjson.dumps(meta)
        return b"".join((_MAGIC, len(head).to_bytes(4, "big"), head, *self.chunks))

    @classmethod
    def from_bytes(cls, data: bytes) -> CachedAnswer:
        """Raises ValueError for anything `to_bytes` did not write. An entry written before usage was kept
        has its usage read from the body, as hits did then."""
        if data[:4] != _MAGIC:
            raise ValueError("not a cached answer")
        end = 8 + int.from_bytes(data[4:8], "big")
        meta = orjson.loads(data[8:end])
        view, chunks, offset = memoryview(data), [], end
        for length in meta["chunks"]:
            chunks.append(bytes(view[offset : offset + length]))
            offset += length
        if offset != len(data):
            raise ValueError("cached answer has the wrong length")
        headers = tuple((str(name), str(value)) for name, value in meta["headers"])
        stream = meta["stream"]
        if "usage" in meta:
            usage = None if meta["usage"] is None else Usage(*meta["usage"])
        else:
            body = b"".join(chunks)
            usage = usage_from_sse(body) if stream else usage_from_body(body)
        return cls(meta["status"], headers, tuple(chunks), stream, meta["provider"], meta["model"], usage)


class Recorder:
    """Collects an answer's chunks while they are relayed, up to `max_bytes`; beyond that it lets go of them
    (the answer is still served, just not cached)."""

    __slots__ = ("chunks", "max_bytes", "overflowed", "size")

    def __init__(self, max_bytes: int) -> None:
        self.chunks: list[bytes] = []
        self.max_bytes = max_bytes
        self.size = 0
        self.overflowed = False

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.overflowed, self.chunks = True, []
        elif not self.overflowed:
            self.chunks.append(chunk)

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
    by `DECODED_MAX_BYTES`) and reused while the store returns those same bytes."""

    def __init__(self, backend: CacheBackend, max_entry_bytes: int = 25 * 1024 * 1024) -> None:
        self._backend = backend
        self.max_entry_bytes = max_entry_bytes
        self._flights: dict[str, asyncio.Future[CachedAnswer | None]] = {}
        self._decoded: dict[str, tuple[bytes, CachedAnswer]] = {}
        self._decoded_bytes = 0
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

    def flight(self, key: str, directive: CacheDirective) -> Flight:
        """One cacheable call: `async with cache.flight(key, directive) as flight` (see `Flight`)."""
        return Flight(self, key, directive)


class Flight:
    """A cacheable call in progress. The first call for a key looks it up and, on a miss, is the one that
    goes upstream; identical calls arriving meanwhile wait for its answer. `answer` set: serve it (a hit).
    Otherwise call upstream and `publish` what the client got (None when it failed), which stores it and
    releases the waiters; when that is not cacheable (an error, a broken stream, too large) or the first
    call ends without publishing, the waiters get `answer is None` and make their own calls. A
    `skip_lookup` call neither waits nor is waited for. Coalescing is per process (each worker coalesces
    its own callers). A class, not a generator context manager: it runs on every hit."""

    __slots__ = ("_cache", "_directive", "_future", "_key", "answer")

    def __init__(self, cache: ResponseCache, key: str, directive: CacheDirective) -> None:
        self._cache, self._key, self._directive = cache, key, directive
        self._future: asyncio.Future[CachedAnswer | None] | None = None
        self.answer: CachedAnswer | None = None

    async def __aenter__(self) -> Flight:
        return await self.enter()

    async def enter(self) -> Flight:
        """`async with`'s entry, for callers that `release` themselves (a hit holds nothing to release, so
        its caller may skip that). Look the key up first, then join a running call or become the one: no
        await separates the check from the registration, so identical misses still coalesce, and a hit
        registers nothing."""
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
                future: asyncio.Future[CachedAnswer | None] = asyncio.get_running_loop().create_future()
                flights[self._key] = self._future = future
                return self
        self.answer = await asyncio.shield(running)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        """Unregister this call's flight, if it registered one (waiters still waiting get None)."""
        future = self._future
        if future is not None:
            self._future = None
            del self._cache._flights[self._key]
            if not future.done():
                future.set_result(None)

    @property
    def status(self) -> str:
        """The value of `cf-aig-cache-status` for this call."""
        return HIT if self.answer is not None else MISS

    async def publish(self, answer: CachedAnswer | None) -> None:
        if answer is not None and not self._cache.cacheable(answer):
            answer = None
        if self._future is not None and not self._future.done():
            self._future.set_result(answer)
        if answer is not None:
            await self._cache.store(self._key, answer, self._directive.ttl_s)
