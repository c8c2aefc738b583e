"""The gateway's response cache and spend rules hold for calls whose provider is chosen inside the call:
dynamic routes (through the real openai SDK) and universal steps."""

from __future__ import annotations

import json
from typing import Any

import openai

from tests.e2e.rawhttp import USER, assert_cf_error, post_json, sent
from tests.e2e.test_dynamic_routes import add_version, create_route, deploy, deploy_version, model, start_end, wait_live
from tests.support.stack import GatewayStack

CACHE = {"cf-aig-cache-ttl": "120"}


def ask(stack: GatewayStack, route: str, api_key: str = "sk-t", gateway: str = "default", **headers: str) -> Any:
    c = openai.OpenAI(base_url=stack.url(gateway, "compat"), api_key=api_key, max_retries=0, default_headers=headers)
    return c.chat.completions.with_raw_response.create(model=f"dynamic/{route}", messages=USER)


def test_dynamic_route_answers_a_repeat_from_the_cache_without_walking(stack: GatewayStack) -> None:
    deploy(stack, "cached-walk", start_end("only", "openai", "gpt-dyn-cached"))
    first, second = ask(stack, "cached-walk", **CACHE), ask(stack, "cached-walk", **CACHE)
    assert [first.headers["cf-aig-cache-status"], second.headers["cf-aig-cache-status"]] == ["MISS", "HIT"]
    assert second.headers["cf-aig-model"] == "gpt-dyn-cached" and second.headers["cf-aig-provider"] == "openai"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert len(sent(stack, "openai", "gpt-dyn-cached")) == 1
    record = stack.log_record(second.headers["cf-aig-log-id"])
    assert record["cached"] and record["model"] == "gpt-dyn-cached" and record["route"].startswith("cached-walk")
    # another credential is another tenant: never served the first one's entry
    other = ask(stack, "cached-walk", api_key="sk-other", **CACHE)
    assert other.headers["cf-aig-cache-status"] == "MISS"
    assert len(sent(stack, "openai", "gpt-dyn-cached")) == 2


def test_a_new_route_version_never_answers_from_the_old_ones_entries(stack: GatewayStack) -> None:
    route_id, _ = create_route(stack, "versioned-walk", start_end("m", "openai", "gpt-dyn-v1"))
    assert ask(stack, "versioned-walk", **CACHE).headers["cf-aig-cache-status"] == "MISS"
    assert ask(stack, "versioned-walk", **CACHE).headers["cf-aig-cache-status"] == "HIT"
    version = add_version(stack, route_id, start_end("m", "openai", "gpt-dyn-v2"))
    deploy_version(stack, route_id, version)
    wait_live(stack, "versioned-walk", version)
    fresh = ask(stack, "versioned-walk", **CACHE)
    assert fresh.headers["cf-aig-cache-status"] == "MISS" and fresh.headers["cf-aig-model"] == "gpt-dyn-v2"


def test_gateway_spend_rule_binds_dynamic_calls(stack: GatewayStack) -> None:
    primary = model("primary", "openai", "error-503-dyn-budget", "end", "backup")
    backup = model("backup", "openai", "gpt-dyn-budget", "end", "end")
    elements = [
        {"id": "start", "type": "start", "outputs": {"next": {"elementId": "primary"}}},
        primary,
        backup,
        {"id": "end", "type": "end", "outputs": {}},
    ]
    deploy(stack, "spending", elements, gateway="routed_budget")
    outcomes = []
    for _ in range(4):
        try:
            ask(stack, "spending", gateway="routed_budget", **{"cf-aig-custom-cost": '{"total_cost": 0.01}'})
            outcomes.append(200)
        except openai.RateLimitError as err:
            assert err.body["code"] == 2041 and "whole" in err.message  # type: ignore[index]
            outcomes.append(429)
    assert outcomes == [200, 200, 429, 429]  # 0.01 a call (answered by the fallback) against a 0.025 rule
    assert len(sent(stack, "openai", "gpt-dyn-budget")) == 2  # refused calls never reach a provider


def universal_steps(model_name: str) -> list[dict[str, Any]]:
    auth = {"Authorization": "Bearer sk-univ-cache", "Content-Type": "application/json"}
    query = {"model": model_name, "messages": USER}
    return [{"provider": "openai", "endpoint": "chat/completions", "headers": auth, "query": query}]


def test_universal_steps_are_cached_whole(stack: GatewayStack) -> None:
    steps = universal_steps("gpt-univ-cached")
    first, second = (post_json(stack.url("default"), steps, CACHE) for _ in range(2))
    assert (first.status, second.status) == (200, 200)
    assert [first.headers["cf-aig-cache-status"], second.headers["cf-aig-cache-status"]] == ["MISS", "HIT"]
    assert second.headers["cf-aig-step"] == "0" and json.loads(second.body) == json.loads(first.body)
    assert len(sent(stack, "openai", "gpt-univ-cached")) == 1


def test_gateway_spend_rule_binds_universal_calls(stack: GatewayStack) -> None:
    cost = {"cf-aig-custom-cost": '{"total_cost": 0.02}'}
    url = stack.url("budget_universal")
    replies = [post_json(url, universal_steps("gpt-univ-budget"), cost) for _ in range(3)]
    assert [r.status for r in replies] == [200, 429, 429]  # 0.02 a call against a 0.03 rule
    assert_cf_error(replies[-1], 429, 2041)  # Cloudflare's envelope, as the universal endpoint speaks
    assert "rule 'u'" in replies[-1].json()["error"][0]["message"]
    assert len(sent(stack, "openai", "gpt-univ-budget")) == 1
