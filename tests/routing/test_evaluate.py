"""`run_route` over a scripted upstream: every element type, splits, stickiness, limits, fallback chains, errors."""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter

import pytest

from switchpoint.errors import BudgetExceeded, RateLimited, UnknownKeyAlias, UpstreamReset, UpstreamTimeout
from switchpoint.routing.attempts import RetryPolicy
from switchpoint.routing.compile import CompiledRoute
from switchpoint.routing.conditions import RouteRequest
from switchpoint.routing.evaluate import RouteFailed, RouteOutcome, run_route
from switchpoint.routing.limits_memory import MemoryLimiter
from tests.routing.builders import Clock, FakeAnswer, Upstream, cond, end, model, rate, route, split, start


async def walk(
    compiled: CompiledRoute,
    metadata: dict[str, object] | None = None,
    upstream: Upstream | None = None,
    limiter: MemoryLimiter | None = None,
    **kwargs: object,
) -> RouteOutcome[FakeAnswer]:
    upstream = upstream or Upstream()
    request = RouteRequest.build(metadata or {}, {"x-team": "core"}, {"max_tokens": 10})
    return await run_route(
        compiled,
        request,
        upstream.send,
        limiter or MemoryLimiter(Clock()),
        sleep=upstream.sleep,
        **kwargs,  # type: ignore[arg-type]
    )


SUPPORT = route(
    start("is_paid"),
    cond("is_paid", {"metadata.plan": "paid"}, "budget", "quota"),
    rate("budget", "m_big", "m_small", limitType="cost", key="metadata.user_id", limit=5, window=86400),
    rate("quota", "m_small", "end", key="metadata.user_id", limit=2, window=3600),
    model("m_big", fallback="m_small"),
    model("m_small"),
    end(),
    name="support",
)


async def test_conditional_and_model_and_end() -> None:
    upstream = Upstream()
    outcome = await walk(SUPPORT, {"plan": "paid", "user_id": "u1"}, upstream)
    assert outcome.path == ("start", "is_paid", "budget", "m_big", "end")
    assert (
        outcome.step.element_id == "m_big" and outcome.step.provider == "openai" and outcome.step.model == "gpt-m_big"
    )
    assert outcome.answer.status == 200 and outcome.answer.releases == 0  # the caller owns it
    assert [(a.element_id, a.status) for a in outcome.attempts] == [("m_big", 200)]
    assert upstream.policies == [RetryPolicy(1, 0, "constant", 1000)]
    [charge] = outcome.charges  # the budget element passed: the settle hook
    assert (charge.element_id, charge.bucket, charge.limit) == ("budget", "route:default/support/budget=u1", 5)


async def test_rate_exhaustion_takes_the_fallback_per_key() -> None:
    limiter = MemoryLimiter(Clock())
    paths = [(await walk(SUPPORT, {"plan": "free", "user_id": "u1"}, limiter=limiter)).path for _ in range(2)]
    assert paths == [("start", "is_paid", "quota", "m_small", "end")] * 2
    with pytest.raises(RateLimited) as caught:  # u1's third call: fallback is `end` and no model answered
        await walk(SUPPORT, {"plan": "free", "user_id": "u1"}, limiter=limiter)
    assert caught.value.status == 429 and caught.value.cf_code == 2003
    assert "'quota'" in caught.value.message and "metadata.user_id" in caught.value.message
    assert (await walk(SUPPORT, {"plan": "free", "user_id": "u2"}, limiter=limiter)).step.element_id == "m_small"


@pytest.mark.parametrize(("technique", "reset_at"), [("fixed", 1020.0), ("sliding", 1060.0)])
async def test_rate_windows_with_an_injected_clock(technique: str, reset_at: float) -> None:
    clock = Clock(1000.0)
    limiter = MemoryLimiter(clock)
    compiled = route(
        start("r"), rate("r", "m1", "m2", limit=2, window=60, technique=technique), model("m1"), model("m2"), end()
    )

    async def taken() -> str:
        return (await walk(compiled, limiter=limiter)).step.element_id

    assert [await taken(), await taken(), await taken()] == ["m1", "m1", "m2"]
    clock.now = reset_at - 0.5
    assert await taken() == "m2"
    clock.now = reset_at
    assert await taken() == "m1"


