"""Cost on every record (shipped prices, cache discounts, `cf-aig-custom-cost`) and the Prometheus endpoint."""

from __future__ import annotations

import urllib.request
from decimal import Decimal

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.stack import GatewayStack

USER = [{"role": "user", "content": "hello there"}]


def client(stack: GatewayStack, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=stack.url("default", "compat"), api_key="sk-test", max_retries=0, default_headers=headers
    )


def test_record_is_costed_from_the_price_table(stack: GatewayStack) -> None:
    raw = client(stack).chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=USER)
    usage = raw.parse().usage
    assert usage is not None
    record = stack.log_record(raw.headers["cf-aig-log-id"])
    found = stack.runtime().prices.lookup("openai", "gpt-4o-mini")
    assert found is not None
    price = found[1]
    cached = (usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0) or 0
    cache_rate = price.cache_read if price.cache_read is not None else price.input
    expected = (
        (usage.prompt_tokens - cached) * price.input + cached * cache_rate + usage.completion_tokens * price.output
    ) / Decimal(1_000_000)
    assert record["cost"] == pytest.approx(float(expected), abs=1e-9)
    assert record["custom_cost"] == 0


def test_custom_cost_header_overrides_and_is_marked(stack: GatewayStack) -> None:
    raw = client(stack, **{"cf-aig-custom-cost": '{"total_cost": 0.25}'}).chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=USER
    )
    record = stack.log_record(raw.headers["cf-aig-log-id"])
    assert record["cost"] == 0.25 and record["custom_cost"] == 1


def test_bad_custom_cost_is_400(stack: GatewayStack) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(stack, **{"cf-aig-custom-cost": '{"per_token_in": -1}'}).chat.completions.create(
            model="openai/gpt-4o-mini", messages=USER
        )
    assert "cf-aig-custom-cost" in caught.value.message


def test_unknown_model_has_no_cost(stack: GatewayStack) -> None:
    raw = client(stack).chat.completions.with_raw_response.create(model="openai/no-such-model-xyz", messages=USER)
    assert stack.log_record(raw.headers["cf-aig-log-id"])["cost"] is None


def test_metrics_endpoint_counts_calls(stack: GatewayStack) -> None:
    client(stack).chat.completions.create(model="groq/metrics-probe", messages=USER)
    with urllib.request.urlopen(f"{stack.origin}/metrics", timeout=5) as response:
        text = response.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = [
        s
        for s in families["switchpoint_requests"].samples
        if s.labels.get("provider") == "groq" and s.labels.get("model") == "metrics-probe"
    ]
    assert samples and samples[0].value >= 1
    assert "switchpoint_request_duration_seconds" in families


_SHAPE = ("provider", "model", "direction")


def _tokens(text: str, provider: str, model: str, direction: str) -> float:
    """`switchpoint_tokens_total` of one call shape and direction; 0 when the series was never created."""
    wanted = (provider, model, direction)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "switchpoint_tokens_total" and tuple(map(labels.get, _SHAPE)) == wanted:
                return sample.value
    return 0.0


def _metrics(stack: GatewayStack) -> str:
    with urllib.request.urlopen(f"{stack.origin}/metrics", timeout=5) as response:
        return str(response.read().decode())


def test_reasoning_tokens_reach_the_token_metrics(stack: GatewayStack) -> None:
    model = "@cf/moonshotai/kimi-k2.5"  # a Workers AI model that reports reasoning tokens in its usage
    before = _metrics(stack)  # the stack is shared: other tests may have called this model already
    reply = client(stack).chat.completions.create(model=f"workers-ai/{model}", messages=USER)
    details = reply.usage.completion_tokens_details if reply.usage else None
    reasoning = details.reasoning_tokens if details else None
    assert reasoning  # the upstream reported some: otherwise this checks nothing
    after = _metrics(stack)
    for direction, expected in (("reasoning", reasoning), ("out", reply.usage.completion_tokens)):  # type: ignore[union-attr]
        grown = _tokens(after, "workers-ai", model, direction) - _tokens(before, "workers-ai", model, direction)
        assert grown == expected, direction
