"""`model: "dynamic/<route>"` end to end: the real openai SDK, routes deployed through the admin API."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

import openai
import pytest

from tests.support.stack import ADMIN_TOKEN, GatewayStack

USER = [{"role": "user", "content": "hello there"}]


def admin(stack: GatewayStack, method: str, path: str, body: Any = None, gateway: str = "default") -> tuple[int, Any]:
    url = f"{stack.origin}/client/v4/accounts/acct/ai-gateway/gateways/{gateway}/{path}"
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


def deploy(stack: GatewayStack, name: str, elements: list[dict[str, Any]], gateway: str = "default") -> None:
    status, body = admin(stack, "POST", "routes", {"name": name, "elements": elements}, gateway)
    assert status == 200, body
    deadline = time.monotonic() + 1.5
    while stack.runtime().routes.get(gateway, name) is None:
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


# -- logs, deployments and rollbacks --------------------------------------------------------------------------


def start_end(element_id: str, provider: str, name: str) -> list[dict[str, Any]]:
    """The smallest route: start -> one model -> end."""
    return [
        {"id": "start", "type": "start", "outputs": {"next": {"elementId": element_id}}},
        model(element_id, provider, name, "end", "end"),
        {"id": "end", "type": "end", "outputs": {}},
    ]


def live_version(stack: GatewayStack, name: str) -> str | None:
    route = stack.runtime().routes.get("default", name)
    return None if route is None else route.version_id


def wait_live(stack: GatewayStack, name: str, version_id: str, within_s: float = 1.0) -> float:
    """Seconds until the running gateway serves `version_id` of `name`; fails after `within_s`."""
    start = time.monotonic()
    while live_version(stack, name) != version_id:
        assert time.monotonic() - start < within_s, f"version {version_id} of '{name}' not live within {within_s} s"
        time.sleep(0.01)
    return time.monotonic() - start


def create_route(stack: GatewayStack, name: str, elements: list[dict[str, Any]]) -> tuple[str, str]:
    """Create (and so deploy) a route through the admin API; (route_id, version_id) once it is live."""
    status, body = admin(stack, "POST", "routes", {"name": name, "elements": elements})
    assert status == 200, body
    route_id, version_id = body["result"]["id"], body["result"]["version"]["version_id"]
    wait_live(stack, name, version_id, within_s=1.5)
    return route_id, version_id


def add_version(stack: GatewayStack, route_id: str, elements: list[dict[str, Any]]) -> str:
    status, body = admin(stack, "POST", f"routes/{route_id}/versions", {"elements": elements})
    assert status == 200, body
    return str(body["result"]["version"]["version_id"])


def deploy_version(stack: GatewayStack, route_id: str, version_id: str) -> None:
    status, body = admin(stack, "POST", f"routes/{route_id}/deployments", {"version_id": version_id})
    assert status == 200, body
    assert body["result"]["deployment"]["version_id"] == version_id


def test_log_records_the_route_version_and_path(stack: GatewayStack) -> None:
    _, version_id = create_route(
        stack,
        "support-logged",
        [
            {"id": "start", "type": "start", "outputs": {"next": {"elementId": "plan"}}},
            {
                "id": "plan",
                "type": "conditional",
                "properties": {"conditions": {"metadata.plan": {"$eq": "paid"}}},
                "outputs": {"true": {"elementId": "m_broken"}, "false": {"elementId": "m_cheap"}},
            },
            model("m_broken", "openai", "error-503-logged", "end", "m_cheap"),
            model("m_cheap", "groq", "llama-logged", "end", "end"),
            {"id": "end", "type": "end", "outputs": {}},
        ],
    )
    raw = client(stack, {"plan": "paid"}).chat.completions.with_raw_response.create(
        model="dynamic/support-logged", messages=USER
    )
    record = stack.log_record(raw.headers["cf-aig-log-id"])
    assert record["route"] == f"support-logged@{version_id}"
    assert record["route_path"] == "start>plan>m_broken>m_cheap>end"
    assert (record["provider"], record["model"]) == ("groq", "llama-logged")

    raw = client(stack).chat.completions.with_raw_response.create(model="openai/gpt-4o-mini-unrouted", messages=USER)
    record = stack.log_record(raw.headers["cf-aig-log-id"])
    assert (record["route"], record["route_path"]) == (None, None)


def test_log_of_a_failed_route_keeps_the_path_it_walked(stack: GatewayStack) -> None:
    _, version_id = create_route(stack, "failing-logged", start_end("m", "openai", "error-500-failing-logged"))
    with pytest.raises(openai.APIStatusError) as caught:
        client(stack).chat.completions.create(model="dynamic/failing-logged", messages=USER)
    record = stack.log_record(caught.value.response.headers["cf-aig-log-id"])
    assert (record["route"], record["route_path"]) == (f"failing-logged@{version_id}", "start>m>end")
    assert record["success"] == 0


async def test_deploy_and_rollback_under_load_fail_no_call(stack: GatewayStack) -> None:
    """8 callers keep calling while v2 is deployed and v1 deployed again: no call fails, and every call sent
    after a deployment went live answers from that version's model."""
    route_id, v1 = await asyncio.to_thread(create_route, stack, "rolling", start_end("m", "openai", "gpt-v1"))
    v2 = await asyncio.to_thread(add_version, stack, route_id, start_end("m2", "openai", "gpt-v2"))
    calls: list[tuple[float, float, str, str]] = []  # (sent, answered, cf-aig-model, cf-aig-log-id)
    failures: list[BaseException] = []
    stop = asyncio.Event()

    async def caller(sdk: openai.AsyncOpenAI) -> None:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                raw = await sdk.chat.completions.with_raw_response.create(model="dynamic/rolling", messages=USER)
                assert raw.parse().choices[0].message.content == "echo: hello there"
            except Exception as exc:  # every failure is a finding, whatever its kind
                failures.append(exc)
                continue
            calls.append((sent, time.monotonic(), raw.headers["cf-aig-model"], raw.headers["cf-aig-log-id"]))

    async def switch(version_id: str) -> tuple[float, float]:
        """Deploy `version_id`; (when it was asked for, when the gateway served it: within 1 s of the deployment)."""
        asked = time.monotonic()
        await asyncio.to_thread(deploy_version, stack, route_id, version_id)
        await asyncio.to_thread(wait_live, stack, "rolling", version_id, 1.0)
        return asked, time.monotonic()

    async with openai.AsyncOpenAI(base_url=stack.url("default", "compat"), api_key="sk-t", max_retries=0) as sdk:
        callers = [asyncio.create_task(caller(sdk)) for _ in range(8)]
        await asyncio.sleep(0.6)
        deploy_asked, deploy_live = await switch(v2)
        await asyncio.sleep(0.8)
        rollback_asked, rollback_live = await switch(v1)
        await asyncio.sleep(0.6)
        stop.set()
        await asyncio.gather(*callers)

    assert failures == []
    before = [c for c in calls if c[1] < deploy_asked]
    on_v2 = [c for c in calls if c[0] > deploy_live and c[1] < rollback_asked]
    after = [c for c in calls if c[0] > rollback_live]
    assert [{c[2] for c in phase} for phase in (before, on_v2, after)] == [{"gpt-v1"}, {"gpt-v2"}, {"gpt-v1"}]
    assert len(calls) > 100
    for phase, version_id in ((before, v1), (on_v2, v2), (after, v1)):
        record = await asyncio.to_thread(stack.log_record, phase[-1][3])
        assert record["route"] == f"rolling@{version_id}"