async def test_missing_key_shares_one_bucket() -> None:
    limiter = MemoryLimiter(Clock())
    compiled = route(
        start("r"), rate("r", "m1", "m2", key="metadata.user_id", limit=1), model("m1"), model("m2"), end()
    )
    first = await walk(compiled, {}, limiter=limiter)
    second = await walk(compiled, {"other": "x"}, limiter=limiter)
    third = await walk(compiled, {"user_id": "u9"}, limiter=limiter)
    assert [first.step.element_id, second.step.element_id, third.step.element_id] == ["m1", "m2", "m1"]


async def test_limit_without_fallback_ends_with_429_or_budget_error() -> None:
    limiter = MemoryLimiter(Clock())
    counted = route(start("r"), rate("r", "m", None, limit=1), model("m"), end())
    await walk(counted, limiter=limiter)
    with pytest.raises(RateLimited):
        await walk(counted, limiter=limiter)
    budget = route(start("b"), rate("b", "m", None, limitType="cost", limit=1), model("m"), end())
    outcome = await walk(budget, limiter=limiter)
    limiter.add(outcome.charges[0].bucket, 1.5, 60, "sliding")  # settle the real cost
    with pytest.raises(BudgetExceeded) as caught:
        await walk(budget, limiter=limiter)
    assert caught.value.cf_code == 2041 and "budget 'b'" in caught.value.message


async def test_percentage_proportions_over_10000_walks() -> None:
    compiled = route(
        start("p"), split("p", {"10%": "a", "30%": "b", "else": "c"}), model("a"), model("b"), model("c"), end()
    )
    rng = random.Random(1234)
    counts: Counter[str] = Counter()
    n = 10_000
    for _ in range(n):
        counts[(await walk(compiled, rng=rng.random)).step.element_id] += 1
    for branch, share in (("a", 0.1), ("b", 0.3), ("c", 0.6)):
        sigma = math.sqrt(n * share * (1 - share))
        assert abs(counts[branch] - n * share) <= 3 * sigma, (branch, counts)


async def test_sticky_split_is_stable_per_key_and_still_proportional() -> None:
    compiled = route(
        start("p"), split("p", {"25%": "a", "else": "b"}, sticky="metadata.user_id"), model("a"), model("b"), end()
    )
    first: dict[str, str] = {}
    for i in range(10_000):
        first[f"user-{i}"] = (await walk(compiled, {"user_id": f"user-{i}"})).step.element_id
    for i in range(0, 10_000, 97):  # again, with a different random source: the same branch every time
        again = await walk(compiled, {"user_id": f"user-{i}"}, rng=random.Random(i).random)
        assert again.step.element_id == first[f"user-{i}"]
    share_a = sum(1 for branch in first.values() if branch == "a")
    assert abs(share_a - 2500) <= 3 * math.sqrt(10_000 * 0.25 * 0.75)
    # without the key the split is random again
    rng = random.Random(7)
    seen = {(await walk(compiled, {}, rng=rng.random)).step.element_id for _ in range(50)}
    assert seen == {"a", "b"}


async def test_fallback_chain_three_deep_with_timeouts_and_5xx() -> None:
    compiled = route(
        start("m1"),
        model("m1", fallback="m2", retries=1, timeout=50),
        model("m2", fallback="m3", retries=1),
        model("m3", fallback="end"),
        end(),
    )
    upstream = Upstream({"m1": [UpstreamTimeout(), UpstreamTimeout()], "m2": [503, 502]})
    outcome = await walk(compiled, upstream=upstream)
    assert outcome.path == ("start", "m1", "m2", "m3", "end") and outcome.step.element_id == "m3"
    assert upstream.sent == ["m1", "m1", "m2", "m2", "m3"]
    assert [p.first_byte_timeout_ms for p in upstream.policies] == [50, 50, 1000, 1000, 1000]
    assert [(a.element_id, a.status) for a in outcome.attempts] == [
        ("m1", None), ("m1", None), ("m2", 503), ("m2", 502), ("m3", 200),
    ]  # fmt: skip
    assert [a.releases for a in upstream.answers] == [1, 1, 0]  # failed answers released, the winner kept


