"""The response cache as policy: header parsing, key sensitivity, stored answers, fail-open, coalescing."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from switchpoint.cache import (
    CUSTOM_KEY_TTL_S,
    DECODED_MAX_BYTES,
    VARY_HEADERS,
    CachedAnswer,
    CacheDirective,
    KeyMemo,
    Recorder,
    ResponseCache,
    cache_directive,
    cache_key,
    credential_identity,
)
from switchpoint.cache.policy import DIRECTIVE_HEADERS, KEY_MEMO_BODY, KEY_MEMO_ENTRIES
from switchpoint.config import GatewayConfig
from switchpoint.errors import BadRequest
from switchpoint.formats.usage import Usage
from switchpoint.state import MemoryState, RedisState, StateUnavailable
from tests.state.redis_support import OwnRedis, own_redis
from tests.support.headers import Reading

__all__ = ["own_redis"]

OFF = GatewayConfig()
ON = GatewayConfig(cache_ttl=120)


# -- directives ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gateway", "headers", "expected"),
    [
        (OFF, {}, None),
        (ON, {}, CacheDirective(120)),
        (OFF, {"cf-aig-cache-ttl": "600"}, CacheDirective(600)),
        (ON, {"cf-aig-cache-ttl": " 60 "}, CacheDirective(60)),
        (ON, {"cf-aig-cache-ttl": "2592000"}, CacheDirective(2_592_000)),
        (ON, {"cf-aig-cache-ttl": "0"}, None),
        (ON, {"cf-cache-ttl": "90"}, CacheDirective(90)),
        (ON, {"cf-aig-skip-cache": "TRUE"}, CacheDirective(120, skip_lookup=True)),
        (ON, {"cf-skip-cache": "true"}, CacheDirective(120, skip_lookup=True)),
        (ON, {"cf-aig-skip-cache": "false"}, CacheDirective(120)),
        (OFF, {"cf-aig-skip-cache": "true"}, None),
        (OFF, {"cf-aig-cache-key": "faq-1"}, CacheDirective(CUSTOM_KEY_TTL_S, custom_key="faq-1")),
        (ON, {"cf-aig-cache-key": "faq-1"}, CacheDirective(120, custom_key="faq-1")),
        (OFF, {"cf-aig-cache-key": "k", "cf-aig-cache-ttl": "3600"}, CacheDirective(3600, custom_key="k")),
    ],
)
def test_directive_from_gateway_and_headers(
    gateway: GatewayConfig, headers: dict[str, str], expected: CacheDirective | None
) -> None:
    assert cache_directive(gateway, "POST", headers) == expected


def test_a_call_with_none_of_the_cache_headers_gets_the_gateways_setting() -> None:
    """The headers `cache_directive` checks for first are every one it reads."""
    headers = Reading({"cf-aig-cache-ttl": "60", "cf-aig-skip-cache": "true", "cf-aig-cache-key": "k"})
    cache_directive(ON, "POST", headers)
    assert headers.read <= set(DIRECTIVE_HEADERS)
    other = {"cf-aig-authorization": "Bearer t", "cf-aig-metadata": "{}"}
    assert cache_directive(ON, "POST", other) == CacheDirective(120) == cache_directive(ON, "POST", {})
    assert cache_directive(OFF, "POST", other) is None and cache_directive(ON, "PUT", other) is None


def test_only_get_and_post_are_cached() -> None:
    assert cache_directive(ON, "get", {}) == CacheDirective(120)
    assert cache_directive(ON, "DELETE", {}) is None


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"cf-aig-cache-ttl": "59"}, "cf-aig-cache-ttl must be 0 or between 60 and 2592000 seconds, got '59'"),
        ({"cf-aig-cache-ttl": "2592001"}, "cf-aig-cache-ttl must be 0 or between 60"),
        ({"cf-aig-cache-ttl": "-60"}, "cf-aig-cache-ttl must be 0 or between 60"),
        ({"cf-cache-ttl": "1h"}, "got '1h'"),
        ({"cf-aig-cache-ttl": ""}, "cf-aig-cache-ttl"),
        ({"cf-aig-skip-cache": "yes"}, "cf-aig-skip-cache must be 'true' or 'false', got 'yes'"),
        ({"cf-aig-cache-key": ""}, "cf-aig-cache-key must be 1 to 1024 characters long"),
        ({"cf-aig-cache-key": "k" * 1025}, "cf-aig-cache-key must be 1 to 1024"),
    ],
)
def test_bad_cache_headers_are_a_400_naming_the_header(headers: dict[str, str], message: str) -> None:
    for method in ("POST", "DELETE"):
        with pytest.raises(BadRequest) as info:
            cache_directive(ON, method, headers)
        assert info.value.status == 400
        assert info.value.message.startswith(next(iter(headers)))
        assert message in info.value.message


# -- keys ------------------------------------------------------------------------------------------------

BODY: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
    "temperature": 0.2,
    "max_tokens": 100,
    "reasoning_effort": "low",
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
    "tool_choice": "auto",
    "stream": False,
}
CRED = credential_identity("sk-tenant-a", None)


def key(body: Any = BODY, **overrides: Any) -> str:
    args: dict[str, Any] = {
        "gateway": "g",
        "surface": "passthrough",
        "provider": "openai",
        "method": "POST",
        "path": "v1/chat/completions",
        "query": "",
        "body": body if isinstance(body, bytes) else orjson.dumps(body),
        "headers": {"content-type": "application/json"},
        "credential": CRED,
    }
    args.update(overrides)
    return cache_key(**args)


BASE = key()


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o-mini"},
        {"temperature": 0.3},
        {"max_tokens": 101},
        {"reasoning_effort": "high"},
        {"stream": True},
        {"tool_choice": "none"},
        {"tools": []},
        {"tools": [{"type": "function", "function": {"name": "g", "parameters": {"type": "object"}}}]},
        {"messages": [{"role": "user", "content": "hi"}]},
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi!"}]},
        {"seed": 1},
        {"num_ctx": 8192},  # a provider-specific parameter counts like any other
    ],
)
def test_every_body_parameter_is_in_the_key(change: dict[str, Any]) -> None:
    assert key({**BODY, **change}) != BASE


def test_json_key_order_and_whitespace_do_not_matter() -> None:
    reordered = dict(reversed(list(BODY.items())))
    reordered["tools"] = [
        {"function": {"parameters": {"properties": {}, "type": "object"}, "name": "f"}, "type": "function"}
    ]
    assert key(reordered) == BASE
    assert key(orjson.dumps(BODY, option=orjson.OPT_INDENT_2)) == BASE


def test_non_json_bodies_are_keyed_verbatim() -> None:
    assert key(b"--boundary\r\nfile") != key(b"--boundary\r\nfile2")
    assert key(b"not json") == key(b"not json")
    assert key(b"") != key(b"{}")


@pytest.mark.parametrize(
    "overrides",
    [
        {"gateway": "g2"},
        {"surface": "compat/anthropic"},
        {"provider": "groq"},
        {"method": "GET"},
        {"path": "v1/embeddings"},
        {"query": "api-version=2024-10-01"},
        {"credential": credential_identity("sk-tenant-b", None)},
        {"credential": credential_identity("sk-tenant-a", "token-1")},
    ],
)
def test_request_line_and_tenant_are_in_the_key(overrides: dict[str, Any]) -> None:
    assert key(**overrides) != BASE


def test_paths_and_queries_are_normalised() -> None:
    assert key(path="/v1//chat/completions/") == BASE
    assert key(query="b=2&a=1") == key(query="a=1&b=2")
    assert key(query="a=1&a=2") != key(query="a=2&a=1")  # repeated names keep their order


@pytest.mark.parametrize("name", VARY_HEADERS)
def test_headers_that_change_answers_are_in_the_key(name: str) -> None:
    headers = {"content-type": "application/json", name: "2023-06-01"}
    changed = {"content-type": "application/json", name: "2024-10-22"}
    assert key(headers=headers) != key(headers=changed)


@pytest.mark.parametrize(
    "extra",
    [
        {"cf-aig-metadata": '{"user": "ann"}'},
        {"cf-aig-metadata": '{"user": "bob"}', "cf-aig-event-id": "e1", "cf-aig-cache-ttl": "600"},
        {"cf-aig-authorization": "Bearer swp_x_y", "cf-aig-collect-log": "false"},
        {"authorization": "Bearer sk-other", "x-api-key": "k"},
        {"user-agent": "OpenAI/Python 1.99", "x-stainless-retry-count": "1", "traceparent": "00-abc"},
    ],
)
def test_gateway_auth_and_telemetry_headers_are_not(extra: dict[str, str]) -> None:
    assert key(headers={"content-type": "application/json", **extra}) == BASE


def test_custom_key_replaces_the_request_but_not_the_tenant() -> None:
    custom = key(custom_key="faq")
    assert key({"model": "other"}, custom_key="faq", provider="groq", path="x") == custom
    assert key(custom_key="faq2") != custom
    assert key(custom_key="faq", credential=credential_identity("sk-tenant-b")) != custom
    assert key(custom_key="faq", gateway="g2") != custom
    assert key(custom_key="faq", surface="compat/anthropic") != custom


def test_credential_identity_hides_the_secret() -> None:
    identity = credential_identity("sk-secret-123", "tok")
    assert "sk-secret" not in identity and len(identity) == 64
    assert credential_identity("sk-secret-123", None) != identity
    assert credential_identity(None, "sk-secret-123") != credential_identity("sk-secret-123", None)


# -- stored answers ------------------------------------------------------------------------------------

SSE_CHUNKS = (
    b'data: {"id":"1","choices":[{"delta":{"content":"He"}}]}\n\n',
    b'data: {"id":"1","choices":[{"delta":{"con',  # an event split across chunks
    b'tent":"llo"}}]}\r\n\r\n',
    b"",
    b": keep-alive\n\ndata: [DONE]\n\n",
)


def test_a_stream_round_trips_byte_for_byte_with_its_framing() -> None:
    headers = [("Content-Type", "text/event-stream"), ("x-request-id", "r1"), ("cf-aig-model", "gpt-4o")]
    answer = CachedAnswer.capture(200, headers, SSE_CHUNKS, stream=True, provider="openai", model="gpt-4o")
    assert answer.headers == (("Content-Type", "text/event-stream"), ("cf-aig-model", "gpt-4o"))
    back = CachedAnswer.from_bytes(answer.to_bytes())
    assert back == answer
    assert back.chunks == SSE_CHUNKS
    assert back.body == b"".join(SSE_CHUNKS)


def test_a_whole_body_round_trips() -> None:
    answer = CachedAnswer.capture(201, [("content-type", "application/json")], [b'{"ok":true}'], stream=False)
    back = CachedAnswer.from_bytes(answer.to_bytes())
    assert (back.status, back.body, back.stream, back.provider) == (201, b'{"ok":true}', False, None)


def test_the_calls_usage_is_kept_with_the_entry() -> None:
    usage = Usage(25, 14, cache_read_tokens=5, reasoning_tokens=3)
    answer = CachedAnswer.capture(200, [], SSE_CHUNKS, stream=True, usage=usage)
    back = CachedAnswer.from_bytes(answer.to_bytes())
    assert back.usage == usage and back.usage is not None
    assert (back.usage.cache_read_tokens, back.usage.cache_write_tokens, back.usage.reasoning_tokens) == (5, None, 3)
    assert CachedAnswer.from_bytes(CachedAnswer(200, (), (b"{}",), False).to_bytes()).usage is None


@pytest.mark.parametrize("stream", [False, True])
def test_an_entry_written_without_usage_has_it_read_from_its_body(stream: bool) -> None:
    """Entries stored before usage was kept with them (in Redis, across an upgrade) still log tokens."""
    usage = b'{"usage":{"prompt_tokens":7,"completion_tokens":2}}'
    chunks = (b"data: " + usage + b"\n\n", b"data: [DONE]\n\n") if stream else (usage,)
    meta = orjson.dumps({"status": 200, "headers": [], "stream": stream, "chunks": [len(c) for c in chunks],
                         "provider": "openai", "model": "m"})  # fmt: skip
    old = b"SPC1" + len(meta).to_bytes(4, "big") + meta + b"".join(chunks)
    assert CachedAnswer.from_bytes(old).usage == Usage(7, 2)


@pytest.mark.parametrize("data", [b"", b"junk", CachedAnswer(200, (), (b"abc",), False).to_bytes()[:-1]])
def test_anything_else_is_not_a_cached_answer(data: bytes) -> None:
    with pytest.raises(ValueError):
        CachedAnswer.from_bytes(data)


def test_recorder_lets_go_of_answers_over_the_cap() -> None:
    recorder = Recorder(max_bytes=10)
    recorder.add(b"12345")
    recorder.add(b"67890")
    answer = recorder.answer(200, [], stream=True)
    assert answer is not None and answer.chunks == (b"12345", b"67890")
    recorder.add(b"x")
    assert recorder.answer(200, [], stream=True) is None
    assert recorder.chunks == []


# -- the cache -------------------------------------------------------------------------------------------


def ok(body: bytes = b'{"answer":1}', status: int = 200) -> CachedAnswer:
    return CachedAnswer(status, (("content-type", "application/json"),), (body,), False)


async def test_only_successful_answers_within_the_cap_are_stored() -> None:
    cache = ResponseCache(MemoryState(), max_entry_bytes=100)
    assert await cache.store("a", ok(), 60)
    assert await cache.lookup("a") == ok()
    for name, answer in (("e", ok(status=500)), ("r", ok(status=429)), ("big", ok(b"x" * 101))):
        assert not await cache.store(name, answer, 60)
        assert await cache.lookup(name) is None


async def test_an_entry_is_decoded_once_while_its_bytes_stay_the_same() -> None:
    cache = ResponseCache(MemoryState())
    await cache.store("k", ok(), 60)
    first = await cache.lookup("k")
    assert first == ok() and await cache.lookup("k") is first
    await cache.store("k", ok(b'{"answer":2}'), 60)
    assert await cache.lookup("k") == ok(b'{"answer":2}')


async def test_decoded_entries_from_another_store_are_compared_by_value(own_redis: OwnRedis) -> None:
    state = RedisState.from_url(own_redis.url)
    try:
        cache = ResponseCache(state)
        await cache.store("k", ok(), 60)
        first = await cache.lookup("k")
        assert await cache.lookup("k") is first  # equal bytes, a fresh object each read
        await cache.store("k", ok(b'{"answer":2}'), 60)
        assert await cache.lookup("k") == ok(b'{"answer":2}')
    finally:
        await state.aclose()


async def test_decoded_entries_are_bounded() -> None:
    cache = ResponseCache(MemoryState())
    big = b"x" * (DECODED_MAX_BYTES // 64)
    for i in range(40):
        await cache.store(f"k{i}", ok(big), 60)
        assert await cache.lookup(f"k{i}") == ok(big)
    assert cache._decoded_bytes <= DECODED_MAX_BYTES
    assert len(cache._decoded) < 40


def test_the_key_memo_is_bounded_and_checks_the_snapshot() -> None:
    memo, snapshot = KeyMemo(), object()
    memo.put(("q",), snapshot, "k1", 10)
    assert memo.get(("q",), snapshot) == "k1"
    assert memo.get(("q",), object()) is None  # credentials changed since
    memo.put(("big",), snapshot, "k2", KEY_MEMO_BODY + 1)
    assert memo.get(("big",), snapshot) is None
    for i in range(KEY_MEMO_ENTRIES):
        memo.put((i,), snapshot, str(i), 1)
    assert len(memo._entries) <= KEY_MEMO_ENTRIES and memo.get(("q",), snapshot) is None


class Unreachable:
    async def get(self, key: str) -> bytes | None:
        raise StateUnavailable("down")

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        raise StateUnavailable("down")


async def test_an_unreachable_store_is_a_miss() -> None:
    cache = ResponseCache(Unreachable())
    assert await cache.lookup("k") is None
    assert not await cache.store("k", ok(), 60)
    async with cache.flight("k", CacheDirective(60)) as flight:
        assert flight.answer is None and flight.status == "MISS"
        flight.publish(ok())
    await cache.aclose()  # the write runs off the request path
    assert cache.failures == 4


async def test_a_killed_redis_is_a_miss_and_the_cache_comes_back(own_redis: OwnRedis) -> None:
    state = RedisState.from_url(own_redis.url, retry_interval_s=0.05, timeout_s=0.5)
    cache = ResponseCache(state)
    try:
        assert await cache.store("k", ok(), 60)
        own_redis.kill()
        assert await cache.lookup("k") is None
        assert not await cache.store("k", ok(), 60)
        own_redis.start()
        await asyncio.sleep(0.1)
        assert await cache.lookup("k") is None  # a fresh server
        assert await cache.store("k", ok(), 60)
        assert await cache.lookup("k") == ok()
    finally:
        await state.aclose()


async def test_an_unreadable_entry_is_a_miss() -> None:
    state = MemoryState()
    await state.set("k", b"garbage", 60)
    assert await ResponseCache(state).lookup("k") is None


async def test_a_published_answer_is_a_hit_until_its_ttl() -> None:
    clock = Clock()
    cache = ResponseCache(MemoryState(clock=clock))
    async with cache.flight("k", CacheDirective(60)) as flight:
        assert flight.status == "MISS"
        flight.publish(ok())
    await cache.aclose()
    async with cache.flight("k", CacheDirective(60)) as flight:
        assert flight.status == "HIT" and flight.answer == ok()
    async with cache.flight("k", CacheDirective(60, skip_lookup=True)) as flight:
        assert flight.answer is None  # skip: fetch fresh, and the fresh answer replaces the entry
        flight.publish(ok(b'{"answer":2}'))
    await cache.aclose()
    assert await cache.lookup("k") == ok(b'{"answer":2}')
    clock.now += 61
    assert await cache.lookup("k") is None


async def test_a_flight_entered_without_async_with_holds_nothing_on_a_hit_and_releases_a_miss() -> None:
    cache = ResponseCache(MemoryState())
    miss = await cache.flight("k", CacheDirective(60)).enter()
    assert miss.answer is None and "k" in cache._flights  # the first miss is the one waited for
    waiter = asyncio.ensure_future(cache.flight("k", CacheDirective(60)).enter())
    await asyncio.sleep(0)
    miss.publish(ok())
    miss.release()
    assert (await waiter).answer == ok()
    await cache.aclose()  # joinable until the store has it, then gone
    assert not cache._flights
    hit = await cache.flight("k", CacheDirective(60)).enter()
    assert hit.status == "HIT" and hit.answer == ok() and not cache._flights


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


# -- coalescing -----------------------------------------------------------------------------------------


async def serve(
    cache: ResponseCache, key: str, produce: Any, directive: CacheDirective | None = None
) -> tuple[str, Any]:
    """What the pipeline does with a flight: serve a hit, or call upstream and publish."""
    async with cache.flight(key, directive or CacheDirective(60)) as flight:
        if flight.answer is not None:
            return flight.status, flight.answer
        answer = await produce()
        flight.publish(answer)
        return flight.status, answer


class CountingUpstream:
    """An upstream that answers `answer` after `delay` seconds and counts its calls."""

    def __init__(self, answer: CachedAnswer, delay: float) -> None:
        self.answer, self.delay, self.calls = answer, delay, 0

    async def __call__(self) -> CachedAnswer:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return self.answer


async def test_identical_concurrent_misses_make_one_upstream_call() -> None:
    cache = ResponseCache(MemoryState())
    stream = CachedAnswer(200, (("content-type", "text/event-stream"),), SSE_CHUNKS, True)
    produce = CountingUpstream(stream, 0.05)

    results = await asyncio.gather(*(serve(cache, "same", produce) for _ in range(10)))
    assert produce.calls == 1
    assert sorted(status for status, _ in results) == ["HIT"] * 9 + ["MISS"]
    assert all(answer.chunks == SSE_CHUNKS for _, answer in results)
    assert not cache._flights


class SlowStore(MemoryState):
    """A store whose reads suspend, as Redis's do: misses overlap in their lookups."""

    async def get(self, key: str) -> bytes | None:
        await asyncio.sleep(0.01)
        return await super().get(key)


