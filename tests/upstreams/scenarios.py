"""Failure scenarios the fake providers act out, selected by the request's model name.

The part of the model after its last ``/`` is matched, so ``@cf/x/error-500`` and ``error-500`` select
the same scenario; every SDK can send any model string, so tests need no side channel. ``reset-after-`` and
``truncated-after-<n>-chunks`` take an optional ``-paced-<ms>``: that many ms between events instead of the
default pace.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Kind = Literal[
    "normal",
    "error",
    "flaky",
    "reset-before-headers",
    "reset-after",
    "truncated-after",
    "stall-before",
    "stall-after",
    "slow-chunks",
]


@dataclass(frozen=True)
class Scenario:
    """What the fake does with one call; ``chunks`` counts SSE events (or body pieces when not streaming)."""

    kind: Kind = "normal"
    status: int = 0
    retry_after: str | None = None
    chunks: int = 0
    delay: float = 0.0
    failures: int = 0

    @property
    def fails_before_body(self) -> bool:
        return self.kind in ("error", "flaky", "reset-before-headers", "stall-before")


NORMAL = Scenario()

_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], Scenario]]] = [
    (
        re.compile(r"flaky-429-(\d+)(?:-|$)"),
        lambda m: Scenario("flaky", status=429, retry_after="0", failures=int(m[1])),
    ),
    (re.compile(r"flaky-(\d+)(?:-|$)"), lambda m: Scenario("flaky", status=503, failures=int(m[1]))),
    (
        re.compile(r"error-429-retry-after-(\d+)"),
        lambda m: Scenario("error", status=429, retry_after=m[1]),
    ),
    (re.compile(r"error-(\d{3})"), lambda m: Scenario("error", status=int(m[1]))),
    (re.compile(r"reset-before-headers"), lambda m: Scenario("reset-before-headers")),
    (
        re.compile(r"reset-after-(\d+)-chunks?(?:-paced-(\d+))?"),
        lambda m: Scenario("reset-after", chunks=int(m[1]), delay=int(m[2] or 0) / 1000),
    ),
    (
        re.compile(r"truncated-after-(\d+)-chunks?(?:-paced-(\d+))?"),
        lambda m: Scenario("truncated-after", chunks=int(m[1]), delay=int(m[2] or 0) / 1000),
    ),
    (re.compile(r"stall-before-(\d+)"), lambda m: Scenario("stall-before", delay=int(m[1]) / 1000)),
    (
        re.compile(r"stall-after-(\d+)-chunks?-(\d+)"),
        lambda m: Scenario("stall-after", chunks=int(m[1]), delay=int(m[2]) / 1000),
    ),
    (re.compile(r"slow-chunks-(\d+)"), lambda m: Scenario("slow-chunks", delay=int(m[1]) / 1000)),
]


def parse_scenario(model: object) -> Scenario:
    """Return the scenario a model name selects; anything unrecognised (or not a string) is ``NORMAL``."""
    if not isinstance(model, str):
        return NORMAL
    name = model.rsplit("/", 1)[-1]
    for pattern, build in _PATTERNS:
        match = pattern.search(name)
        if match:
            return build(match)
    return NORMAL


class FlakyCounter:
    """Counts calls per (provider, model string) so ``flaky-<n>-...`` fails exactly the first n of them."""

    def __init__(self) -> None:
        self._calls: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def should_fail(self, provider: str, model: str, failures: int) -> bool:
        with self._lock:
            seen = self._calls.get((provider, model), 0)
            self._calls[(provider, model)] = seen + 1
        return seen < failures

    def calls(self, provider: str, model: str) -> int:
        with self._lock:
            return self._calls.get((provider, model), 0)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
