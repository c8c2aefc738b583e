"""`explain`: the path and the reasons, with no model called and no limit consumed."""

from __future__ import annotations

import random

from switchpoint.routing.conditions import RouteRequest
from switchpoint.routing.explain import ExplainStep, explain
from switchpoint.routing.limits_memory import MemoryLimiter
from tests.routing.builders import Clock, cond, end, model, rate, route, split, start

SUPPORT = route(
    start("is_paid"),
    cond("is_paid", {"metadata.plan": {"$eq": "paid"}}, "ab", "quota"),
    rate("quota", "m_small", "end", key="metadata.user_id", limit=1, window=3600),
    split("ab", {"10%": "m_big", "else": "m_small"}, sticky="metadata.user_id"),
    model("m_big", fallback="m_small", retries=2, timeout=60000),
    model("m_small"),
    end(),
    name="support",
)


async def test_paid_path_with_reasons() -> None:
    steps = await explain(SUPPORT, RouteRequest.build({"plan": "paid", "user_id": "u-1"}), MemoryLimiter(Clock()))
    assert [(s.element_id, s.type, s.decision, s.next) for s in steps][:2] == [
        ("start", "start", "next", "is_paid"),
        ("is_paid", "conditional", "true", "ab"),
    ]
    assert steps[1].reason == 'metadata.plan = "paid": matches {"metadata.plan": {"$eq": "paid"}}'
    assert steps[2].element_id == "ab" and steps[2].type == "percentage"
    assert steps[2].reason.startswith('sticky on metadata.user_id = "u-1", which always lands at ')
    assert "10% → m_big, else → m_small" in steps[2].reason
    again = await explain(SUPPORT, RouteRequest.build({"plan": "paid", "user_id": "u-1"}), rng=random.Random(3).random)
    assert again == steps  # sticky: the same every time
    model_step = steps[3]
    assert model_step.type == "model" and model_step.decision == "success" and model_step.next == "end"
    assert steps[-1] == ExplainStep("end", "end", "end", None, "returns the last successful model answer")


async def test_model_reason_names_provider_attempts_and_fallback() -> None:
    steps = await explain(SUPPORT, RouteRequest.build({"plan": "paid"}), rng=lambda: 0.0)
    big = next(s for s in steps if s.element_id == "m_big")
    assert big.reason == (
        "calls openai/gpt-m_big (3 attempts, 60000 ms to first byte); assumed to answer — on failure it would go to "
        "'m_small'"
    )


async def test_rate_elements_peek_without_consuming() -> None:
    limiter = MemoryLimiter(Clock())
    request = RouteRequest.build({"plan": "free", "user_id": "u-2"})
    for _ in range(3):
        steps = await explain(SUPPORT, request, limiter)
        assert [s.element_id for s in steps] == ["start", "is_paid", "quota", "m_small", "end"]
    assert steps[2].reason == 'count limit 1 per 3600 s (sliding), metadata.user_id = "u-2": under the limit'
    await limiter.consume("route:default/support/quota=u-2", 1, 1, 3600, "sliding")
    steps = await explain(SUPPORT, request, limiter)
    assert [(s.element_id, s.decision, s.next) for s in steps][2:] == [
        ("quota", "fallback", "end"),
        ("end", "end", None),
    ]
    assert steps[2].reason.endswith(": exhausted")


async def test_without_a_limiter_and_with_a_random_split() -> None:
    compiled = route(start("p"), split("p", {"50%": "a", "else": "b"}), model("a"), model("b"), end())
    steps = await explain(compiled, RouteRequest(), rng=lambda: 0.75)
    assert steps[1].decision == "else" and steps[1].next == "b"
    assert steps[1].reason.startswith("random draw: 75.00 of 100 (another call may differ)")
    limited = route(start("r"), rate("r", "a", None, limitType="cost", limit=3), model("a"), end())
    steps = await explain(limited, RouteRequest())
    assert (
        steps[1].reason
        == "budget 3 per 60 s (sliding), one shared bucket: current usage unknown here, assumed under the limit"
    )
    assert [s.as_json()["element_id"] for s in steps] == ["start", "r", "a", "end"]