async def test_misses_whose_lookups_overlap_still_make_one_upstream_call() -> None:
    cache = ResponseCache(SlowStore())
    produce = CountingUpstream(ok(), 0.05)

    results = await asyncio.gather(*(serve(cache, "same", produce) for _ in range(10)))
    assert produce.calls == 1
    assert sorted(status for status, _ in results) == ["HIT"] * 9 + ["MISS"]
    assert not cache._flights
    assert [await serve(cache, "same", produce) for _ in range(2)] == [("HIT", ok())] * 2
    assert not cache._flights  # a hit registers nothing


async def test_a_failed_first_call_releases_the_waiters_to_call_themselves() -> None:
    cache = ResponseCache(MemoryState())
    calls = 0

    async def produce() -> CachedAnswer | None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        return ok(status=503) if calls == 1 else ok()

    results = await asyncio.gather(*(serve(cache, "k", produce) for _ in range(5)))
    assert calls == 5
    assert [status for status, _ in results] == ["MISS"] * 5
    assert await cache.lookup("k") == ok()


async def test_an_exception_in_the_first_call_releases_the_waiters() -> None:
    cache = ResponseCache(MemoryState())
    calls = 0

    async def produce() -> CachedAnswer:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        if calls == 1:
            raise ConnectionResetError("client went away")
        return ok()

    results = await asyncio.gather(*(serve(cache, "k", produce) for _ in range(4)), return_exceptions=True)
    assert isinstance(results[0], ConnectionResetError)
    assert calls == 4
    assert not cache._flights


