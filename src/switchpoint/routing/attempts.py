"""The attempt loop: steps tried in order, each retried with backoff, over an injected `send`.

`run_steps` → `_run_step` (retries, backoff, Retry-After) → `send` (one attempt, owned by the caller).
Answers that are not kept are released on every exit path, so no upstream connection leaks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from switchpoint.errors import GatewayError, UpstreamError

Backoff = Literal["constant", "linear", "exponential"]
MAX_ATTEMPTS = 5
MAX_DELAY_MS = 5000
# Retry-After beyond this is not waited for: the caller gets the 429 and decides.
MAX_RETRY_AFTER_S = 30.0
RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 1
    delay_ms: int = 0
    backoff: Backoff = "constant"
    first_byte_timeout_ms: int | None = None

    def delay(self, retry_number: int) -> float:
        """Seconds to wait before retry `retry_number` (1-based)."""
        base = self.delay_ms / 1000
        if self.backoff == "linear":
            return base * retry_number
        if self.backoff == "exponential":
            return base * float(2 ** (retry_number - 1))
        return base


class Answer(Protocol):
    """What `send` returns: an upstream response whose status is known and whose body is unread."""

    @property
    def status(self) -> int: ...

    @property
    def retry_after(self) -> float | None: ...

    def release(self) -> None: ...


A = TypeVar("A", bound=Answer)
S = TypeVar("S")


@dataclass(slots=True)
class Outcome(Generic[A]):
    answer: A
    step: int
    attempts: int


Send = Callable[[S, RetryPolicy], Awaitable[A]]


def _retryable(answer: Answer) -> bool:
    return answer.status in RETRYABLE_STATUS


async def run_steps(
    steps: Sequence[tuple[S, RetryPolicy]],
    send: Callable[[S, RetryPolicy], Awaitable[A]],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Outcome[A]:
    """Try each step; the first good answer wins. When all fail, the last answer (or error) is the result."""
    attempts = 0
    for index, (step, policy) in enumerate(steps):
        last = index == len(steps) - 1
        try:
            answer, used = await _run_step(step, policy, send, sleep, keep_failure=last)
        except UpstreamError:
            attempts += max(1, min(policy.max_attempts, MAX_ATTEMPTS))
            if last:
                raise
            continue
        attempts += used
        if answer is not None:
            return Outcome(answer, index, attempts)
    raise GatewayError("no steps to try")  # unreachable with a non-empty plan


async def _run_step(
    step: S,
    policy: RetryPolicy,
    send: Callable[[S, RetryPolicy], Awaitable[A]],
    sleep: Callable[[float], Awaitable[None]],
    keep_failure: bool,
) -> tuple[A | None, int]:
    """Retry one step; returns (answer, attempts). A failing answer is kept only when it is the last word."""
    total = max(1, min(policy.max_attempts, MAX_ATTEMPTS))
    for attempt in range(1, total + 1):
        final = attempt == total
        try:
            answer = await send(step, policy)
        except UpstreamError:
            if final:
                raise
            await sleep(policy.delay(attempt))
            continue
        if answer.status < 400:
            return answer, attempt
        if not _retryable(answer):  # a definite "no": retrying it is pointless, the next step may do better
            if keep_failure:
                return answer, attempt
            answer.release()
            return None, attempt
        wait = max(policy.delay(attempt), answer.retry_after or 0.0)
        if final or wait > MAX_RETRY_AFTER_S:
            if keep_failure:
                return answer, attempt
            answer.release()
            return None, attempt
        answer.release()
        await sleep(wait)
    return None, total
