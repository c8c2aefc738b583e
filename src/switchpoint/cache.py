"""The exact-match response cache as policy: which calls are cacheable (gateway `cache_ttl`, `cf-aig-cache-*`
headers), the key, the stored answer (whole bodies and streams, replayed with their original framing) and
the coalescing of identical concurrent misses. Bytes live in a `state.CacheBackend`; the cache fails open.

The key (`cache_key`) is a SHA-256 over length-prefixed parts, each listed there with the reason. Left out
on purpose: `cf-aig-*` headers (gateway instructions, not part of the question: `cf-aig-metadata` must not
split entries, as on Cloudflare), the auth headers themselves (only a hash of the credential goes in, via
`credential_identity`), and every header not in `VARY_HEADERS` (user agents, SDK telemetry, tracing ids,
which would make every entry unique without changing the answer).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

import orjson

from switchpoint.config import GatewayConfig
from switchpoint.errors import BadRequest
from switchpoint.state.base import CacheBackend, StateUnavailable

STATUS_HEADER = "cf-aig-cache-status"
HIT, MISS = "HIT", "MISS"
MIN_TTL_S, MAX_TTL_S = 60, 30 * 86_400
CUSTOM_KEY_TTL_S = 300  # `cf-aig-cache-key` alone, on a gateway whose caching is off (Cloudflare's default)
MAX_CUSTOM_KEY = 1024
CACHEABLE_METHODS = frozenset({"GET", "POST"})
# Request headers that change what a provider answers; their values are part of the key.
VARY_HEADERS = (
    "accept",
    "content-type",
    "anthropic-version",
    "anthropic-beta",
    "openai-beta",
    "openai-organization",
    "openai-project",
    "api-version",
    "x-goog-api-version",
    "x-fal-target-url",
)
# Response headers kept with an entry. Per-call ids, dates and provider rate-limit counters are not: a
# replay carries fresh gateway ids and nobody should read a stale quota from a cached answer.
STORED_HEADERS = frozenset(
    {"content-type", "content-language", "content-disposition", "cf-aig-model", "cf-aig-provider", "cf-aig-step"}
)
_MAGIC = b"SPC1"
log = logging.getLogger("switchpoint.cache")


@dataclass(frozen=True, slots=True)
class CacheDirective:
    """What a cacheable call asked for: how long to keep its answer, whether to skip the lookup (the fresh
    answer still replaces the entry) and the client's own key, if any."""

    ttl_s: int
    skip_lookup: bool = False
    custom_key: str | None = None


def _header(headers: Mapping[str, str], name: str, alias: str) -> tuple[str, str | None]:
    """The header and its value; the deprecated `cf-*` spelling counts when the `cf-aig-*` one is absent."""
    value = headers.get(name)
    return (name, value) if value is not None else (alias, headers.get(alias))


def _ttl_header(headers: Mapping[str, str]) -> int | None:
    name, raw = _header(headers, "cf-aig-cache-ttl", "cf-cache-ttl")
    if raw is None:
        return None
    try:
        ttl = int(raw.strip())
    except ValueError:
        ttl = -1
    if ttl != 0 and not MIN_TTL_S <= ttl <= MAX_TTL_S:
        raise BadRequest(f"{name} must be 0 or between {MIN_TTL_S} and {MAX_TTL_S} seconds, got {raw!r}")
    return ttl


def _skip_header(headers: Mapping[str, str]) -> bool:
    name, raw = _header(headers, "cf-aig-skip-cache", "cf-skip-cache")
    if raw is None:
        return False
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise BadRequest(f"{name} must be 'true' or 'false', got {raw!r}")
    return value == "true"


def _key_header(headers: Mapping[str, str]) -> str | None:
    raw = headers.get("cf-aig-cache-key")
    if raw is not None and not 0 < len(raw) <= MAX_CUSTOM_KEY:
        raise BadRequest(f"cf-aig-cache-key must be 1 to {MAX_CUSTOM_KEY} characters long")
    return raw


def cache_directive(gateway: GatewayConfig, method: str, headers: Mapping[str, str]) -> CacheDirective | None:
    """None when this call is not cached: caching off for the gateway and not asked for, `cf-aig-cache-ttl: 0`,
    or a method other than GET and POST. A malformed header is a 400 naming it, whatever the method."""
    ttl, skip, custom = _ttl_header(headers), _skip_header(headers), _key_header(headers)
    if method.upper() not in CACHEABLE_METHODS or ttl == 0:
        return None
    if ttl is None:
        ttl = gateway.cache_ttl or (CUSTOM_KEY_TTL_S if custom is not None else None)
    return None if ttl is None else CacheDirective(ttl, skip, custom)


def credential_identity(*credentials: str | None) -> str:
    """Who is asking, as a hash: pass the provider credential the upstream will receive and the gateway
    token id, if any. Only the digest reaches a key, so a secret never sits in the store."""
    digest = hashlib.sha256(b"switchpoint-credential")
    for credential in credentials:
        digest.update(b"\0" if credential is None else b"\1" + credential.encode())
    return digest.hexdigest()


def _canonical_body(body: bytes) -> bytes:
    """JSON re-dumped with sorted keys: key order never matters, every value does. Anything else verbatim."""
    if not body:
        return b""
    try:
        return b"j" + orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        return b"r" + body


def _canonical_path(path: str) -> str:
    return "/".join(part for part in path.split("/") if part)


def _canonical_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode(sorted(pairs, key=lambda pair: pair[0]))  # stable: repeated names keep their order


def _vary(headers: Mapping[str, str]) -> str:
    found = ((name, headers.get(name)) for name in VARY_HEADERS)
    return "\n".join(f"{name}:{value.strip()}" for name, value in found if value is not None)