async def test_waiters_share_a_hit_found_by_the_first_call() -> None:
    state = MemoryState()
    cache = ResponseCache(state)
    await cache.store("k", ok(), 60)

    async def produce() -> CachedAnswer:
        raise AssertionError("no upstream call on a hit")

    results = await asyncio.gather(*(serve(cache, "k", produce) for _ in range(5)))
    assert [status for status, _ in results] == ["HIT"] * 5


async def test_skip_lookup_calls_are_not_coalesced() -> None:
    cache = ResponseCache(MemoryState())
    produce = CountingUpstream(ok(), 0.02)

    skip = CacheDirective(60, skip_lookup=True)
    await asyncio.gather(*(serve(cache, "k", produce, skip) for _ in range(3)))
    assert produce.calls == 3


async def test_different_keys_do_not_wait_for_each_other() -> None:
    cache = ResponseCache(MemoryState())
    calls: list[str] = []

    def producer(name: str) -> Any:
        async def produce() -> CachedAnswer:
            calls.append(name)
            await asyncio.sleep(0.02)
            return ok(name.encode())

        return produce

    await asyncio.gather(*(serve(cache, k, producer(k)) for k in ("a", "b", "c")))
    assert sorted(calls) == ["a", "b", "c"]


# -- stores off the request path, shared live chunks ----------------------------------------------------