async def test_end_without_success_lists_every_attempt() -> None:
    compiled = route(
        start("m1"), model("m1", fallback="m2", retries=1), model("m2", fallback="end"), end(), name="support"
    )
    upstream = Upstream({"m1": [UpstreamTimeout(), 500], "m2": [UpstreamReset()]})
    with pytest.raises(RouteFailed) as caught:
        await walk(compiled, upstream=upstream)
    err = caught.value
    assert err.status == 502 and err.cf_code == 2005
    assert err.path == ("start", "m1", "m2", "end")
    assert err.message == (
        "Dynamic route 'support' got no successful answer ("
        "attempt 1: m1 (openai/gpt-m1): Provider did not answer in time; "
        "attempt 2: m1 (openai/gpt-m1): HTTP 500; "
        "attempt 3: m2 (openai/gpt-m2): Provider connection was reset); path: start → m1 → m2 → end"
    )
    assert all(a.releases == 1 for a in upstream.answers)


async def test_client_errors_fall_back_without_retrying_and_429_waits() -> None:
    compiled = route(start("m1"), model("m1", fallback="m2", retries=3), model("m2", retries=1), end())
    upstream = Upstream({"m1": [400], "m2": [429, 200]})
    outcome = await walk(compiled, upstream=upstream, defaults=RetryPolicy(delay_ms=250, backoff="exponential"))
    assert upstream.sent == ["m1", "m2", "m2"] and outcome.step.element_id == "m2"
    assert upstream.delays == [0.25] and upstream.policies[-1].backoff == "exponential"


async def test_request_timeout_fills_in_for_an_element_without_one() -> None:
    compiled = route(start("m"), model("m", timeout=None), end())
    upstream = Upstream()
    await walk(compiled, upstream=upstream, defaults=RetryPolicy(first_byte_timeout_ms=777))
    assert upstream.policies[0].first_byte_timeout_ms == 777


async def test_a_route_that_reaches_end_without_any_model() -> None:
    compiled = route(start("c"), cond("c", {"metadata.plan": "paid"}, "m", "end"), model("m"), end())
    with pytest.raises(RouteFailed) as caught:
        await walk(compiled, {"plan": "free"})
    assert "ended without calling a model" in caught.value.message


async def test_a_later_success_replaces_and_releases_the_earlier_one() -> None:
    compiled = route(start("m1"), model("m1", success="m2"), model("m2", fallback="end"), end())
    upstream = Upstream()
    outcome = await walk(compiled, upstream=upstream)
    assert outcome.step.element_id == "m2" and [a.releases for a in upstream.answers] == [1, 0]
    upstream = Upstream({"m2": [503]})  # the later model fails: the end returns the earlier success
    outcome = await walk(compiled, upstream=upstream)
    assert outcome.step.element_id == "m1" and outcome.answer.releases == 0


async def test_cancellation_releases_a_held_answer() -> None:
    compiled = route(start("m1"), model("m1", success="m2"), model("m2"), end())
    upstream = Upstream({"m2": [asyncio.CancelledError()]})
    with pytest.raises(asyncio.CancelledError):
        await walk(compiled, upstream=upstream)
    assert upstream.answers[0].releases == 1


async def test_gateway_errors_other_than_upstream_ones_propagate() -> None:
    compiled = route(start("m1"), model("m1", fallback="m2"), model("m2"), end())
    with pytest.raises(UnknownKeyAlias):
        await walk(compiled, upstream=Upstream({"m1": [UnknownKeyAlias()]}))