def cache_key(
    gateway: str,
    surface: str,
    provider: str,
    method: str,
    path: str,
    query: str,
    body: bytes,
    headers: Mapping[str, str],
    credential: str,
    custom_key: str | None = None,
) -> str:
    """The entry for one question. `surface` names the shape the stored answer has for the client (e.g.
    `passthrough`, `compat/openai`, `compat/anthropic`): one upstream call answers an OpenAI and an Anthropic
    client in different bytes. `path` is the provider-relative path the upstream receives (after the
    provider's path rules, so `v1/chat/completions` and `chat/completions` that reach one URL share it);
    `body` is the client's body; `credential` comes from `credential_identity`. A `cf-aig-cache-key`
    replaces everything that describes the request, but never gateway, surface and credential: two tenants
    cannot share an entry by naming one, and no client gets an answer shaped for another dialect."""
    if custom_key is not None:
        parts: Iterable[bytes | str] = ("custom", gateway, surface, credential, custom_key)
    else:
        parts = (
            "request",
            gateway,  # entries never cross gateways
            surface,  # nor answer shapes (client dialects)
            provider,  # nor providers, even for an identical body
            method.upper(),
            _canonical_path(path),  # the endpoint (chat vs embeddings vs a model in the path)
            _canonical_query(query),  # e.g. Azure's api-version, Workers AI options
            _vary(headers),  # VARY_HEADERS: versions and betas change the answer
            credential,  # tenants never share
            _canonical_body(body),  # every parameter: model, messages, tools, temperature, stream, ...
        )
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A successful answer as the client got it: a whole body is one chunk; a stream keeps every chunk as
    it came, so a replay writes the same bytes with the same framing."""

    status: int
    headers: tuple[tuple[str, str], ...]
    chunks: tuple[bytes, ...]
    stream: bool
    provider: str | None = None
    model: str | None = None

    @classmethod
    def capture(
        cls,
        status: int,
        headers: Iterable[tuple[str, str]],
        chunks: Sequence[bytes],
        stream: bool,
        provider: str | None = None,
        model: str | None = None,
    ) -> CachedAnswer:
        """Keep only `STORED_HEADERS` of the response headers."""
        kept = tuple((name, value) for name, value in headers if name.lower() in STORED_HEADERS)
        return cls(status, kept, tuple(chunks), stream, provider, model)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def size(self) -> int:
        return sum(map(len, self.chunks))

    def to_bytes(self) -> bytes:
        meta = {
            "status": self.status,
            "headers": self.headers,
            "stream": self.stream,
            "chunks": [len(chunk) for chunk in self.chunks],
            "provider": self.provider,
            "model": self.model,
        }
        head = orjson.dumps(meta)
        return b"".join((_MAGIC, len(head).to_bytes(4, "big"), head, *self.chunks))

    @classmethod
    def from_bytes(cls, data: bytes) -> CachedAnswer:
        """Raises ValueError for anything `to_bytes` did not write."""
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
        return cls(meta["status"], headers, tuple(chunks), meta["stream"], meta["provider"], meta["model"])


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
    ) -> CachedAnswer | None:
        """What was recorded, or None when it outgrew `max_bytes`."""
        if self.overflowed:
            return None
        return CachedAnswer.capture(status, headers, self.chunks, stream, provider, model)


class ResponseCache:
    """Entries in a `CacheBackend`, fail-open (an unreachable store is a miss, a failed write is dropped;
    `failures` counts both), and the in-flight calls of this process for coalescing."""

    def __init__(self, backend: CacheBackend, max_entry_bytes: int = 25 * 1024 * 1024) -> None:
        self._backend = backend
        self.max_entry_bytes = max_entry_bytes
        self._flights: dict[str, asyncio.Future[CachedAnswer | None]] = {}
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
        try:
            return CachedAnswer.from_bytes(data)
        except (ValueError, KeyError, TypeError):
            log.warning("dropping an unreadable cache entry")
            return None

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

    @asynccontextmanager
    async def flight(self, key: str, directive: CacheDirective) -> AsyncIterator[Flight]:
        """One cacheable call. The first call for a key looks the key up and, on a miss, is the one that
        goes upstream; identical calls arriving meanwhile wait for its answer instead. When that answer is
        not cacheable (an error, a broken stream, too large) or the first call ends without publishing,
        the waiters get `answer is None` and make their own calls. A `skip_lookup` call neither waits nor
        is waited for. Coalescing is per process: with several workers or machines each coalesces its own
        callers, so the upstream sees at most one call per process."""
        if directive.skip_lookup:
            yield Flight(self, key, directive.ttl_s, None, None)
            return
        running = self._flights.get(key)
        if running is not None:
            answer = await asyncio.shield(running)
            yield Flight(self, key, directive.ttl_s, answer, None)
            return
        future: asyncio.Future[CachedAnswer | None] = asyncio.get_running_loop().create_future()
        self._flights[key] = future
        try:
            found = await self.lookup(key)
            if found is not None:
                future.set_result(found)
            yield Flight(self, key, directive.ttl_s, found, future)
        finally:
            del self._flights[key]
            if not future.done():
                future.set_result(None)


class Flight:
    """A cacheable call in progress. `answer` set: serve it (a hit). Otherwise call upstream and `publish`
    what the client got (None when it failed), which stores it and releases the waiters."""

    __slots__ = ("_cache", "_future", "_key", "_ttl_s", "answer")

    def __init__(
        self,
        cache: ResponseCache,
        key: str,
        ttl_s: float,
        answer: CachedAnswer | None,
        future: asyncio.Future[CachedAnswer | None] | None,
    ) -> None:
        self._cache, self._key, self._ttl_s, self._future = cache, key, ttl_s, future
        self.answer = answer

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
            await self._cache.store(self._key, answer, self._ttl_s)