class HeldStore(MemoryState):
    """A store whose writes wait until `release` is set (or fail with `error`)."""

    def __init__(self, error: BaseException | None = None) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.error = error

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self.release.wait()
        if self.error is not None:
            raise self.error
        await super().set(key, value, ttl_s)


async def test_publish_does_not_wait_for_the_store_and_the_flight_answers_until_it_lands() -> None:
    store = HeldStore()
    cache = ResponseCache(store)
    leader = await cache.flight("k", CacheDirective(60)).enter()
    leader.publish(ok())  # returns at once: the write is still held
    leader.release()
    assert await cache.lookup("k") is None and "k" in cache._flights
    late = await cache.flight("k", CacheDirective(60)).enter()  # arrives meanwhile: served, no miss
    assert late.answer == ok() and late.status == "HIT"
    store.release.set()
    await cache.aclose()
    assert await cache.lookup("k") == ok() and not cache._flights and cache.failures == 0


async def test_a_store_that_fails_in_any_way_is_counted() -> None:
    store = HeldStore(RuntimeError("boom"))
    cache = ResponseCache(store)
    async with cache.flight("k", CacheDirective(60)) as flight:
        flight.publish(ok())
    store.release.set()
    await cache.aclose()
    assert cache.failures == 1 and not cache._flights


