"""The response cache, rate limits and budgets as clients see them, through the real openai SDK."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from tests.support.stack import GatewayStack

USER = [{"role": "user", "content": "hello there"}]


def client(stack: GatewayStack, gateway: str, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=stack.url(gateway, "compat"), api_key="sk-cache", max_retries=0, default_headers=headers
    )


def sent_count(stack: GatewayStack, model: str) -> int:
    return sum(1 for r in stack.ups.requests_for("openai") if r.model == model)


def test_second_identical_call_is_a_hit_and_never_reaches_the_provider(stack: GatewayStack) -> None:
    c = client(stack, "cached")
    first = c.chat.completions.with_raw_response.create(model="openai/gpt-cache-a", messages=USER)
    second = c.chat.completions.with_raw_response.create(model="openai/gpt-cache-a", messages=USER)
    assert (first.headers["cf-aig-cache-status"], second.headers["cf-aig-cache-status"]) == ("MISS", "HIT")
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert sent_count(stack, "gpt-cache-a") == 1
    record = stack.log_record(second.headers["cf-aig-log-id"])
    assert record["cached"] == 1 and record["cost"] == 0.0


def test_any_parameter_change_is_a_miss(stack: GatewayStack) -> None:
    c = client(stack, "cached")
    c.chat.completions.create(model="openai/gpt-cache-b", messages=USER)
    other = c.chat.completions.with_raw_response.create(model="openai/gpt-cache-b", messages=USER, temperature=0.5)
    assert other.headers["cf-aig-cache-status"] == "MISS"


def test_tenants_never_share_entries(stack: GatewayStack) -> None:
    client(stack, "cached").chat.completions.create(model="openai/gpt-cache-c", messages=USER)
    other = openai.OpenAI(base_url=stack.url("cached", "compat"), api_key="sk-other-tenant", max_retries=0)
    raw = other.chat.completions.with_raw_response.create(model="openai/gpt-cache-c", messages=USER)
    assert raw.headers["cf-aig-cache-status"] == "MISS"


def test_streams_are_cached_and_replayed_byte_for_byte(stack: GatewayStack) -> None:
    c = client(stack, "cached")
    first = c.chat.completions.with_raw_response.create(model="openai/gpt-cache-s", messages=USER, stream=True)
    first_bytes = b"".join(first.http_response.iter_bytes())
    second = c.chat.completions.with_raw_response.create(model="openai/gpt-cache-s", messages=USER, stream=True)
    second_bytes = b"".join(second.http_response.iter_bytes())
    assert second.headers["cf-aig-cache-status"] == "HIT"
    assert second_bytes == first_bytes and b"[DONE]" in second_bytes


def test_skip_cache_and_ttl_headers(stack: GatewayStack) -> None:
    c = client(stack, "default", **{"cf-aig-cache-ttl": "120"})
    c.chat.completions.create(model="openai/gpt-cache-d", messages=USER)
    hit = c.chat.completions.with_raw_response.create(model="openai/gpt-cache-d", messages=USER)
    assert hit.headers["cf-aig-cache-status"] == "HIT"
    skip = client(stack, "default", **{"cf-aig-cache-ttl": "120", "cf-aig-skip-cache": "true"})
    fresh = skip.chat.completions.with_raw_response.create(model="openai/gpt-cache-d", messages=USER)
    assert fresh.headers["cf-aig-cache-status"] == "MISS"
    with pytest.raises(openai.BadRequestError):
        client(stack, "default", **{"cf-aig-cache-ttl": "5"}).chat.completions.create(
            model="openai/gpt-cache-d", messages=USER
        )


def test_errors_are_not_cached(stack: GatewayStack) -> None:
    c = client(stack, "cached")
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="openai/error-500-cache", messages=USER)
    assert sent_count(stack, "error-500-cache") == 2


async def test_concurrent_identical_misses_are_coalesced(stack: GatewayStack) -> None:
    async with openai.AsyncOpenAI(base_url=stack.url("cached", "compat"), api_key="sk-co", max_retries=0) as c:
        answers = await asyncio.gather(
            *(c.chat.completions.create(model="openai/slow-chunks-30-coalesce", messages=USER) for _ in range(8))
        )
    assert len({a.choices[0].message.content for a in answers}) == 1
    assert sent_count(stack, "slow-chunks-30-coalesce") == 1


def test_rate_limit_admits_exactly_n_with_headers(stack: GatewayStack) -> None:
    c = client(stack, "limited")
    statuses, last = [], None
    for _ in range(5):
        try:
            raw = c.chat.completions.with_raw_response.create(model="openai/gpt-rl", messages=USER)
            statuses.append(200)
            assert raw.headers["ratelimit-limit"] == "3"
        except openai.RateLimitError as err:
            statuses.append(429)
            last = err
    assert statuses == [200, 200, 200, 429, 429]
    assert last is not None and last.body["code"] == 2003  # type: ignore[index]
    assert int(last.response.headers["retry-after"]) >= 1
    assert last.response.headers["ratelimit-remaining"] == "0"


def test_rate_limit_per_metadata_key(stack: GatewayStack) -> None:
    def call(user: str) -> int:
        try:
            client(stack, "per_user", **{"cf-aig-metadata": json.dumps({"user": user})}).chat.completions.create(
                model="openai/gpt-rl-user", messages=USER
            )
            return 200
        except openai.RateLimitError:
            return 429

    assert [call("ann"), call("ann"), call("ann"), call("bob")] == [200, 200, 429, 200]


def test_budget_refuses_once_spent(stack: GatewayStack) -> None:
    c = client(stack, "budget", **{"cf-aig-custom-cost": '{"total_cost": 0.01}'})
    outcomes = []
    for _ in range(6):
        try:
            c.chat.completions.create(model="openai/gpt-4o", messages=USER)
            outcomes.append(200)
        except openai.RateLimitError as err:
            outcomes.append(429)
            assert err.body["code"] == 2041 and "tiny" in err.message  # type: ignore[index]
    assert outcomes == [200, 200, 429, 429, 429, 429]  # 0.01 each against a 0.025 rule
