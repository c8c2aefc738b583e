"""`routing.attempts`: retries, backoff, Retry-After and fallback over a scripted `send`; no real sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from switchpoint.errors import UpstreamError, UpstreamReset, UpstreamTimeout, UpstreamUnavailable
from switchpoint.routing.attempts import MAX_ATTEMPTS, MAX_RETRY_AFTER_S, Outcome, RetryPolicy, run_steps


@dataclass(eq=False)
class FakeAnswer:
    status: int
    retry_after: float | None = None
    name: str = ""
    releases: int = 0

    def release(self) -> None:
        self.releases += 1


Script = list["FakeAnswer | BaseException"]


@dataclass
class Harness:
    """`send` plays each step's script in order; `sleep` only records the delay."""

    scripts: dict[str, Script]
    sent: list[str] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    policies: list[RetryPolicy] = field(default_factory=list)

    async def send(self, step: str, policy: RetryPolicy) -> FakeAnswer:
        self.sent.append(step)
        self.policies.append(policy)
        item = self.scripts[step].pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)

    async def run(self, steps: Sequence[tuple[str, RetryPolicy]]) -> Outcome[FakeAnswer]:
        return await run_steps(steps, self.send, self.sleep)

    def answers(self) -> list[FakeAnswer]:
        return [a for script in self.scripts.values() for a in script if isinstance(a, FakeAnswer)]


def ok(name: str = "ok") -> FakeAnswer:
    return FakeAnswer(200, name=name)


def policy(attempts: int = 1, delay_ms: int = 0, backoff: str = "constant") -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, delay_ms=delay_ms, backoff=backoff)  # type: ignore[arg-type]


async def test_success_first_try() -> None:
    good = ok()
    h = Harness({"a": [good]})
    outcome = await h.run([("a", policy(3, 100))])
    assert (outcome.answer, outcome.step, outcome.attempts) == (good, 0, 1)
    assert h.delays == [] and good.releases == 0


@pytest.mark.parametrize("status", [500, 502, 503, 504, 529, 429, 408, 409])
async def test_retryable_status_then_success(status: int) -> None:
    bad, good = FakeAnswer(status), ok()
    h = Harness({"a": [bad, good]})
    outcome = await h.run([("a", policy(3, 250))])
    assert (outcome.answer, outcome.step, outcome.attempts) == (good, 0, 2)
    assert h.delays == [0.25]
    assert bad.releases == 1 and good.releases == 0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
async def test_non_retryable_status_is_returned_at_once(status: int) -> None:
    bad = FakeAnswer(status)
    h = Harness({"a": [bad, ok()]})
    outcome = await h.run([("a", policy(5, 100))])
    assert (outcome.answer, outcome.step, outcome.attempts) == (bad, 0, 1)
    assert h.sent == ["a"] and h.delays == [] and bad.releases == 0


@pytest.mark.parametrize("status", [201, 204, 301, 304])
async def test_other_non_error_statuses_are_answers(status: int) -> None:
    answer = FakeAnswer(status)
    outcome = await Harness({"a": [answer]}).run([("a", policy(3))])
    assert outcome.answer is answer


async def test_retry_after_longer_than_the_backoff_is_honoured() -> None:
    h = Harness({"a": [FakeAnswer(429, retry_after=2.5), ok()]})
    await h.run([("a", policy(2, 100))])
    assert h.delays == [2.5]


async def test_backoff_longer_than_retry_after_wins() -> None:
    h = Harness({"a": [FakeAnswer(503, retry_after=0.05), ok()]})
    await h.run([("a", policy(2, 1000))])
    assert h.delays == [1.0]


async def test_retry_after_at_the_cap_is_waited_for() -> None:
    h = Harness({"a": [FakeAnswer(429, retry_after=MAX_RETRY_AFTER_S), ok()]})
    outcome = await h.run([("a", policy(2))])
    assert h.delays == [MAX_RETRY_AFTER_S] and outcome.answer.status == 200


async def test_retry_after_above_the_cap_is_not_waited_for() -> None:
    limited = FakeAnswer(429, retry_after=MAX_RETRY_AFTER_S + 1)
    h = Harness({"a": [limited, ok()]})
    outcome = await h.run([("a", policy(3, 100))])
    assert (outcome.answer, outcome.attempts) == (limited, 1)
    assert h.delays == [] and h.sent == ["a"] and limited.releases == 0