async def test_aclose_cancels_stores_that_do_not_end_and_counts_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("switchpoint.cache.entries.CLOSE_WAIT_S", 0.01)
    cache = ResponseCache(HeldStore())
    cache.store_soon("k", ok(), 60)
    await cache.aclose()
    assert cache.failures == 1 and not cache._storing


def opening(stream: bool = True) -> Any:
    return lambda: (200, [("content-type", "text/event-stream"), ("x-request-id", "r1")], stream, "openai", "m")


async def test_followers_share_the_leaders_chunks_past_the_cap_until_the_flight_ends() -> None:
    cache = ResponseCache(MemoryState(), max_entry_bytes=10)
    leader = await cache.flight("k", CacheDirective(60)).enter()
    recorder = leader.recorder(opening())
    recorder.add(b"data: 1\n\n")
    follower = await cache.flight("k", CacheDirective(60)).enter()
    live = follower.live
    assert live is not None and follower.status == "HIT" and follower.answer is None
    assert live.chunks is recorder.chunks  # one list, read by index: nothing copied per follower
    assert (live.status, list(live.header_map.items())) == (200, [("content-type", "text/event-stream")])
    recorder.add(b"data: 2\n\n")  # past the cap: not cacheable, still kept for followers
    assert recorder.overflowed and live.chunks == [b"data: 1\n\n", b"data: 2\n\n"]
    late = await cache.flight("k", CacheDirective(60)).enter()
    assert late.live is live and live.joined == 2
    leader.publish(recorder.answer(200, (), True), True, None, Usage(1, 2), b"body", 18)
    leader.release()
    assert live.ended and live.complete and live.usage == Usage(1, 2) and not cache._flights
    assert await cache.lookup("k") is None  # too large to store
    follower.leave()
    late.leave()
    assert live.joined == 0


