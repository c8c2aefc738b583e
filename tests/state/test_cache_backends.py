"""One suite for every CacheBackend, then what only the in-process cache does: LRU by bytes, TTL by clock."""

from __future__ import annotations

import asyncio

from switchpoint.state import MemoryState, StateBackend


async def test_get_returns_what_set_stored(backend: StateBackend) -> None:
    assert await backend.get("absent") is None
    blob = bytes(range(256)) * 10
    await backend.set("entry", blob, 60)
    assert await backend.get("entry") == blob


async def test_set_replaces_an_entry(backend: StateBackend) -> None:
    await backend.set("entry", b"old", 60)
    await backend.set("entry", b"new", 60)
    assert await backend.get("entry") == b"new"


async def test_entries_expire_after_their_ttl(backend: StateBackend) -> None:
    await backend.set("short", b"x", 0.15)
    await backend.set("long", b"y", 60)
    await asyncio.sleep(0.3)
    assert await backend.get("short") is None
    assert await backend.get("long") == b"y"


async def test_a_zero_ttl_stores_nothing(backend: StateBackend) -> None:
    await backend.set("none", b"x", 0)
    assert await backend.get("none") is None


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_cache_evicts_least_recently_used_by_bytes() -> None:
    state = MemoryState(max_cache_bytes=3 * (1 + 100))  # key length counts too
    for key in "abc":
        await state.set(key, key.encode() * 100, 60)
    assert await state.get("a") is not None  # a is now the most recently used
    await state.set("d", b"d" * 100, 60)
    assert await state.get("b") is None
    assert [key for key in "acd" if await state.get(key) is not None] == ["a", "c", "d"]
    assert state.cache_bytes == 3 * 101
    await state.set("big", b"x" * 250, 60)  # needs the room of three entries
    assert [key for key in "acd" if await state.get(key) is not None] == []
    assert state.cache_bytes == 253


async def test_memory_cache_refuses_an_entry_larger_than_the_store() -> None:
    state = MemoryState(max_cache_bytes=100)
    await state.set("keep", b"k" * 10, 60)
    await state.set("huge", b"h" * 200, 60)
    assert await state.get("huge") is None
    assert await state.get("keep") == b"k" * 10


async def test_memory_cache_ttl_follows_its_clock() -> None:
    clock = Clock()
    state = MemoryState(clock=clock)
    await state.set("k", b"v", 60)
    clock.now += 59.9
    assert await state.get("k") == b"v"
    clock.now += 0.2
    assert await state.get("k") is None
    assert state.cache_bytes == 0
