"""Format translation end to end: the real SDKs on one side, a fake upstream speaking the other format.

OpenAI SDK → `/compat` → Anthropic upstream, and Anthropic SDK → `/compat/v1/messages` → OpenAI-format
upstreams (OpenAI, Workers AI's Kimi). Assertions use what the SDKs parse.
"""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from tests.support.stack import GatewayStack
from tests.support.streams import collect_tool_calls

USER = [{"role": "user", "content": "hello there"}]
WEATHER_OAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_ANT = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CLAUDE = "anthropic/claude-sonnet-4-6"


def oai(stack: GatewayStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url("default", "compat"), api_key="sk-ant-client", max_retries=0)


def ant(stack: GatewayStack) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.url("default", "compat"), api_key="sk-client", max_retries=0)


# -- OpenAI client, Anthropic upstream ---------------------------------------------------------------


def test_openai_client_gets_claude_answer(stack: GatewayStack) -> None:
    raw = oai(stack).chat.completions.with_raw_response.create(
        model=CLAUDE, messages=[{"role": "system", "content": "be brief"}, *USER], max_tokens=64
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == "echo: hello there"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.model == "claude-sonnet-4-6"
    sent = stack.ups.requests_for("anthropic")[-1]
    assert sent.path == "/v1/messages"
    assert sent.json()["system"] in ("be brief", [{"type": "text", "text": "be brief"}])
    assert sent.json()["max_tokens"] == 64
    assert sent.api_key == "sk-ant-client"
    assert sent.headers["anthropic-version"]
    record = stack.log_record(raw.headers["cf-aig-log-id"])
    assert record["tokens_in"] == answer.usage.prompt_tokens and record["tokens_out"] == answer.usage.completion_tokens


def test_openai_client_streams_from_claude_with_usage(stack: GatewayStack) -> None:
    stream = oai(stack).chat.completions.create(
        model=CLAUDE, messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_openai_client_tool_calls_from_claude_stream(stack: GatewayStack) -> None:
    stream = oai(stack).chat.completions.create(model=CLAUDE, messages=USER, tools=[WEATHER_OAI], stream=True)
    calls, finish = collect_tool_calls(stream)
    assert finish == "tool_calls"
    assert [c["name"] for c in calls.values()] == ["get_weather"]
    assert calls[0]["id"].startswith("toolu_")
    assert set(json.loads(calls[0]["arguments"])) == {"city"}


def test_openai_client_tool_loop_against_claude(stack: GatewayStack) -> None:
    client = oai(stack)
    first = client.chat.completions.create(model=CLAUDE, messages=USER, tools=[WEATHER_OAI])
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    history = [*USER, first.choices[0].message.model_dump(exclude_none=True)]
    history.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
    second = client.chat.completions.create(model=CLAUDE, messages=history, tools=[WEATHER_OAI])
    assert second.choices[0].message.content == "echo: sunny"
    sent = stack.ups.requests_for("anthropic")[-1].json()["messages"]
    assert sent[1]["content"][-1]["id"] == call.id
    assert sent[2]["content"][0] == {"type": "tool_result", "tool_use_id": call.id, "content": "sunny"} or (
        sent[2]["content"][0]["tool_use_id"] == call.id
    )


@pytest.mark.parametrize(
    ("scenario", "error"),
    [
        ("error-429-retry-after-3", openai.RateLimitError),
        ("error-401", openai.AuthenticationError),
        ("error-529", openai.InternalServerError),
        ("error-400", openai.BadRequestError),
    ],
)
def test_openai_client_gets_claude_errors_in_its_dialect(stack: GatewayStack, scenario: str, error: type) -> None:
    with pytest.raises(error) as caught:
        oai(stack).chat.completions.create(model=f"anthropic/claude-{scenario}", messages=USER)
    assert isinstance(caught.value.body, dict) and caught.value.body.get("message")  # type: ignore[attr-defined]


def test_openai_client_gets_an_error_when_claude_stream_breaks(stack: GatewayStack) -> None:
    stream = oai(stack).chat.completions.create(
        model="anthropic/claude-truncated-after-3-chunks", messages=USER, stream=True
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_unsupported_parameter_is_a_clear_400(stack: GatewayStack) -> None:
    with pytest.raises(openai.BadRequestError):
        oai(stack).chat.completions.create(model=CLAUDE, messages=USER, n=2)


# -- Anthropic client, OpenAI-format upstreams -----------------------------------------------------------


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "workers-ai/@cf/moonshotai/kimi-k2.5", "moonshot/kimi-k2.6"])
def test_anthropic_client_gets_any_model(stack: GatewayStack, model: str) -> None:
    message = ant(stack).messages.create(model=model, max_tokens=128, messages=USER)
    assert [b.type for b in message.content][-1] == "text"
    assert message.content[-1].text == "echo: hello there"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0


def test_anthropic_client_streams_from_openai(stack: GatewayStack) -> None:
    with ant(stack).messages.stream(model="openai/gpt-4o-mini", max_tokens=128, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: hello there"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    sent = stack.ups.requests_for("openai")[-1].json()
    assert sent["model"] == "gpt-4o-mini" and sent["stream"] is True


def test_anthropic_client_streams_tool_use_from_kimi(stack: GatewayStack) -> None:
    with ant(stack).messages.stream(
        model="workers-ai/@cf/moonshotai/kimi-k2.5", max_tokens=256, messages=USER, tools=[WEATHER_ANT]
    ) as stream:
        final = stream.get_final_message()
    tool_uses = [b for b in final.content if b.type == "tool_use"]
    assert final.stop_reason == "tool_use"
    assert tool_uses and tool_uses[0].name == "get_weather"
    assert set(tool_uses[0].input) == {"city"}  # type: ignore[arg-type]


def test_anthropic_client_tool_loop_against_openai(stack: GatewayStack) -> None:
    client = ant(stack)
    first = client.messages.create(model="openai/gpt-4o-mini", max_tokens=128, messages=USER, tools=[WEATHER_ANT])
    use = next(b for b in first.content if b.type == "tool_use")
    history = [
        *USER,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ]
    second = client.messages.create(model="openai/gpt-4o-mini", max_tokens=128, messages=history, tools=[WEATHER_ANT])
    assert second.content[-1].text == "echo: sunny"  # type: ignore[union-attr]
    sent = stack.ups.requests_for("openai")[-1].json()["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": use.id, "content": "sunny"}


def test_anthropic_client_to_claude_is_forwarded_untranslated(stack: GatewayStack) -> None:
    message = ant(stack).messages.create(model=CLAUDE, max_tokens=64, messages=USER)
    assert message.content[0].text == "echo: hello there"  # type: ignore[union-attr]
    sent = stack.ups.requests_for("anthropic")[-1]
    assert sent.json()["model"] == "claude-sonnet-4-6" and sent.api_key == "sk-client"


@pytest.mark.parametrize(
    ("scenario", "error"),
    [
        ("error-429-retry-after-3", anthropic.RateLimitError),
        ("error-401", anthropic.AuthenticationError),
        ("error-503", anthropic.InternalServerError),
        ("error-400", anthropic.BadRequestError),
    ],
)
def test_anthropic_client_gets_openai_errors_in_its_dialect(stack: GatewayStack, scenario: str, error: type) -> None:
    with pytest.raises(error) as caught:
        ant(stack).messages.create(model=f"openai/gpt-{scenario}", max_tokens=64, messages=USER)
    body = caught.value.body  # type: ignore[attr-defined]
    assert body["type"] == "error" and body["error"]["message"]


def test_anthropic_client_gateway_errors_in_its_dialect(stack: GatewayStack) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        ant(stack).messages.create(model="nope/model", max_tokens=64, messages=USER)
    assert caught.value.body["type"] == "error"  # type: ignore[index]