async def test_a_recorder_without_followers_drops_its_chunks_past_the_cap() -> None:
    cache = ResponseCache(MemoryState(), max_entry_bytes=10)
    recorder = cache.recorder()
    recorder.add(b"data: 1\n\n")
    recorder.add(b"data: 2\n\n")
    assert recorder.overflowed and recorder.chunks == [] and recorder.answer(200, (), True) is None


async def test_a_whole_answer_reaches_its_waiters_when_published_not_live() -> None:
    cache = ResponseCache(MemoryState())
    leader = await cache.flight("k", CacheDirective(60)).enter()
    waiter = asyncio.ensure_future(cache.flight("k", CacheDirective(60)).enter())
    await asyncio.sleep(0)
    recorder = leader.recorder(opening(stream=False))
    recorder.add(b'{"answer":1}')
    await asyncio.sleep(0)
    assert not waiter.done()  # a whole answer is not followed chunk by chunk
    leader.publish(ok())
    leader.release()
    got = await waiter
    assert got.answer == ok() and got.live is None
    await cache.aclose()
    assert not cache._flights


async def test_a_joiner_waits_its_own_first_byte_timeout_at_most() -> None:
    cache = ResponseCache(MemoryState())
    leader = await cache.flight("k", CacheDirective(60)).enter()
    with pytest.raises(TimeoutError):
        await cache.flight("k", CacheDirective(60)).enter(20)
    assert leader.leads and not leader.followed  # the one that gave up no longer counts
    leader.release()


async def test_a_stream_past_the_cap_that_nobody_follows_takes_no_joiners_and_keeps_no_chunks() -> None:
    cache = ResponseCache(MemoryState(), max_entry_bytes=10)
    leader = await cache.flight("k", CacheDirective(60)).enter()
    recorder = leader.recorder(opening())
    recorder.add(b"data: 1\n\n")
    live = recorder.live
    assert live is not None and cache._flights["k"] is live
    recorder.add(b"data: 2\n\n")  # past the cap, nobody following
    assert recorder.overflowed and recorder.chunks == [] and live.chunks == [] and recorder.live is None
    assert "k" not in cache._flights and not recorder.followed
    late = await cache.flight("k", CacheDirective(60)).enter()
    assert late.live is None and late.answer is None and late.leads  # it makes its own call
    recorder.add(b"data: 3\n\n")
    assert recorder.chunks == [] and recorder.answer(200, (), True) is None
    leader.publish(None, True, None, None, None, 27)
    leader.release()
    assert cache._flights["k"] is not live  # the late call's own flight is left alone
    late.release()
    assert not cache._flights
