"""Streams that break: the client always learns it, in its own dialect, and the log says so."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import anthropic
import openai
import pytest

from tests.e2e.rawhttp import USER, chat, post_json, sent, wait_for
from tests.support.stack import GatewayStack

BREAKS = ["reset-after-3-chunks", "truncated-after-3-chunks"]


def _sdk(stack: GatewayStack, surface: str = "compat") -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url("default", surface), api_key="sk-test", max_retries=0)


def _events(body: bytes) -> list[bytes]:
    return [e for e in body.split(b"\n\n") if e.strip()]


@pytest.mark.parametrize("scenario", BREAKS)
@pytest.mark.parametrize(("surface", "prefix"), [("compat", "openai/"), ("openai", "")])
def test_broken_stream_raises_in_the_openai_sdk(stack: GatewayStack, scenario: str, surface: str, prefix: str) -> None:
    model = f"{scenario}-sdk-{surface}"
    received = []
    with _sdk(stack, surface) as client:
        stream = client.chat.completions.with_raw_response.create(model=prefix + model, messages=USER, stream=True)
        log_id = stream.headers["cf-aig-log-id"]
        with pytest.raises(openai.APIError) as caught:
            for chunk in stream.parse():
                received.append(chunk)
    assert len(received) == 3  # the chunks sent before the break arrived, then the error
    assert str(caught.value.code) == "2005"  # type: ignore[attr-defined]
    record = stack.log_record(log_id)
    assert (record["status_code"], record["success"], record["stream"]) == (200, 0, 1)
    assert record["error"]


@pytest.mark.parametrize("scenario", BREAKS)
def test_broken_passthrough_stream_ends_with_an_error_event(stack: GatewayStack, scenario: str) -> None:
    model = f"{scenario}-raw"
    reply = post_json(stack.url("default", "openai/chat/completions"), chat(model, stream=True))
    assert reply.status == 200
    events = _events(reply.body)
    assert len(events) == 4
    assert all(e.startswith(b"data: {") for e in events)
    error = json.loads(events[-1].removeprefix(b"data: "))
    assert set(error) == {"error"}
    assert error["error"]["code"] == 2005 and error["error"]["message"]
    assert b"[DONE]" not in reply.body


def test_broken_workers_ai_stream_ends_with_an_error_event(stack: GatewayStack) -> None:
    reply = post_json(
        stack.url("default", "workers-ai/@cf/meta/truncated-after-2-chunks"),
        {"prompt": "one two three", "stream": True},
    )
    events = _events(reply.body)
    assert [json.loads(e.removeprefix(b"data: "))["response"] for e in events[:2]] == ["echo:", " one"]
    assert b'"error"' in events[-1] and b"[DONE]" not in reply.body


def test_broken_anthropic_stream_raises_in_the_anthropic_sdk(stack: GatewayStack) -> None:
    with anthropic.Anthropic(base_url=stack.url("default", "anthropic"), api_key="sk-ant", max_retries=0) as client:
        with pytest.raises(anthropic.APIError) as caught:
            with client.messages.stream(
                model="claude-reset-after-3-chunks", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
            ) as stream:
                for _ in stream:
                    pass
    assert "reset" in str(caught.value).lower() or "provider" in str(caught.value).lower()


def test_complete_stream_is_not_flagged(stack: GatewayStack) -> None:
    reply = post_json(stack.url("default", "openai/chat/completions"), chat("gpt-stream-whole", stream=True))
    assert reply.body.endswith(b"data: [DONE]\n\n") and b'"error"' not in reply.body
    record = stack.log_record(reply.log_id)
    assert (record["success"], record["error"], record["stream"]) == (1, None, 1)


def test_idle_timeout_ends_a_stalled_stream_with_an_error(stack: GatewayStack) -> None:
    start = time.monotonic()
    received = []
    with _sdk(stack) as client:
        stream = client.chat.completions.with_raw_response.create(
            model="openai/stall-after-2-chunks-4000-idle", messages=USER, stream=True
        )
        log_id = stream.headers["cf-aig-log-id"]
        with pytest.raises(openai.APIError):
            for chunk in stream.parse():
                received.append(chunk)
    elapsed = time.monotonic() - start
    assert len(received) == 2
    assert 1.2 <= elapsed < 3.0  # the 1.5 s idle timeout, not the 4 s stall
    record = stack.log_record(log_id)
    assert record["success"] == 0 and record["error"]
    assert record["stream"] == 1


async def test_client_disconnect_cancels_the_upstream_and_logs_499(stack: GatewayStack) -> None:
    model = "slow-chunks-200-disconnect"
    long_prompt = [{"role": "user", "content": "one two three four five six seven eight nine ten eleven twelve"}]
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            stack.url("default", "openai/chat/completions"),
            json={"model": model, "messages": long_prompt, "stream": True},
            headers={"authorization": "Bearer sk-test"},
        )
        log_id = response.headers["cf-aig-log-id"]
        for _ in range(2):
            assert (await response.content.readuntil(b"\n\n")).startswith(b"data: ")
        response.close()  # drops the connection mid-stream
    (recorded,) = sent(stack, "openai", model)
    assert await asyncio.to_thread(wait_for, lambda: recorded.outcome != "pending", 2.0)
    assert recorded.outcome == "client_disconnected"
    record = await asyncio.to_thread(stack.log_record, log_id)
    assert record["status_code"] == 499 and record["success"] == 0
    assert record["stream"] == 1


def test_non_stream_body_cut_mid_way_is_502_not_200(stack: GatewayStack) -> None:
    reply = post_json(stack.url("default", "openai/chat/completions"), chat("reset-after-2-chunks-json"))
    assert reply.status == 502
    assert reply.json()["internalCode"] == 2005
    record = stack.log_record(reply.log_id)
    assert (record["status_code"], record["success"]) == (502, 0)


async def test_client_disconnect_before_the_answer_cancels_the_upstream(stack: GatewayStack) -> None:
    model = "stall-before-3000-disconnect"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as session:
        with pytest.raises(TimeoutError):
            await session.post(
                stack.url("default", "openai/chat/completions"),
                json={"model": model, "messages": USER},
                headers={"authorization": "Bearer sk-test", "cf-aig-event-id": model},
            )
    (recorded,) = sent(stack, "openai", model)
    assert await asyncio.to_thread(wait_for, lambda: recorded.outcome != "pending", 2.0)
    assert recorded.outcome == "client_disconnected"

    def record() -> list[dict[str, object]]:
        return stack.log_rows("event_id = ?", (model,))

    assert await asyncio.to_thread(wait_for, lambda: bool(record()), 2.0)
    assert record()[0]["status_code"] == 499
