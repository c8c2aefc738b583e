"""Running a compiled route: a walk over its frozen nodes, interleaved with the caller's I/O.

Start, conditional and percentage nodes decide on their own; rate nodes consume from the injected `Limiter`;
model nodes run `routing.attempts.run_steps` over the injected `send` (retries, backoff, Retry-After, the
first-byte timeout). A model node succeeds when a non-retryable answer below 400 arrives, i.e. once its head
(the first byte) is in; it falls back after its retries are spent, on a timeout or on an error answer. `end`
returns the last success, or raises an error that lists what every attempt got.

Budgets (`limitType: cost`) consume `COST_ESTIMATE` (0) before the call: a budget admits calls until the
spend recorded against it reaches the limit. `RouteOutcome.charges` is the settle hook: once the call's cost
is known, record it against each charge's bucket (`MemoryLimiter.add`, or the state backend's equivalent).
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol

from switchpoint.errors import BudgetExceeded, RateLimited, UpstreamError
from switchpoint.routing.attempts import A, RetryPolicy, run_steps
from switchpoint.routing.compile import (
    CompiledRoute,
    ConditionNode,
    EndNode,
    LimitNode,
    ModelNode,
    ModelStep,
    SplitNode,
    StartNode,
)
from switchpoint.routing.conditions import MISSING, RouteRequest

COST_ESTIMATE = 0.0

Send = Callable[[ModelStep, RetryPolicy], Awaitable[A]]
Rng = Callable[[], float]


class Limiter(Protocol):
    async def consume(self, bucket: str, amount: float, limit: float, window_s: int, technique: str) -> bool:
        """Atomically take `amount` if it fits under `limit` for the window; False (nothing taken) if not."""
        ...


class LimitPeek(Protocol):
    async def peek(self, bucket: str, amount: float, limit: float, window_s: int, technique: str) -> bool:
        """Whether `consume` would admit this now, taking nothing (for explain)."""
        ...


@dataclass(slots=True)  # not frozen: built on the hot path, where frozen costs ~3x
class AttemptRecord:
    """One upstream attempt: the status of its answer, or the error that stood in for one."""

    element_id: str
    provider: str
    model: str
    status: int | None
    error: str | None

    def describe(self) -> str:
        got = f"HTTP {self.status}" if self.status is not None else (self.error or "no answer")
        return f"{self.element_id} ({self.provider}/{self.model}): {got}"


@dataclass(slots=True)  # not frozen: built on the hot path, where frozen costs ~3x
class Charge:
    """A budget element the call passed: settle the call's real cost against `bucket` when it is known."""

    element_id: str
    bucket: str
    limit: float
    window_s: int
    technique: str


@dataclass(slots=True)  # not frozen: built on the hot path, where frozen costs ~3x
class RouteOutcome(Generic[A]):
    """The answer to relay (the caller releases it), the step that produced it, and how the walk went."""

    answer: A
    step: ModelStep
    path: tuple[str, ...]
    attempts: tuple[AttemptRecord, ...]
    charges: tuple[Charge, ...]


class RouteFailed(UpstreamError):
    """The route reached its end without a successful model answer."""

    def __init__(self, route: str, path: tuple[str, ...], attempts: tuple[AttemptRecord, ...]) -> None:
        self.path = path
        self.attempts = attempts
        trail = " → ".join(path)
        if attempts:
            tried = "; ".join(f"attempt {n}: {a.describe()}" for n, a in enumerate(attempts, 1))
            message = f"Dynamic route '{route}' got no successful answer ({tried}); path: {trail}"
        else:
            message = f"Dynamic route '{route}' ended without calling a model; path: {trail}"
        super().__init__(message)


def limit_error(route: CompiledRoute, node: LimitNode) -> RateLimited | BudgetExceeded:
    """A rate element refused the call and the route got no answer: 429, as the gateway's own limits do."""
    what = "budget" if node.cost else "rate limit"
    per = f"{node.limit:g} per {node.window_s} s, {node.technique}"
    key = f" for {node.key_path}" if node.key_path else ""
    message = f"Dynamic route '{route.name}': {what} '{node.id}' ({per}) exceeded{key}"
    return BudgetExceeded(message) if node.cost else RateLimited(message)


def sticky_point(salt: str, value: Any) -> float:
    """A point in [0, 100) fixed by the value: stable across calls, processes and restarts. CRC-32 (fast, in C)
    then MurmurHash3's finalizer, whose multiplications break CRC's linearity, so splits salted differently
    place the same value independently."""
    h = zlib.crc32(f"{salt}={value}".encode())
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h / 4294967296.0 * 100.0


def split_point(node: SplitNode, request: RouteRequest, rng: Rng) -> tuple[float, Any]:
    """Where this request falls in [0, 100), and the sticky value that placed it (MISSING when random)."""
    if node.sticky is not None:
        value = node.sticky(request)
        if value is not MISSING and value is not None:
            return sticky_point(node.salt, value), value
    return rng() * 100.0, MISSING