async def test_retry_after_above_the_cap_moves_to_the_next_step() -> None:
    limited, good = FakeAnswer(429, retry_after=3600), ok()
    h = Harness({"a": [limited], "b": [good]})
    outcome = await h.run([("a", policy(3)), ("b", policy())])
    assert (outcome.answer, outcome.step, outcome.attempts) == (good, 1, 2)
    assert h.delays == [] and limited.releases == 1


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        ("constant", [0.2, 0.2, 0.2, 0.2]),
        ("linear", [0.2, 0.4, 0.6, 0.8]),
        ("exponential", [0.2, 0.4, 0.8, 1.6]),
    ],
)
async def test_backoff_delays(backoff: str, expected: list[float]) -> None:
    failures = [FakeAnswer(503) for _ in range(5)]
    h = Harness({"a": list(failures)})
    outcome = await h.run([("a", policy(5, 200, backoff))])
    assert h.delays == pytest.approx(expected)
    assert outcome.answer is failures[-1] and outcome.attempts == 5
    assert [f.releases for f in failures] == [1, 1, 1, 1, 0]


@pytest.mark.parametrize(
    ("backoff", "retry", "seconds"),
    [("constant", 3, 1.5), ("linear", 3, 4.5), ("exponential", 1, 1.5), ("exponential", 4, 12.0)],
)
def test_policy_delay(backoff: str, retry: int, seconds: float) -> None:
    assert policy(5, 1500, backoff).delay(retry) == pytest.approx(seconds)


def test_zero_delay() -> None:
    assert [policy(5, 0, "exponential").delay(n) for n in (1, 2, 3)] == [0, 0, 0]


async def test_max_attempts_is_capped_at_five() -> None:
    h = Harness({"a": [FakeAnswer(503) for _ in range(10)]})
    outcome = await h.run([("a", policy(10, 10))])
    assert len(h.sent) == MAX_ATTEMPTS == 5
    assert outcome.attempts == 5 and len(h.delays) == 4


async def test_max_attempts_below_one_still_tries_once() -> None:
    bad = FakeAnswer(503)
    h = Harness({"a": [bad, ok()]})
    outcome = await h.run([("a", policy(0))])
    assert (outcome.answer, outcome.attempts, h.sent) == (bad, 1, ["a"])


async def test_upstream_error_is_retried_then_succeeds() -> None:
    good = ok()
    h = Harness({"a": [UpstreamReset(), UpstreamTimeout(), good]})
    outcome = await h.run([("a", policy(3, 100, "linear"))])
    assert (outcome.answer, outcome.attempts) == (good, 3)
    assert h.delays == pytest.approx([0.1, 0.2])


async def test_upstream_error_is_reraised_on_the_last_attempt() -> None:
    last = UpstreamUnavailable("third")
    h = Harness({"a": [UpstreamReset(), UpstreamReset(), last, ok()]})
    with pytest.raises(UpstreamUnavailable) as info:
        await h.run([("a", policy(3, 100))])
    assert info.value is last
    assert len(h.sent) == 3 and h.delays == [0.1, 0.1]


async def test_other_exceptions_are_not_retried() -> None:
    h = Harness({"a": [ValueError("bug"), ok()]})
    with pytest.raises(ValueError):
        await h.run([("a", policy(3))])
    assert h.sent == ["a"]


async def test_first_step_exhausted_then_second_step() -> None:
    a1, a2, b = FakeAnswer(503, name="a1"), FakeAnswer(500, name="a2"), ok("b")
    h = Harness({"a": [a1, a2], "b": [b]})
    outcome = await h.run([("a", policy(2, 100)), ("b", policy(3, 100))])
    assert (outcome.answer, outcome.step, outcome.attempts) == (b, 1, 3)
    assert h.sent == ["a", "a", "b"]
    assert h.delays == [0.1]  # between a's tries only: no wait before falling back
    assert (a1.releases, a2.releases, b.releases) == (1, 1, 0)


async def test_step_errors_then_fallback_counts_every_try() -> None:
    good = ok()
    h = Harness({"a": [UpstreamReset(), UpstreamReset()], "b": [good]})
    outcome = await h.run([("a", policy(2)), ("b", policy())])
    assert (outcome.answer, outcome.step, outcome.attempts) == (good, 1, 3)


