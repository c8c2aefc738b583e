"""Fixtures for the state backends: each counter and cache test runs against memory and against Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from switchpoint.state import MemoryState, RedisState, StateBackend
from tests.state.redis_support import delete_prefix, own_redis, own_redis_with_password, redis_url

__all__ = ["own_redis", "own_redis_with_password", "redis_url"]


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[StateBackend]:
    if request.param == "memory":
        memory = MemoryState()
        yield memory
        await memory.aclose()
        return
    url: str = request.getfixturevalue("redis_url")
    prefix = f"sp-test:{uuid.uuid4().hex}:"
    state = RedisState.from_url(url, prefix=prefix)
    yield state
    await state.aclose()
    await delete_prefix(url, prefix)