async def test_a_call_in_flight_finishes_on_the_version_it_started_with(stack: GatewayStack) -> None:
    route_id, v1 = await asyncio.to_thread(
        create_route, stack, "inflight", start_end("m", "openai", "slow-chunks-100-v1")
    )
    v2 = await asyncio.to_thread(add_version, stack, route_id, start_end("m", "openai", "slow-chunks-100-v2"))
    words = " ".join(f"word{i}" for i in range(20))  # ~22 chunks, 100 ms apart: the stream outlives the deploy
    async with openai.AsyncOpenAI(base_url=stack.url("default", "compat"), api_key="sk-t", max_retries=0) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="dynamic/inflight", messages=[{"role": "user", "content": words}], stream=True
        )
        stream = raw.parse()
        arrivals: list[tuple[float, Any]] = []
        under_way = asyncio.Event()

        async def read() -> None:
            async for chunk in stream:
                arrivals.append((time.monotonic(), chunk))
                under_way.set()

        async def redeploy() -> float:
            await under_way.wait()
            await asyncio.to_thread(deploy_version, stack, route_id, v2)
            await asyncio.to_thread(wait_live, stack, "inflight", v2)
            return time.monotonic()

        _, live = await asyncio.gather(read(), redeploy())
        assert arrivals[-1][0] > live, "the stream ended before v2 went live; the test proves nothing"
        assert {chunk.model for _, chunk in arrivals} == {"slow-chunks-100-v1"}
        text = "".join(c.choices[0].delta.content or "" for _, c in arrivals if c.choices)
        assert text == f"echo: {words}"
        record = await asyncio.to_thread(stack.log_record, raw.headers["cf-aig-log-id"])
        assert (record["route"], record["model"], record["success"]) == (f"inflight@{v1}", "slow-chunks-100-v1", 1)

        after = await sdk.chat.completions.with_raw_response.create(model="dynamic/inflight", messages=USER)
        assert after.headers["cf-aig-model"] == "slow-chunks-100-v2"


def test_budget_element_trips_once_the_real_cost_is_spent(stack: GatewayStack) -> None:
    deploy(stack, "budgeted", [
        {"id": "start", "type": "start", "outputs": {"next": {"elementId": "cap"}}},
        {"id": "cap", "type": "rate",
         "properties": {"limitType": "cost", "key": "metadata.user", "limit": 0.025, "window": 3600},
         "outputs": {"success": {"elementId": "rich"}, "fallback": {"elementId": "cheap"}}},
        model("rich", "openai", "gpt-rich-budget", "end", "end"),
        model("cheap", "groq", "llama-cheap-budget", "end", "end"),
        {"id": "end", "type": "end", "outputs": {}},
    ])  # fmt: skip
    c = openai.OpenAI(
        base_url=stack.url("default", "compat"),
        api_key="sk-t",
        max_retries=0,
        default_headers={
            "cf-aig-metadata": json.dumps({"user": "budget-user"}),
            "cf-aig-custom-cost": '{"total_cost": 0.01}',
        },
    )
    models = []
    for _ in range(5):
        raw = c.chat.completions.with_raw_response.create(model="dynamic/budgeted", messages=USER)
        models.append(raw.headers["cf-aig-model"])
        time.sleep(0.1)  # the cost is charged right after each call, off the response path
    assert models[:3] == ["gpt-rich-budget"] * 3
    assert models[-1] == "llama-cheap-budget"
