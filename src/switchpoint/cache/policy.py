"""Which calls are cacheable (gateway `cache_ttl`, `cf-aig-cache-*` headers) and the key of each.

The key (`cache_key`) is a SHA-256 over length-prefixed parts, each listed there with the reason. Left out
on purpose: `cf-aig-*` headers (gateway instructions, not part of the question: `cf-aig-metadata` must not
split entries, as on Cloudflare), the auth headers themselves (only a hash of the credential goes in, via
`credential_identity`), and every header not in `VARY_HEADERS` (user agents, SDK telemetry, tracing ids,
which would make every entry unique without changing the answer).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

import orjson

from switchpoint.config import GatewayConfig
from switchpoint.errors import BadRequest

STATUS_HEADER = "cf-aig-cache-status"
HIT, MISS = "HIT", "MISS"
MIN_TTL_S, MAX_TTL_S = 60, 30 * 86_400
CUSTOM_KEY_TTL_S = 300  # `cf-aig-cache-key` alone, on a gateway whose caching is off (Cloudflare's default)
MAX_CUSTOM_KEY = 1024
CACHEABLE_METHODS = frozenset({"GET", "POST"})
DIRECTIVE_HEADERS = ("cf-aig-cache-ttl", "cf-cache-ttl", "cf-aig-skip-cache", "cf-skip-cache", "cf-aig-cache-key")
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
# The memo of computed keys, per cache: at most this many keys holding this many body bytes, bodies this big.
KEY_MEMO_ENTRIES, KEY_MEMO_BYTES, KEY_MEMO_BODY = 4096, 16 * 1024 * 1024, 64 * 1024


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
    if headers.keys().isdisjoint(DIRECTIVE_HEADERS):  # the common case (one pass, as in `parse_options`)
        if not gateway.cache_ttl or method.upper() not in CACHEABLE_METHODS:
            return None
        return _plain_directive(gateway.cache_ttl)
    ttl, skip, custom = _ttl_header(headers), _skip_header(headers), _key_header(headers)
    if method.upper() not in CACHEABLE_METHODS or ttl == 0:
        return None
    if ttl is None:
        ttl = gateway.cache_ttl or (CUSTOM_KEY_TTL_S if custom is not None else None)
    return None if ttl is None else CacheDirective(ttl, skip, custom)


@functools.cache
def _plain_directive(ttl_s: int) -> CacheDirective:
    return CacheDirective(ttl_s)


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


class KeyMemo:
    """Keys already computed, by everything they were computed from (the raw body among it): a repeated
    question skips canonicalising the body and building the upstream headers for the credential. Pure
    memoisation, so a key is exactly what `cache_key` gave for these inputs. An entry counts only under the
    `snapshot` it was computed with (stored provider keys feed the credential). Cleared whole when full."""

    __slots__ = ("_bytes", "_entries")

    def __init__(self) -> None:
        self._entries: dict[tuple[object, ...], tuple[object, str]] = {}
        self._bytes = 0

    def get(self, question: tuple[object, ...], snapshot: object) -> str | None:
        found = self._entries.get(question)
        return found[1] if found is not None and found[0] is snapshot else None

    def put(self, question: tuple[object, ...], snapshot: object, key: str, body_size: int) -> None:
        if body_size > KEY_MEMO_BODY:
            return
        if len(self._entries) >= KEY_MEMO_ENTRIES or self._bytes + body_size > KEY_MEMO_BYTES:
            self._entries.clear()
            self._bytes = 0
        self._entries[question] = (snapshot, key)
        self._bytes += body_size
