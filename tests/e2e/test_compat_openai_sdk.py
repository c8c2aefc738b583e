"""The official `openai` SDK, sync and async, through `/compat` and `/openai`: answers, streams, tools."""

from __future__ import annotations

import json

import openai
import pytest

from tests.support.stack import GatewayStack
from tests.support.streams import collect_tool_calls

USER = [{"role": "user", "content": "hello there"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
    },
}


def client(stack: GatewayStack, surface: str = "compat", gateway: str = "default") -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url(gateway, surface), api_key="sk-test", max_retries=0)


def test_compat_chat_reaches_the_provider_with_the_bare_model(stack: GatewayStack) -> None:
    raw = client(stack).chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=USER)
    answer = raw.parse()
    assert answer.choices[0].message.content == "echo: hello there"
    assert answer.model == "gpt-4o-mini"
    sent = [r for r in stack.ups.requests_for("openai") if r.model == "gpt-4o-mini"][-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.json()["messages"] == USER
    assert sent.api_key == "sk-test"
    record = stack.log_record(raw.headers["cf-aig-log-id"])
    assert (record["provider"], record["model"], record["status_code"]) == ("openai", "gpt-4o-mini", 200)
    assert (record["tokens_in"], record["tokens_out"]) == (answer.usage.prompt_tokens, answer.usage.completion_tokens)
    assert record["surface"] == "compat" and record["success"] == 1


def test_compat_workers_ai_model_keeps_its_slashes(stack: GatewayStack) -> None:
    answer = client(stack).chat.completions.create(model="workers-ai/@cf/moonshotai/kimi-k2.5", messages=USER)
    assert answer.choices[0].message.content == "echo: hello there"
    sent = stack.ups.requests_for("workers-ai")[-1]
    assert sent.path == "/client/v4/accounts/acct/ai/v1/chat/completions"
    assert sent.json()["model"] == "@cf/moonshotai/kimi-k2.5"


def test_compat_stream_with_usage(stack: GatewayStack) -> None:
    stream = client(stack).chat.completions.create(
        model="openai/gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_compat_stream_tool_calls_arrive_whole(stack: GatewayStack) -> None:
    stream = client(stack).chat.completions.create(
        model="openai/gpt-4o-mini", messages=USER, tools=[WEATHER, TIME], stream=True
    )
    calls, finish = collect_tool_calls(stream)
    assert finish == "tool_calls"
    assert sorted(c["name"] for c in calls.values()) == ["get_time", "get_weather"]
    for call in calls.values():
        assert call["id"].startswith("call_")
        assert isinstance(json.loads(call["arguments"]), dict)


def test_passthrough_both_path_spellings(stack: GatewayStack) -> None:
    for surface in ("openai", "openai/v1"):
        answer = client(stack, surface).chat.completions.create(model="gpt-4o-mini", messages=USER)
        assert answer.choices[0].message.content == "echo: hello there"
        assert stack.ups.requests_for("openai")[-1].path == "/v1/chat/completions"


def test_embeddings_through_compat_and_passthrough(stack: GatewayStack) -> None:
    via_compat = client(stack).embeddings.create(model="openai/text-embedding-3-small", input=["a", "b"])
    direct = client(stack, "openai").embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert [e.embedding for e in via_compat.data] == [e.embedding for e in direct.data]
    assert len(via_compat.data) == 2
    assert stack.ups.requests_for("openai")[-1].path == "/v1/embeddings"


def test_compat_workers_ai_embeddings(stack: GatewayStack) -> None:
    answer = client(stack).embeddings.create(model="workers-ai/@cf/baai/bge-base-en-v1.5", input="hi")
    assert len(answer.data) == 1
    assert stack.ups.requests_for("workers-ai")[-1].path == "/client/v4/accounts/acct/ai/v1/embeddings"


def test_custom_provider_on_compat(stack: GatewayStack) -> None:
    answer = client(stack).chat.completions.create(model="custom-acme/acme-large", messages=USER)
    assert answer.model == "acme-large"
    assert stack.ups.requests_for("openai")[-1].path == "/v1/chat/completions"


async def test_async_client_stream(stack: GatewayStack) -> None:
    async with openai.AsyncOpenAI(base_url=stack.url("default", "compat"), api_key="sk-a", max_retries=0) as aclient:
        stream = await aclient.chat.completions.create(model="groq/llama-3.1-8b", messages=USER, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo: hello there"


@pytest.mark.parametrize(
    ("model", "code"),
    [("nope/gpt", 2008), ("gpt-4o-mini", 2008), ("@cf/meta/llama", 2008), ("dynamic/missing", 2008)],
)
def test_compat_bad_model_prefix_is_400_2008(stack: GatewayStack, model: str, code: int) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(stack).chat.completions.create(model=model, messages=USER)
    assert caught.value.status_code == 400
    assert caught.value.body["code"] == code  # type: ignore[index]


def test_stream_without_usage_is_still_costed_and_the_client_sees_no_extra_chunk(stack: GatewayStack) -> None:
    raw = client(stack).chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini-usage-hidden", messages=USER, stream=True
    )
    chunks = list(raw.parse())
    assert all(c.choices for c in chunks), "the usage-only chunk the gateway asked for must not reach the client"
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: hello there"
    sent = [r for r in stack.ups.requests_for("openai") if r.model == "gpt-4o-mini-usage-hidden"][-1]
    assert sent.json()["stream_options"] == {"include_usage": True}
    record = stack.log_record(raw.headers["cf-aig-log-id"])
    assert record["tokens_in"] and record["tokens_out"]


def test_passthrough_stream_is_not_altered_for_usage(stack: GatewayStack) -> None:
    stream = client(stack, "openai").chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    list(stream)
    assert "stream_options" not in stack.ups.requests_for("openai")[-1].json()
