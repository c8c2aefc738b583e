"""`model: "dynamic/<route>"` end to end: the real openai SDK, routes deployed through the admin API."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import openai
import pytest

from tests.support.stack import ADMIN_TOKEN, GatewayStack

USER = [{"role": "user", "content": "hello there"}]


def admin(stack: GatewayStack, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    url = f"{stack.origin}/client/v4/accounts/acct/ai-gateway/gateways/default/{path}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def model(element_id: str, provider: str, name: str, success: str, fallback: str) -> dict[str, Any]:
    return {
        "id": element_id,
        "type": "model",
        "properties": {"provider": provider, "model": name, "timeout": 2000, "retries": 0},
        "outputs": {"success": {"elementId": success}, "fallback": {"elementId": fallback}},
    }


def deploy(stack: GatewayStack, name: str, elements: list[dict[str, Any]]) -> None:
    status, body = admin(stack, "POST", "routes", {"name": name, "elements": elements})
    assert status == 200, body
    deadline = time.monotonic() + 1.5
    while stack.runtime().routes.get("default", name) is None:
        assert time.monotonic() < deadline, "deployment did not reach the gateway within a second"
        time.sleep(0.02)


def client(stack: GatewayStack, metadata: dict[str, Any] | None = None) -> openai.OpenAI:
    headers = {"cf-aig-metadata": json.dumps(metadata)} if metadata else {}
    return openai.OpenAI(
        base_url=stack.url("default", "compat"), api_key="sk-t", max_retries=0, default_headers=headers
    )


def test_route_with_a_condition_and_a_fallback_chain(stack: GatewayStack) -> None:
    deploy(
        stack,
        "support",
        [
            {"id": "start", "type": "start", "outputs": {"next": {"elementId": "paid"}}},
            {
                "id": "paid",
                "type": "conditional",
                "properties": {"conditions": {"metadata.plan": {"$eq": "paid"}}},
                "outputs": {"true": {"elementId": "m_broken"}, "false": {"elementId": "m_cheap"}},
            },
            model("m_broken", "openai", "error-503-route", "end", "m_kimi"),
            model("m_kimi", "workers-ai", "@cf/moonshotai/kimi-k2.5", "end", "m_cheap"),
            model("m_cheap", "groq", "llama-cheap", "end", "end"),
            {"id": "end", "type": "end", "outputs": {}},
        ],
    )
    raw = client(stack, {"plan": "paid"}).chat.completions.with_raw_response.create(
        model="dynamic/support", messages=USER
    )
    assert raw.parse().choices[0].message.content == "echo: hello there"
    assert (raw.headers["cf-aig-provider"], raw.headers["cf-aig-model"]) == ("workers-ai", "@cf/moonshotai/kimi-k2.5")
    record = stack.log_record(raw.headers["cf-aig-log-id"])
    assert (record["provider"], record["model"], record["attempts"]) == ("workers-ai", "@cf/moonshotai/kimi-k2.5", 2)
    raw = client(stack, {"plan": "free"}).chat.completions.with_raw_response.create(
        model="dynamic/support", messages=USER
    )
    assert raw.headers["cf-aig-model"] == "llama-cheap"


def test_route_that_ends_without_success_lists_attempts(stack: GatewayStack) -> None:
    deploy(
        stack,
        "doomed",
        [
            {"id": "start", "type": "start", "outputs": {"next": {"elementId": "a"}}},
            model("a", "openai", "error-500-doomed", "end", "b"),
            model("b", "groq", "error-502-doomed", "end", "end"),
            {"id": "end", "type": "end", "outputs": {}},
        ],
    )
    with pytest.raises(openai.APIStatusError) as caught:
        client(stack).chat.completions.create(model="dynamic/doomed", messages=USER)
    assert caught.value.status_code == 502
    assert "a" in caught.value.message and "b" in caught.value.message


def test_streaming_through_a_route(stack: GatewayStack) -> None:
    deploy(
        stack,
        "streamy",
        [
            {"id": "start", "type": "start", "outputs": {"next": {"elementId": "m"}}},
            model("m", "openai", "gpt-4o-mini", "end", "end"),
            {"id": "end", "type": "end", "outputs": {}},
        ],
    )
    chunks = list(client(stack).chat.completions.create(model="dynamic/streamy", messages=USER, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello there"


def test_unknown_route_is_400_2008(stack: GatewayStack) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(stack).chat.completions.create(model="dynamic/nope", messages=USER)
    assert caught.value.body["code"] == 2008  # type: ignore[index]


def test_invalid_route_is_refused_with_the_element_and_field(stack: GatewayStack) -> None:
    status, body = admin(
        stack,
        "POST",
        "routes",
        {
            "name": "bad",
            "elements": [
                {"id": "start", "type": "start", "outputs": {"next": {"elementId": "m"}}},
                {
                    "id": "m",
                    "type": "model",
                    "properties": {"provider": "nope", "model": "x"},
                    "outputs": {"success": {"elementId": "end"}, "fallback": {"elementId": "end"}},
                },
                {"id": "end", "type": "end", "outputs": {}},
            ],
        },
    )
    assert status == 400
    assert body["success"] is False and body["errors"][0]["code"] == 7001
    assert stack.runtime().routes.get("default", "bad") is None
