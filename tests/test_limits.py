"""Rate limits and spend limits as policy, over real counters: buckets, headers, reserve/settle arithmetic,
the fail policy when the state is unreachable (a fake and a killed redis-server), and the route adapter."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from switchpoint.config import FailOpenConfig, GatewayConfig
from switchpoint.errors import BudgetExceeded, RateLimited
from switchpoint.limits import Limits, RateLimitExceeded, RouteLimiter, rate_headers, rate_numbers
from switchpoint.state import Charge, CounterBackend, Decision, MemoryState, RedisState, StateUnavailable
from tests.state.redis_support import OwnRedis, delete_prefix, own_redis, redis_url

__all__ = ["own_redis", "redis_url"]

START = 1_800_000_000.0  # a multiple of 60, 3600 and 86400 s: fixed windows start here


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limits(clock: Clock) -> Limits:
    return Limits(MemoryState(clock=clock))


def gateway(**fields: Any) -> GatewayConfig:
    return GatewayConfig.model_validate(fields)


RATE_3 = {"rate_limit": {"limit": 3, "window": 60, "technique": "fixed"}}


# -- rate limits ---------------------------------------------------------------------------------------


async def test_no_rate_limit_means_no_decision(limits: Limits) -> None:
    assert await limits.check_rate("g", gateway()) is None


@pytest.fixture(params=["memory", "redis"])
async def shared_limits(request: pytest.FixtureRequest) -> AsyncIterator[Limits]:
    if request.param == "memory":
        yield Limits(MemoryState())
        return
    url: str = request.getfixturevalue("redis_url")
    prefix = f"sp-test:{uuid.uuid4().hex}:"
    state = RedisState.from_url(url, prefix=prefix)
    yield Limits(state)
    await state.aclose()
    await delete_prefix(url, prefix)


async def test_gateway_rate_limit_counts_down_then_refuses_with_headers(shared_limits: Limits) -> None:
    config = gateway(rate_limit={"limit": 3, "window": 3600, "technique": "sliding"})
    decisions = [await shared_limits.check_rate("g", config) for _ in range(3)]
    assert [rate_numbers(d).remaining for d in decisions if d is not None] == [2, 1, 0]
    first = decisions[0]
    assert first is not None and rate_headers(first)["RateLimit-Limit"] == "3"
    assert 3500 < rate_numbers(first).reset_s <= 3660
    with pytest.raises(RateLimitExceeded) as info:
        await shared_limits.check_rate("g", config)
    err = info.value
    assert (err.status, err.cf_code, err.message) == (429, 2003, "Rate limited")
    assert isinstance(err, RateLimited)
    headers = err.headers()
    assert headers["RateLimit-Remaining"] == "0" and headers["RateLimit-Limit"] == "3"
    assert headers["Retry-After"] == headers["RateLimit-Reset"] == str(err.retry_after)
    assert await shared_limits.check_rate("other-gateway", config) is not None


async def test_fixed_rate_limit_resets_at_the_window_boundary(limits: Limits, clock: Clock) -> None:
    config = gateway(**RATE_3)
    clock.now = START + 45
    for _ in range(3):
        await limits.check_rate("g", config)
    with pytest.raises(RateLimitExceeded) as info:
        await limits.check_rate("g", config)
    assert info.value.retry_after == 15
    clock.now = START + 60
    decision = await limits.check_rate("g", config)
    assert decision is not None and rate_numbers(decision)[1:] == (2, 60)


async def test_rate_limit_per_token(limits: Limits) -> None:
    config = gateway(rate_limit={"limit": 1, "window": 60, "key": "token"})
    assert await limits.check_rate("g", config, token_id="t1") is not None
    assert await limits.check_rate("g", config, token_id="t2") is not None
    with pytest.raises(RateLimitExceeded):
        await limits.check_rate("g", config, token_id="t1")
    assert await limits.check_rate("g", config) is not None  # calls without a token share one bucket
    with pytest.raises(RateLimitExceeded):
        await limits.check_rate("g", config)


async def test_rate_limit_per_metadata_value(limits: Limits) -> None:
    config = gateway(rate_limit={"limit": 1, "window": 60, "key": "metadata.user"})
    assert await limits.check_rate("g", config, metadata={"user": "ann", "team": "x"})
    assert await limits.check_rate("g", config, metadata={"user": "bob"})
    assert await limits.check_rate("g", config, metadata={"user": 7})
    with pytest.raises(RateLimitExceeded):
        await limits.check_rate("g", config, metadata={"user": "ann", "team": "y"})
    assert await limits.check_rate("g", config, metadata={"team": "x"})
    with pytest.raises(RateLimitExceeded):
        await limits.check_rate("g", config, metadata=None)  # no value: the shared bucket, already used


async def test_a_changed_rate_limit_applies_at_once(limits: Limits) -> None:
    await limits.check_rate("g", gateway(rate_limit={"limit": 1, "window": 60}))
    with pytest.raises(RateLimitExceeded):
        await limits.check_rate("g", gateway(rate_limit={"limit": 1, "window": 60}))
    decision = await limits.check_rate("g", gateway(rate_limit={"limit": 5, "window": 60}))
    assert decision is not None and rate_numbers(decision).remaining == 3  # same window and technique: same counter


async def test_concurrent_checks_admit_exactly_the_limit(shared_limits: Limits) -> None:
    config = gateway(rate_limit={"limit": 40, "window": 3600})

    async def one() -> bool:
        try:
            await shared_limits.check_rate("race", config)
        except RateLimitExceeded:
            return False
        return True

    assert sum(await asyncio.gather(*(one() for _ in range(200)))) == 40


# -- spend limits ------------------------------------------------------------------------------------


def spend(*rules: dict[str, Any]) -> GatewayConfig:
    return gateway(spend_limits=list(rules))


R1 = {"id": "r1", "limit": 5, "window": 86400}


async def test_no_spend_rules_means_no_reservation(limits: Limits) -> None:
    assert await limits.reserve("g", gateway(), "openai", "gpt-4o", None, 1.0) is None


async def test_reserve_until_the_rule_is_spent_and_name_it(limits: Limits) -> None:
    config = spend(R1)
    for _ in range(2):
        assert await limits.reserve("g", config, "openai", "gpt-4o", None, 2.0)
    with pytest.raises(BudgetExceeded) as info:
        await limits.reserve("g", config, "openai", "gpt-4o", None, 2.0)
    err = info.value
    assert (err.status, err.cf_code) == (429, 2041)
    assert err.message == "Spend limit exceeded: rule 'r1' (cost limit 5 per 86400s, sliding) for openai gpt-4o"
    assert err.retry_after is not None and err.retry_after > 0
    assert await limits.reserve("g", config, "openai", "gpt-4o", None, 1.0)  # 1 still fits


async def test_settle_refunds_the_unspent_part(limits: Limits) -> None:
    config = spend(R1)
    reservation = await limits.reserve("g", config, "openai", "gpt-4o", None, 4.0)
    limits.settle(reservation, 0.5)  # 0.5 spent of 5
    assert await limits.reserve("g", config, "openai", "gpt-4o", None, 4.5)
    with pytest.raises(BudgetExceeded):
        await limits.reserve("g", config, "openai", "gpt-4o", None, 0.01)


async def test_settle_charges_the_excess_without_a_check(limits: Limits) -> None:
    config = spend(R1)
    reservation = await limits.reserve("g", config, "openai", "gpt-4o", None, 1.0)
    limits.settle(reservation, 4.0)  # 4 spent of 5
    with pytest.raises(BudgetExceeded):
        await limits.reserve("g", config, "openai", "gpt-4o", None, 1.5)
    late = await limits.reserve("g", config, "openai", "gpt-4o", None, 0.5)
    limits.settle(late, 3.0)  # over the limit now: spent is spent
    with pytest.raises(BudgetExceeded):
        await limits.reserve("g", config, "openai", "gpt-4o", None, 0)  # nothing left, even unpriced


async def test_unpriced_calls_pass_while_money_is_left(limits: Limits) -> None:
    config = spend(R1)
    reservation = await limits.reserve("g", config, "openai", "x", None, 0)
    limits.settle(reservation, None)  # still unpriced: the estimate (0) stands
    assert await limits.reserve("g", config, "openai", "x", None, 0)
    limits.settle(await limits.reserve("g", config, "openai", "x", None, 0), 5.0)
    with pytest.raises(BudgetExceeded):
        await limits.reserve("g", config, "openai", "x", None, 0)


async def test_every_applicable_rule_is_held_or_none(shared_limits: Limits) -> None:
    config = spend({"id": "day", "limit": 10, "window": 86400}, {"id": "minute", "limit": 1, "window": 60})
    held = await shared_limits.reserve("g", config, "openai", "m", None, 1.0)
    assert held is not None and [c.key for c in held[0].counters] == ["sl:g:day", "sl:g:minute"]
    with pytest.raises(BudgetExceeded, match="rule 'minute'"):
        await shared_limits.reserve("g", config, "openai", "m", None, 1.0)
    only_day = spend({"id": "day", "limit": 10, "window": 86400})
    reservation = await shared_limits.reserve("g", only_day, "openai", "m", None, 9)
    assert reservation is not None  # the refused call held nothing in `day` (1 + 9 = 10)
    with pytest.raises(BudgetExceeded, match="rule 'day'"):
        await shared_limits.reserve("g", only_day, "openai", "m", None, 0.5)


async def test_filters_decide_which_rules_apply(limits: Limits) -> None:
    config = spend(
        {**R1, "id": "gpt", "limit": 1, "model": {"mode": "filter", "values": ["openai/gpt-4o"]}},
        {**R1, "id": "mini", "limit": 1, "model": {"mode": "filter", "values": ["gpt-4o-mini"]}},
        {**R1, "id": "anthropic", "limit": 1, "provider": {"mode": "filter", "values": ["anthropic"]}},
        {**R1, "id": "pro", "limit": 1, "metadata": {"plan": {"mode": "filter", "values": ["pro"]}}},
    )
    assert await limits.reserve("g", config, "openai", "gpt-4o", None, 1)  # `provider/model` matches too
    with pytest.raises(BudgetExceeded, match="rule 'gpt'"):
        await limits.reserve("g", config, "openai", "gpt-4o", None, 1)
    assert await limits.reserve("g", config, "openai", "gpt-4o-mini", None, 1)
    with pytest.raises(BudgetExceeded, match="rule 'mini'"):
        await limits.reserve("g", config, "groq", "gpt-4o-mini", None, 1)
    assert await limits.reserve("g", config, "openai", "gpt-4.1", None, 1)
    assert await limits.reserve("g", config, "anthropic", "claude", {"plan": "free"}, 1)
    with pytest.raises(BudgetExceeded, match="rule 'anthropic'"):
        await limits.reserve("g", config, "anthropic", "claude-2", None, 1)
    assert await limits.reserve("g", config, "groq", "llama", {"plan": "pro"}, 1)
    with pytest.raises(BudgetExceeded, match="rule 'pro'"):
        await limits.reserve("g", config, "groq", "llama", {"plan": "pro"}, 1)


async def test_partitions_keep_one_bucket_per_value(limits: Limits) -> None:
    config = spend({**R1, "limit": 1, "metadata": {"user": {"mode": "partition"}}, "model": {"mode": "partition"}})
    assert await limits.reserve("g", config, "openai", "a", {"user": "ann"}, 1)
    assert await limits.reserve("g", config, "openai", "a", {"user": "bob"}, 1)
    assert await limits.reserve("g", config, "openai", "b", {"user": "ann"}, 1)
    with pytest.raises(BudgetExceeded):
        await limits.reserve("g", config, "openai", "a", {"user": "ann"}, 1)
    assert await limits.reserve("g", config, "openai", "a", None, 1)
    with pytest.raises(BudgetExceeded):
        await limits.reserve("g", config, "openai", "a", {"other": 1}, 1)  # no user: the shared bucket


async def test_changed_spend_rules_apply_at_once(limits: Limits) -> None:
    assert await limits.reserve("g", spend({**R1, "limit": 1}), "openai", "m", None, 1)
    with pytest.raises(BudgetExceeded):
        await limits.reserve("g", spend({**R1, "limit": 1}), "openai", "m", None, 1)
    assert await limits.reserve("g", spend({**R1, "limit": 2}), "openai", "m", None, 1)  # same bucket, new limit
    filtered = spend({**R1, "limit": 2, "model": {"mode": "filter", "values": ["other"]}})
    reservation = await limits.reserve("g", filtered, "openai", "m", None, 1)
    assert reservation is not None and reservation[0].counters == ()  # the rule no longer applies to `m`


async def test_disabled_rules_do_not_count(limits: Limits) -> None:
    config = spend({**R1, "enabled": False, "limit": 0.01})
    assert await limits.reserve("g", config, "openai", "m", None, 1)


async def test_spend_applies_only_where_an_enabled_rule_holds_the_call(shared_limits: Limits) -> None:
    """What passthrough asks before it meters a stream: the rules that a reservation would hold."""
    rules = spend(
        {**R1, "id": "pro", "metadata": {"plan": {"mode": "filter", "values": ["pro"]}}},
        {**R1, "id": "off", "enabled": False},
    ).spend_limits
    assert shared_limits.spend_applies("g", rules, "openai", "m", {"plan": "pro"})
    assert not shared_limits.spend_applies("g", rules, "openai", "m", {"plan": "free"})
    assert not shared_limits.spend_applies("g", rules, "openai", "m", None)
    assert not shared_limits.spend_applies("g", [], "openai", "m", {"plan": "pro"})


async def test_settle_moves_the_cost_to_the_target_that_answered(limits: Limits) -> None:
    config = spend(
        {**R1, "id": "openai", "limit": 2, "provider": {"mode": "filter", "values": ["openai"]}},
        {**R1, "id": "groq", "limit": 2, "provider": {"mode": "filter", "values": ["groq"]}},
    )
    reservation = await limits.reserve("g", config, "openai", "gpt-4o", None, 2)
    limits.settle(reservation, 1.5, provider="groq", model="llama")  # a fallback answered
    assert await limits.reserve("g", config, "openai", "gpt-4o", None, 2)  # openai got its 2 back
    with pytest.raises(BudgetExceeded, match="rule 'groq'"):
        await limits.reserve("g", config, "groq", "llama", None, 1)


# -- state failures ------------------------------------------------------------------------------------


class Broken:
    """A CounterBackend whose state is always unreachable."""

    async def consume(self, charges: Sequence[Charge], now: float | None = None) -> list[Decision]:
        raise StateUnavailable("down")

    async def peek(self, charges: Sequence[Charge], now: float | None = None) -> list[Decision]:
        raise StateUnavailable("down")

    async def refund(self, charges: Sequence[Charge], at: float, now: float | None = None) -> None:
        raise StateUnavailable("down")

    def refund_soon(self, charges: Sequence[Charge], at: float) -> None:
        raise StateUnavailable("down")

    def refund_one(self, charge: Charge, amount: float, at: float) -> None:
        raise StateUnavailable("down")

    async def flush(self) -> None:
        raise StateUnavailable("down")


def _broken() -> CounterBackend:
    return Broken()


async def test_default_policy_rate_limits_fail_open_and_budgets_closed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="switchpoint.limits")
    limits = Limits(_broken())
    for _ in range(3):
        assert await limits.check_rate("g", gateway(**RATE_3)) is None
    with pytest.raises(BudgetExceeded, match="unavailable") as info:
        await limits.reserve("g", spend(R1), "openai", "m", None, 1)
    assert info.value.cf_code == 2041
    limits.settle(None, 1.0)
    assert limits.failures == {"rate_limit": 3, "budget": 1}
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "rate_limit state unavailable, letting calls through: down",
        "budget state unavailable, refusing calls: down",
    ]


async def test_the_opposite_policy() -> None:
    limits = Limits(_broken(), FailOpenConfig(rate_limit=False, budget=True))
    with pytest.raises(RateLimited, match="unavailable") as info:
        await limits.check_rate("g", gateway(**RATE_3))
    assert (info.value.status, info.value.cf_code) == (429, 2003)
    reservation = await limits.reserve("g", spend(R1), "openai", "m", None, 1)
    assert reservation is not None and reservation[0].counters == ()
    limits.settle(reservation, 2.0)  # never raises after the call
    assert limits.failures == {"rate_limit": 1, "budget": 2}


async def test_killed_redis_follows_the_policy_then_recovers(own_redis: OwnRedis) -> None:
    state = RedisState.from_url(own_redis.url, retry_interval_s=0.05, timeout_s=0.5)
    limits = Limits(state, FailOpenConfig(rate_limit=True, budget=False))
    rate, budget = gateway(rate_limit={"limit": 2, "window": 3600}), spend(R1)
    try:
        assert await limits.check_rate("g", rate) is not None
        assert await limits.reserve("g", budget, "openai", "m", None, 4)
        own_redis.kill()
        assert await limits.check_rate("g", rate) is None  # open: through, uncounted
        with pytest.raises(BudgetExceeded, match="unavailable"):
            await limits.reserve("g", budget, "openai", "m", None, 0.5)
        own_redis.start()  # no persistence: the counters start over
        await asyncio.sleep(0.1)
        decision = await limits.check_rate("g", rate)
        assert decision is not None and rate_numbers(decision).remaining == 1
        assert await limits.reserve("g", budget, "openai", "m", None, 5)
        with pytest.raises(BudgetExceeded, match="rule 'r1'"):
            await limits.reserve("g", budget, "openai", "m", None, 0.5)
    finally:
        await state.aclose()


# -- dynamic routes --------------------------------------------------------------------------------------


async def test_route_limiter_counts(limits: Limits) -> None:
    limiter = RouteLimiter(limits)
    assert [await limiter.consume("node-a:ann", 1, 2, 60, "sliding") for _ in range(3)] == [True, True, False]
    assert await limiter.consume("node-a:bob", 1, 2, 60, "sliding")
    with pytest.raises(ValueError, match="technique"):
        await limiter.consume("x", 1, 1, 60, "leaky")


async def test_route_limiter_peeks_without_taking(limits: Limits) -> None:
    limiter = RouteLimiter(limits)
    assert all([await limiter.peek("p", 1, 1, 60, "fixed") for _ in range(3)])
    assert await limiter.consume("p", 1, 1, 60, "fixed")
    assert not await limiter.peek("p", 1, 1, 60, "fixed")


async def test_route_budget_admits_until_the_settled_cost_reaches_the_limit(limits: Limits) -> None:
    """As routing/evaluate.py uses it: consume the estimate 0 before the call, `add` the real cost after."""
    limiter = RouteLimiter(limits)
    for cost in (0.4, 0.5):
        assert await limiter.consume("budget", 0, 1.0, 3600, "fixed")
        await limiter.add("budget", cost, 3600, "fixed")
    assert await limiter.consume("budget", 0, 1.0, 3600, "fixed")
    await limiter.add("budget", 0.3, 3600, "fixed")  # over: spent is spent
    assert not await limiter.consume("budget", 0, 1.0, 3600, "fixed")
    assert not await limiter.peek("budget", 0, 1.0, 3600, "fixed")


async def test_route_limiter_follows_the_rate_limit_policy() -> None:
    opened = RouteLimiter(Limits(_broken()))
    assert await opened.consume("b", 1, 1, 60, "fixed")
    assert await opened.peek("b", 1, 1, 60, "fixed")
    await opened.add("b", 1, 60, "fixed")  # never raises
    closed = RouteLimiter(Limits(_broken(), FailOpenConfig(rate_limit=False)))
    assert not await closed.consume("b", 1, 1, 60, "fixed")
