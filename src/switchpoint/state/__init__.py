"""Hot-path shared state behind narrow protocols: in-process by default, Redis when `redis_url` is set.

`open_state(config)` is the one way in; the composition root opens it once and `aclose()`s it at shutdown.
"""

from __future__ import annotations

from switchpoint.config import Config, Technique
from switchpoint.state.base import (
    CacheBackend,
    Charge,
    CounterBackend,
    Decision,
    StateBackend,
    StateUnavailable,
)
from switchpoint.state.memory import MemoryState
from switchpoint.state.redis import RedisState

__all__ = [
    "CacheBackend",
    "Charge",
    "CounterBackend",
    "Decision",
    "MemoryState",
    "RedisState",
    "StateBackend",
    "StateUnavailable",
    "Technique",
    "open_state",
]


def open_state(config: Config) -> StateBackend:
    """Redis when the config names one (shared by every worker and machine), else this process's memory."""
    if config.redis_url:
        return RedisState.from_url(config.redis_url)
    return MemoryState(max_cache_bytes=config.server.cache_max_memory_bytes)