async def test_attempts_after_a_failing_step_count_tries_made_not_asked() -> None:
    h = Harness({"a": [UpstreamReset() for _ in range(5)], "c": [UpstreamReset()], "b": [ok()]})
    outcome = await h.run([("a", policy(9)), ("c", policy(0)), ("b", policy())])
    assert len(h.sent) == 7
    assert outcome.attempts == 7


async def test_each_step_gets_its_own_policy() -> None:
    pa, pb = policy(2, 10), policy(1, 0)
    h = Harness({"a": [FakeAnswer(503), FakeAnswer(503)], "b": [ok()]})
    await h.run([("a", pa), ("b", pb)])
    assert h.policies == [pa, pa, pb]


async def test_the_last_steps_failing_answer_is_returned_not_raised() -> None:
    a, b1, b2 = FakeAnswer(503), FakeAnswer(429), FakeAnswer(429)
    h = Harness({"a": [a], "b": [b1, b2]})
    outcome = await h.run([("a", policy()), ("b", policy(2))])
    assert (outcome.answer, outcome.step, outcome.attempts) == (b2, 1, 3)
    assert (a.releases, b1.releases, b2.releases) == (1, 1, 0)


async def test_the_last_steps_upstream_error_is_raised() -> None:
    a = FakeAnswer(503)
    h = Harness({"a": [a], "b": [UpstreamTimeout()]})
    with pytest.raises(UpstreamTimeout):
        await h.run([("a", policy()), ("b", policy())])
    assert a.releases == 1


async def test_a_good_first_step_never_tries_the_rest() -> None:
    good = ok()
    h = Harness({"a": [good], "b": [ok()]})
    outcome = await h.run([("a", policy()), ("b", policy())])
    assert (outcome.answer, outcome.step, h.sent) == (good, 0, ["a"])


async def test_non_retryable_error_on_an_earlier_step_falls_back() -> None:
    bad, good = FakeAnswer(401), ok()
    h = Harness({"a": [bad], "b": [good]})
    outcome = await h.run([("a", policy(3)), ("b", policy())])
    assert (outcome.answer, outcome.step, outcome.attempts) == (good, 1, 2)
    assert bad.releases == 1


async def test_non_retryable_error_on_the_last_step_is_returned() -> None:
    a, b = FakeAnswer(400), FakeAnswer(404)
    h = Harness({"a": [a], "b": [b]})
    outcome = await h.run([("a", policy(3)), ("b", policy(3))])
    assert (outcome.answer, outcome.step, outcome.attempts) == (b, 1, 2)
    assert (a.releases, b.releases) == (1, 0) and h.delays == []


async def test_every_discarded_answer_is_released_exactly_once() -> None:
    script: dict[str, Script] = {
        "a": [FakeAnswer(503), FakeAnswer(429, retry_after=0.5), FakeAnswer(502)],
        "b": [UpstreamReset(), FakeAnswer(500)],
        "c": [FakeAnswer(503), ok()],
    }
    h = Harness({k: list(v) for k, v in script.items()})
    outcome = await h.run([("a", policy(3, 100)), ("b", policy(2)), ("c", policy(2, 100, "exponential"))])
    everything = [a for items in script.values() for a in items if isinstance(a, FakeAnswer)]
    assert outcome.answer is everything[-1] and (outcome.step, outcome.attempts) == (2, 7)
    assert [a.releases for a in everything] == [1, 1, 1, 1, 1, 0]
    assert h.delays == [0.1, 0.5, 0.0, 0.1]


async def test_cancelled_during_backoff_releases_the_answer_once() -> None:
    bad = FakeAnswer(503)

    async def cancelled_sleep(delay: float) -> None:
        raise asyncio.CancelledError

    h = Harness({"a": [bad, ok()]})
    with pytest.raises(asyncio.CancelledError):
        await run_steps([("a", policy(3, 100))], h.send, cancelled_sleep)
    assert bad.releases == 1 and h.sent == ["a"]


async def test_default_sleep_is_asyncio_sleep() -> None:
    h = Harness({"a": [FakeAnswer(503), ok()]})
    outcome = await run_steps([("a", policy(2, 1))], h.send)
    assert outcome.answer.status == 200


def test_upstream_errors_are_one_family() -> None:
    for kind in (UpstreamReset, UpstreamTimeout, UpstreamUnavailable):
        assert issubclass(kind, UpstreamError)