def pick_branch(node: SplitNode, point: float) -> tuple[str, str]:
    """(label, target) of the branch whose share holds `point`."""
    for bound, label, target in node.branches:
        if point < bound:
            return label, target
    _, label, target = node.branches[-1]
    return label, target


def choose_next(node: StartNode | ConditionNode | SplitNode, request: RouteRequest, rng: Rng) -> str:
    """The pure decisions: where start, conditional and percentage nodes send this request."""
    if isinstance(node, ConditionNode):
        return node.if_true if node.test(request) else node.if_false
    if isinstance(node, SplitNode):
        return pick_branch(node, split_point(node, request, rng)[0])[1]
    return node.next


def step_policy(node: ModelNode, defaults: RetryPolicy) -> RetryPolicy:
    """The element's retries and timeout; delay and backoff (and a missing timeout) from the request's."""
    step = node.step
    timeout = step.timeout_ms if step.timeout_ms is not None else defaults.first_byte_timeout_ms
    if defaults.delay_ms == 0 and timeout == step.timeout_ms:
        return node.policy  # built at compile time: no delay means the backoff does not matter
    return RetryPolicy(step.retries + 1, defaults.delay_ms, defaults.backoff, timeout)


async def run_route(
    route: CompiledRoute,
    request: RouteRequest,
    send: Send[A],
    limiter: Limiter,
    *,
    defaults: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: Rng = random.random,
) -> RouteOutcome[A]:
    """Walk `route` for `request`. `send(step, policy)` makes one upstream attempt and returns an answer whose
    head has arrived, or raises `UpstreamError`. Raises `RouteFailed`, or `RateLimited`/`BudgetExceeded` when a
    limit without a fallback (or whose fallback ends the route) refused the call before any model answered."""
    return await _Walk(route, request, send, limiter, defaults, sleep, rng).run()


class _Walk(Generic[A]):
    """The state of one walk: the path so far, every attempt, and the last successful answer (owned here
    until it is returned; released if a later model also succeeds or the walk is cancelled)."""

    def __init__(
        self,
        route: CompiledRoute,
        request: RouteRequest,
        send: Send[A],
        limiter: Limiter,
        defaults: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]],
        rng: Rng,
    ) -> None:
        self.route, self.request, self.send, self.limiter = route, request, send, limiter
        self.defaults, self.sleep, self.rng = defaults, sleep, rng
        self.path: list[str] = []
        self.attempts: list[AttemptRecord] = []
        self.charges: list[Charge] = []
        self.held: tuple[A, ModelStep] | None = None
        self.refused: LimitNode | None = None

    async def run(self) -> RouteOutcome[A]:
        nodes, request, visit = self.route.nodes, self.request, self.path.append
        node = nodes[self.route.start]
        try:
            while True:  # the graph is acyclic (compile checks), so every walk reaches an end
                visit(node.id)
                kind = type(node)
                target: str | None
                if kind is ConditionNode:  # the common case first, without a call
                    target = node.if_true if node.test(request) else node.if_false  # type: ignore[union-attr]
                elif kind is ModelNode:
                    target = await self._model(node)  # type: ignore[arg-type]
                elif kind is LimitNode:
                    target = await self._limit(node)  # type: ignore[arg-type]
                elif kind is EndNode:
                    return self._finish()
                else:
                    target = choose_next(node, request, self.rng)  # type: ignore[arg-type]
                if target is None:
                    return self._finish()
                node = nodes[target]
        except BaseException:
            if self.held is not None:
                self.held[0].release()
            raise

    async def _model(self, node: ModelNode) -> str:
        step = node.step
        try:
            outcome = await run_steps([(step, step_policy(node, self.defaults))], self._send, self.sleep)
        except UpstreamError:
            return node.fallback
        answer = outcome.answer
        if answer.status >= 400:
            answer.release()
            return node.fallback
        if self.held is not None:
            self.held[0].release()
        self.held = (answer, step)
        return node.success

    async def _send(self, step: ModelStep, policy: RetryPolicy) -> A:
        try:
            answer = await self.send(step, policy)
        except UpstreamError as exc:
            self.attempts.append(AttemptRecord(step.element_id, step.provider, step.model, None, exc.message))
            raise
        self.attempts.append(AttemptRecord(step.element_id, step.provider, step.model, answer.status, None))
        return answer

    async def _limit(self, node: LimitNode) -> str | None:
        bucket = node.bucket(self.request)
        amount = COST_ESTIMATE if node.cost else 1.0
        if await self.limiter.consume(bucket, amount, node.limit, node.window_s, node.technique):
            if node.cost:
                self.charges.append(Charge(node.id, bucket, node.limit, node.window_s, node.technique))
            return node.success
        self.refused = node
        return node.fallback

    def _finish(self) -> RouteOutcome[A]:
        if self.held is not None:
            answer, step = self.held
            self.held = None
            return RouteOutcome(answer, step, tuple(self.path), tuple(self.attempts), tuple(self.charges))
        if not self.attempts and self.refused is not None:
            raise limit_error(self.route, self.refused)
        raise RouteFailed(self.route.name, tuple(self.path), tuple(self.attempts))
