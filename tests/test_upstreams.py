"""Tests of the fake upstream providers themselves, driven by the real ``openai`` and ``anthropic`` SDKs."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import httpx2
import openai
import pytest

from tests.upstreams import Scenario, Upstreams, UpstreamsThread, parse_scenario
from tests.upstreams.fixtures import upstreams, upstreams_thread, upstreams_thread_session

FIXTURES = (upstreams, upstreams_thread, upstreams_thread_session)  # imported so pytest finds them here

USER: list[Any] = [{"role": "user", "content": "hello brave new world"}]
REPLY = "echo: hello brave new world"
CLAUDE = "claude-sonnet-4-6"
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"}},
    "required": ["city"],
}
OPENAI_TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    },
]
ANTHROPIC_TOOLS: list[Any] = [
    {"name": "get_weather", "description": "Weather", "input_schema": WEATHER},
    {"name": "get_time", "description": "Time", "input_schema": {"type": "object", "properties": {}}},
]


@pytest.fixture
async def oai(upstreams: Upstreams) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=upstreams.openai_base, api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
async def claude(upstreams: Upstreams) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=upstreams.anthropic_base, api_key="sk-ant-test", max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def sse_frames(raw: bytes) -> list[str]:
    """Split a raw SSE body into its frames, asserting every frame is terminated by a blank line."""
    text = raw.decode()
    assert text.endswith("\n\n")
    return text[:-2].split("\n\n")


def data_of(frame: str) -> Any:
    line = frame.split("\n")[-1]
    assert line.startswith("data: ")
    payload = line[len("data: ") :]
    return payload if payload == "[DONE]" else json.loads(payload)


# --- scenario parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", Scenario()),
        ("error-500", Scenario("error", status=500)),
        ("@cf/x/error-503", Scenario("error", status=503)),
        ("error-429-retry-after-7", Scenario("error", status=429, retry_after="7")),
        ("reset-before-headers", Scenario("reset-before-headers")),
        ("reset-after-3-chunks", Scenario("reset-after", chunks=3)),
        ("truncated-after-2-chunks", Scenario("truncated-after", chunks=2)),
        ("stall-before-250", Scenario("stall-before", delay=0.25)),
        ("stall-after-2-chunks-300", Scenario("stall-after", chunks=2, delay=0.3)),
        ("slow-chunks-40", Scenario("slow-chunks", delay=0.04)),
        ("flaky-2-abc", Scenario("flaky", status=503, failures=2)),
        ("flaky-429-1-abc", Scenario("flaky", status=429, retry_after="0", failures=1)),
        ("@cf/moonshotai/kimi-k2.5-reset-after-1-chunks", Scenario("reset-after", chunks=1)),
        ("error-500/gpt-4o", Scenario()),
    ],
)
def test_parse_scenario(model: str, expected: Scenario) -> None:
    assert parse_scenario(model) == expected


# --- OpenAI ---------------------------------------------------------------------------------------------


async def test_openai_chat_non_stream(oai: openai.AsyncOpenAI, upstreams: Upstreams) -> None:
    completion = await oai.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o-mini"
    assert completion.system_fingerprint
    choice = completion.choices[0]
    assert (choice.index, choice.finish_reason, choice.logprobs) == (0, "stop", None)
    assert (choice.message.role, choice.message.content, choice.message.refusal) == ("assistant", REPLY, None)
    usage = completion.usage
    assert usage is not None and usage.completion_tokens == 5
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0
    [recorded] = upstreams.requests
    assert (recorded.provider, recorded.method, recorded.path) == ("openai", "POST", "/v1/chat/completions")
    assert recorded.api_key == "sk-test" and recorded.headers["AUTHORIZATION"] == "Bearer sk-test"
    assert recorded.json()["messages"] == USER and recorded.model == "gpt-4o-mini"
    assert (recorded.status, recorded.outcome) == (200, "complete")


async def test_openai_stream_without_usage(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" and c.usage is None for c in chunks)
    assert len({c.id for c in chunks}) == 1
    first = chunks[0].choices[0].delta
    assert (first.role, first.content) == ("assistant", "")
    pieces = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert len(pieces) == 5 and "".join(p or "" for p in pieces) == REPLY
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


async def test_openai_stream_with_usage(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="gpt-4o",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks[:-1])


async def test_openai_stream_raw_framing(upstreams: Upstreams, http: aiohttp.ClientSession) -> None:
    body = {"model": "gpt-4o", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    headers = {"authorization": "Bearer sk-raw"}
    async with http.post(upstreams.openai_base + "/chat/completions", json=body, headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-request-id"].startswith("req_")
        raw = await resp.read()
    frames = sse_frames(raw)
    assert frames[-1] == "data: [DONE]"
    chunks = [data_of(f) for f in frames[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert all("usage" in c for c in chunks) and all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


async def test_openai_tools_non_stream(oai: openai.AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Paris"}],
        tools=OPENAI_TOOLS,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert all(c.id.startswith("call_") and c.type == "function" for c in calls)
    arguments = calls[0].function.arguments  # type: ignore[union-attr]
    assert json.loads(arguments) == {"city": "Paris", "days": 42, "metric": True}


async def test_openai_tools_single_when_parallel_disabled(oai: openai.AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(
        model="gpt-4o", messages=USER, tools=OPENAI_TOOLS, parallel_tool_calls=False
    )
    assert len(completion.choices[0].message.tool_calls or []) == 1


async def test_openai_tool_result_turn_answers_text(oai: openai.AsyncOpenAI) -> None:
    messages: list[Any] = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "noon"},
    ]
    completion = await oai.chat.completions.create(model="gpt-4o", messages=messages, tools=OPENAI_TOOLS)
    assert completion.choices[0].message.content == "echo: noon"


async def test_openai_tools_stream(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Oslo"}], tools=OPENAI_TOOLS, stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    pieces: dict[int, int] = {}
    finish = None
    async for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            if delta.id:
                assert not call["id"] and delta.type == "function" and delta.function is not None
                assert delta.function.arguments == ""
                call["id"], call["name"] = delta.id, delta.function.name or ""
            elif delta.function and delta.function.arguments:
                call["arguments"] += delta.function.arguments
                pieces[delta.index] = pieces.get(delta.index, 0) + 1
    assert finish == "tool_calls"
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Oslo", "days": 42, "metric": True}
    assert json.loads(calls[1]["arguments"]) == {}
    assert pieces[0] >= 3


async def test_openai_embeddings_float_and_base64(oai: openai.AsyncOpenAI, upstreams: Upstreams) -> None:
    floats = await oai.embeddings.create(
        model="text-embedding-3-small", input=["alpha", "beta"], encoding_format="float", dimensions=8
    )
    decoded = await oai.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"], dimensions=8)
    assert [d.index for d in floats.data] == [0, 1] and floats.data[0].object == "embedding"
    assert [d.embedding for d in floats.data] == [d.embedding for d in decoded.data]
    assert floats.data[0].embedding != floats.data[1].embedding and len(floats.data[0].embedding) == 8
    assert sum(v * v for v in floats.data[0].embedding) == pytest.approx(1.0, rel=1e-5)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 2
    assert upstreams.requests[1].json()["encoding_format"] == "base64"  # the SDK asks for base64 by default
    single = await oai.embeddings.create(model="text-embedding-3-small", input="alpha", encoding_format="float")
    assert len(single.data) == 1 and len(single.data[0].embedding) == 1536


async def test_openai_embeddings_raw_base64(upstreams: Upstreams, http: aiohttp.ClientSession) -> None:
    body = {"model": "text-embedding-3-small", "input": "alpha", "dimensions": 4, "encoding_format": "base64"}
    async with http.post(upstreams.openai_base + "/embeddings", json=body, headers={"authorization": "Bearer k"}) as r:
        payload = await r.json()
    packed = base64.b64decode(payload["data"][0]["embedding"])
    assert len(packed) == 16 and len(struct.unpack("<4f", packed)) == 4


async def test_openai_models(oai: openai.AsyncOpenAI) -> None:
    ids = [model.id async for model in oai.models.list()]
    assert "gpt-4o-mini" in ids


async def test_openai_auth_and_bad_json(upstreams: Upstreams, http: aiohttp.ClientSession) -> None:
    url = upstreams.openai_base + "/chat/completions"
    async with http.post(url, json={"model": "gpt-4o", "messages": USER}) as resp:
        assert resp.status == 401
        error = (await resp.json())["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    async with http.post(url, data=b"{nope", headers={"authorization": "Bearer k"}) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    async with openai.AsyncOpenAI(base_url=upstreams.openai_base, api_key="invalid-key", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as caught:
            await bad.chat.completions.create(model="gpt-4o", messages=USER)
    assert caught.value.code == "invalid_api_key"


# --- Anthropic ------------------------------------------------------------------------------------------


async def test_anthropic_non_stream(claude: anthropic.AsyncAnthropic, upstreams: Upstreams) -> None:
    message = await claude.messages.create(model=CLAUDE, max_tokens=100, messages=USER)
    assert message.id.startswith("msg_") and (message.type, message.role) == ("message", "assistant")
    assert message.model == CLAUDE and message.stop_reason == "end_turn" and message.stop_sequence is None
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", REPLY)]
    assert message.usage.output_tokens == 5 and message.usage.input_tokens > 0
    assert message.usage.cache_read_input_tokens == 0 and message.usage.cache_creation_input_tokens == 0
    [recorded] = upstreams.requests
    assert recorded.api_key == "sk-ant-test" and recorded.headers["Anthropic-Version"]


async def test_anthropic_max_tokens_truncates(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(model=CLAUDE, max_tokens=2, messages=USER)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 2


async def test_anthropic_stream_helper(claude: anthropic.AsyncAnthropic) -> None:
    async with claude.messages.stream(model=CLAUDE, max_tokens=100, messages=USER) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == REPLY
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 5


async def test_anthropic_stream_raw_events(upstreams: Upstreams, http: aiohttp.ClientSession) -> None:
    body = {"model": CLAUDE, "max_tokens": 50, "messages": USER, "stream": True}
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    async with http.post(upstreams.anthropic_base + "/v1/messages", json=body, headers=headers) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream") and resp.headers["request-id"]
        frames = sse_frames(await resp.read())
    names = [f.split("\n")[0].removeprefix("event: ") for f in frames]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    events = [data_of(f) for f in frames]
    assert all(e["type"] == name for e, name in zip(events, names, strict=True))
    start = events[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["input_tokens"] > 0
    assert events[3]["delta"] == {"type": "text_delta", "text": "echo:"}
    assert events[-2]["delta"]["stop_reason"] == "end_turn" and events[-2]["usage"] == {"output_tokens": 5}


async def test_anthropic_tools_stream(claude: anthropic.AsyncAnthropic) -> None:
    stream = await claude.messages.create(
        model=CLAUDE,
        max_tokens=100,
        messages=[{"role": "user", "content": "Rome"}],
        tools=ANTHROPIC_TOOLS,
        stream=True,
    )
    partial: dict[int, str] = {}
    names: dict[int, str] = {}
    stop = None
    async for event in stream:
        if event.type == "content_block_start" and event.content_block.type == "tool_use":
            names[event.index] = event.content_block.name
            assert event.content_block.id.startswith("toolu_") and event.content_block.input == {}
        elif event.type == "content_block_delta" and event.delta.type == "input_json_delta":
            partial[event.index] = partial.get(event.index, "") + event.delta.partial_json
        elif event.type == "message_delta":
            stop = event.delta.stop_reason
    assert stop == "tool_use" and list(names.values()) == ["get_weather", "get_time"]
    first = min(names)
    assert json.loads(partial[first]) == {"city": "Rome", "days": 42, "metric": True}


async def test_anthropic_tools_non_stream_single(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(
        model=CLAUDE,
        max_tokens=100,
        messages=USER,
        tools=ANTHROPIC_TOOLS,
        tool_choice={"type": "tool", "name": "get_time"},
    )
    assert [b.type for b in message.content] == ["tool_use"] and message.stop_reason == "tool_use"


async def test_anthropic_thinking_with_bearer_auth(upstreams: Upstreams) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=upstreams.anthropic_base, auth_token="oauth-token", max_retries=0
    ) as client:
        async with client.messages.stream(
            model=CLAUDE, max_tokens=2048, messages=USER, thinking={"type": "enabled", "budget_tokens": 1024}
        ) as stream:
            final = await stream.get_final_message()
    thinking, text = final.content
    assert thinking.type == "thinking" and thinking.thinking.startswith("Thinking about:") and thinking.signature
    assert text.type == "text" and text.text == REPLY
    assert upstreams.requests[0].api_key == "oauth-token"


async def test_anthropic_header_errors(upstreams: Upstreams, http: aiohttp.ClientSession) -> None:
    url, body = (
        upstreams.anthropic_base + "/v1/messages",
        {"model": CLAUDE, "max_tokens": 5, "messages": USER},
    )
    async with http.post(url, json=body, headers={"anthropic-version": "2023-06-01"}) as resp:
        payload = await resp.json()
        assert resp.status == 401 and payload["error"]["type"] == "authentication_error"
        assert payload["type"] == "error" and payload["request_id"].startswith("req_")
    async with http.post(url, json=body, headers={"x-api-key": "k"}) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("status", "exc", "kind"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
async def test_anthropic_error_scenarios(
    claude: anthropic.AsyncAnthropic, status: int, exc: type[anthropic.APIStatusError], kind: str
) -> None:
    with pytest.raises(exc) as caught:
        await claude.messages.create(model=f"error-{status}", max_tokens=5, messages=USER)
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict) and caught.value.body["error"]["type"] == kind


async def test_anthropic_stream_failures(claude: anthropic.AsyncAnthropic, upstreams: Upstreams) -> None:
    stream = await claude.messages.create(model="truncated-after-5-chunks", max_tokens=50, messages=USER, stream=True)
    types = [event.type async for event in stream]
    assert "message_stop" not in types and len(types) == 4  # ping is swallowed by the SDK
    stream = await claude.messages.create(model="reset-after-4-chunks", max_tokens=50, messages=USER, stream=True)
    seen = []
    with pytest.raises(httpx2.RemoteProtocolError):  # the SDK does not wrap mid-stream transport errors
        async for event in stream:
            seen.append(event.type)
    assert len(seen) == 3
    with pytest.raises(anthropic.APIConnectionError):
        await claude.messages.create(model="reset-before-headers", max_tokens=5, messages=USER)
    assert [r.outcome for r in upstreams.requests] == ["truncated", "aborted", "aborted"]


# --- Workers AI -----------------------------------------------------------------------------------------


async def workers_post(
    http: aiohttp.ClientSession, ups: Upstreams, path: str, body: dict[str, Any]
) -> tuple[int, str, bytes]:
    url = ups.workers_ai_url("acct123") + path
    async with http.post(url, json=body, headers={"authorization": "Bearer cf-token"}) as resp:
        return resp.status, resp.headers["content-type"], await resp.read()


async def test_workers_legacy_run(upstreams: Upstreams, http: aiohttp.ClientSession) -> None:
    model = "@cf/meta/llama-3.1-8b-instruct"
    status, _, raw = await workers_post(http, upstreams, f"run/{model}", {"messages": USER})
    payload = json.loads(raw)
    assert status == 200 and (payload["success"], payload["errors"], payload["messages"]) == (True, [], [])
    assert payload["result"]["response"] == REPLY and payload["result"]["usage"]["completion_tokens"] == 5
    assert upstreams.requests[0].path == f"/client/v4/accounts/acct123/ai/run/{model}"
    assert upstreams.requests[0].model == model
    status, ctype, raw = await workers_post(http, upstreams, f"run/{model}", {"prompt": "hi", "stream": True})
    frames = sse_frames(raw)
    assert ctype.startswith("text/event-stream") and frames[-1] == "data: [DONE]"
    events = [data_of(f) for f in frames[:-1]]
    assert "".join(e["response"] for e in events) == "echo: hi"
    assert "usage" in events[-1] and all("usage" not in e for e in events[:-1])


async def test_workers_openai_style_run(upstreams: Upstreams, http: aiohttp.ClientSession) -> None:
    path = "run/@cf/moonshotai/kimi-k2.5"
    _, _, raw = await workers_post(http, upstreams, path, {"messages": USER})
    result = json.loads(raw)["result"]
    assert result["object"] == "chat.completion" and result["choices"][0]["message"]["content"] == REPLY
    assert result["choices"][0]["message"]["reasoning_content"].startswith("Thinking about:")
    assert result["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    _, _, raw = await workers_post(http, upstreams, path, {"messages": USER, "stream": True})
    frames = sse_frames(raw)
    chunks = [data_of(f) for f in frames[:-1]]
    assert frames[-1] == "data: [DONE]" and all(c["usage"]["prompt_tokens"] > 0 for c in chunks)
    assert "reasoning_content" in chunks[1]["choices"][0]["delta"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_workers_errors(upstreams: Upstreams, http: aiohttp.ClientSession) -> None:
    status, _, raw = await workers_post(http, upstreams, "run/@cf/nobody/unknown-model", {"prompt": "x"})
    payload = json.loads(raw)
    assert status == 400 and payload["success"] is False and payload["errors"][0]["code"] == 5007
    status, _, raw = await workers_post(http, upstreams, "run/@cf/x/error-503", {"prompt": "x"})
    assert status == 503 and json.loads(raw)["success"] is False
    async with http.post(upstreams.workers_ai_url() + "run/@cf/a/b", json={"prompt": "x"}) as resp:
        assert resp.status == 401 and (await resp.json())["errors"][0]["code"] == 10000


async def test_workers_openai_compatible_with_sdk(upstreams: Upstreams) -> None:
    base = upstreams.workers_ai_url() + "v1"
    async with openai.AsyncOpenAI(base_url=base, api_key="cf-token", max_retries=0) as client:
        completion = await client.chat.completions.create(model="@cf/meta/llama-3.1-8b-instruct", messages=USER)
        assert completion.choices[0].message.content == REPLY
        stream = await client.chat.completions.create(model="@cf/openai/gpt-oss-120b", messages=USER, stream=True)
        chunks = [chunk async for chunk in stream]
        assert all(c.usage is not None for c in chunks)
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == REPLY
        embedded = await client.embeddings.create(model="@cf/baai/bge-base-en-v1.5", input=["a", "b"])
        assert len(embedded.data) == 2 and len(embedded.data[0].embedding) == 768
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=USER)
    assert isinstance(caught.value.body, dict) and caught.value.body["errors"][0]["code"] == 5007


async def test_workers_tools(upstreams: Upstreams, http: aiohttp.ClientSession) -> None:
    lima: list[Any] = [{"role": "user", "content": "Lima"}]
    expected = {"city": "Lima", "days": 42, "metric": True}
    body = {"messages": lima, "tools": OPENAI_TOOLS[:1]}
    _, _, raw = await workers_post(http, upstreams, "run/@cf/meta/llama-3.3-70b-instruct-fp8-fast", body)
    assert json.loads(raw)["result"]["tool_calls"] == [{"name": "get_weather", "arguments": expected}]
    base = upstreams.workers_ai_url() + "v1"
    async with openai.AsyncOpenAI(base_url=base, api_key="cf-token", max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="@cf/moonshotai/kimi-k2.6", messages=lima, tools=OPENAI_TOOLS, stream=True
        )
        arguments: dict[int, str] = {}
        async for chunk in stream:
            for delta in chunk.choices[0].delta.tool_calls or []:
                if delta.function and delta.function.arguments:
                    arguments[delta.index] = arguments.get(delta.index, "") + delta.function.arguments
    assert [json.loads(arguments[i]) for i in sorted(arguments)] == [expected, {}]


# --- scenarios seen from the OpenAI SDK -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "exc", "status"),
    [
        ("error-400", openai.BadRequestError, 400),
        ("error-500", openai.InternalServerError, 500),
        ("error-503", openai.InternalServerError, 503),
        ("error-429-retry-after-7", openai.RateLimitError, 429),
    ],
)
async def test_openai_error_scenarios(
    oai: openai.AsyncOpenAI, model: str, exc: type[openai.APIStatusError], status: int
) -> None:
    with pytest.raises(exc) as caught:
        await oai.chat.completions.create(model=model, messages=USER)
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict) and {"message", "type", "param", "code"} <= set(caught.value.body)
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "7"


async def test_openai_reset_scenarios(oai: openai.AsyncOpenAI, upstreams: Upstreams) -> None:
    with pytest.raises(openai.APIConnectionError):
        await oai.chat.completions.create(model="reset-before-headers", messages=USER)
    stream = await oai.chat.completions.create(model="reset-after-2-chunks", messages=USER, stream=True)
    received = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.append(chunk)
    assert len(received) == 2
    with pytest.raises(openai.APIConnectionError):  # non-stream: the JSON body breaks off after one piece
        await oai.chat.completions.create(model="reset-after-1-chunks", messages=USER)
    assert [r.outcome for r in upstreams.requests] == ["aborted"] * 3
    assert [r.status for r in upstreams.requests] == [None, 200, 200]  # no status line before the reset


async def test_openai_truncated_stream(
    oai: openai.AsyncOpenAI, upstreams: Upstreams, http: aiohttp.ClientSession
) -> None:
    stream = await oai.chat.completions.create(model="truncated-after-3-chunks", messages=USER, stream=True)
    chunks = [chunk async for chunk in stream]
    assert len(chunks) == 3 and all(c.choices[0].finish_reason is None for c in chunks)  # ends quietly
    body = {"model": "truncated-after-3-chunks", "messages": USER, "stream": True}
    url = upstreams.openai_base + "/chat/completions"
    async with http.post(url, json=body, headers={"authorization": "Bearer k"}) as resp:
        raw = await resp.read()  # a clean end of the chunked body: no exception
    assert len(sse_frames(raw)) == 3 and b"[DONE]" not in raw
    assert upstreams.requests[-1].outcome == "truncated"


async def test_stall_before_and_client_timeout(oai: openai.AsyncOpenAI, upstreams: Upstreams) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await oai.chat.completions.create(model="stall-before-2000", messages=USER, timeout=0.2)
    assert time.monotonic() - started < 1.5
    started = time.monotonic()
    completion = await oai.chat.completions.create(model="stall-before-300", messages=USER)
    assert completion.choices[0].message.content == REPLY and time.monotonic() - started >= 0.3
    for _ in range(50):
        if upstreams.requests[0].outcome != "pending":
            break
        await asyncio.sleep(0.02)
    assert upstreams.requests[0].outcome == "client_disconnected"


async def test_stall_after_and_slow_chunks(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(model="stall-after-2-chunks-300", messages=USER, stream=True)
    stamps = [time.monotonic() async for _ in stream]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert gaps[1] >= 0.25 and max(gaps[:1] + gaps[2:]) < 0.2
    started = time.monotonic()
    stream = await oai.chat.completions.create(model="slow-chunks-40", messages=USER, stream=True)
    count = len([chunk async for chunk in stream])
    assert count == 7 and time.monotonic() - started >= 0.04 * count


async def test_flaky_counts(oai: openai.AsyncOpenAI, upstreams: Upstreams) -> None:
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as caught:
            await oai.chat.completions.create(model="flaky-2-a", messages=USER)
        assert caught.value.status_code == 503
    done = await oai.chat.completions.create(model="flaky-2-a", messages=USER)
    assert done.choices[0].message.content == REPLY and upstreams.calls("openai", "flaky-2-a") == 3
    with pytest.raises(openai.RateLimitError) as limited:
        await oai.chat.completions.create(model="flaky-429-1-b", messages=USER)
    assert limited.value.response.headers["retry-after"] == "0"
    await oai.chat.completions.create(model="flaky-429-1-b", messages=USER)
    upstreams.clear()
    assert upstreams.requests == [] and upstreams.calls("openai", "flaky-2-a") == 0


async def test_flaky_recovers_through_sdk_retries(upstreams: Upstreams) -> None:
    async with anthropic.AsyncAnthropic(base_url=upstreams.anthropic_base, api_key="k", max_retries=1) as client:
        message = await client.messages.create(model="flaky-1-c", max_tokens=10, messages=USER)
    assert message.content[0].type == "text"
    assert [r.status for r in upstreams.requests] == [503, 200]


# --- the thread-served fakes with synchronous clients ---------------------------------------------------


def test_thread_with_sync_clients(upstreams_thread: UpstreamsThread) -> None:
    with openai.OpenAI(base_url=upstreams_thread.openai_base, api_key="sk-sync", max_retries=0) as client:
        completion = client.chat.completions.create(model="gpt-4o", messages=USER)
        assert completion.choices[0].message.content == REPLY
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="reset-before-headers", messages=USER)
    with anthropic.Anthropic(base_url=upstreams_thread.anthropic_base, api_key="sk-sync", max_retries=0) as claude:
        with claude.messages.stream(model=CLAUDE, max_tokens=50, messages=USER) as stream:
            assert "".join(stream.text_stream) == REPLY
    assert [r.provider for r in upstreams_thread.requests] == ["openai", "openai", "anthropic"]


def test_thread_fixture_is_cleared_between_tests(upstreams_thread: UpstreamsThread) -> None:
    assert upstreams_thread.requests == []
    assert "{account_id}" in upstreams_thread.workers_ai_base
