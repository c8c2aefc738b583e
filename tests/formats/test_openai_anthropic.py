"""`formats.openai_anthropic`: an OpenAI Chat Completions client talking to an Anthropic Messages upstream.

Requests are compared whole; answers are compared whole (bar `created`); streams are built by the Anthropic
fake (`tests/upstreams/anthropic.py`), cut at every byte and at random places, and the OpenAI chunks that
come out are parsed back with `SSEParser` and accumulated the way an OpenAI client does.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchpoint.formats.openai_anthropic import OpenAIToAnthropic
from switchpoint.formats.sse import SSEParser
from switchpoint.formats.translator import TranslationError, Translator
from switchpoint.formats.usage import Usage
from tests.upstreams import anthropic as fake

JSON = dict[str, Any]
MODEL = "claude-sonnet-4-6"
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"],
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]
ANTHROPIC_TOOLS = [
    {"name": "get_weather", "description": "Weather", "input_schema": WEATHER},
    {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
]
USER = {"role": "user", "content": "hello brave new world"}
USER_BLOCKS = [{"type": "text", "text": "hello brave new world"}]


def translate(**body: Any) -> JSON:
    return OpenAIToAnthropic(MODEL).request({"model": "anthropic/" + MODEL, **body})


def rejected(**body: Any) -> TranslationError:
    with pytest.raises(TranslationError) as info:
        translate(**body)
    return info.value


def test_the_class_is_a_translator() -> None:
    translator: Translator = OpenAIToAnthropic(MODEL)
    assert translator.usage is None


# -- request: messages --------------------------------------------------------------------------------------


def test_request_minimal_gets_the_default_max_tokens() -> None:
    assert translate(messages=[USER]) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": USER_BLOCKS}],
        "max_tokens": 4096,
    }
    assert OpenAIToAnthropic(MODEL, default_max_tokens=99).request({"messages": [USER]})["max_tokens"] == 99


def test_request_system_and_developer_anywhere_join_the_top_level_system() -> None:
    assert translate(messages=[{"role": "system", "content": "Be brief."}, USER])["system"] == "Be brief."
    out = translate(
        messages=[
            {"role": "system", "content": "Be brief."},
            USER,
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {"role": "user", "content": "again"},
        ]
    )
    assert out["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use tools."}]
    assert out["messages"] == [{"role": "user", "content": [*USER_BLOCKS, {"type": "text", "text": "again"}]}]


def test_request_system_cache_control_keeps_blocks() -> None:
    cached = {"type": "text", "text": "stable", "cache_control": {"type": "ephemeral"}}
    assert translate(messages=[{"role": "system", "content": [cached]}, USER])["system"] == [cached]


def test_request_consecutive_user_turns_are_merged_like_openclaw_sends_them() -> None:
    second = {"role": "user", "content": [{"type": "text", "text": "<<<CONTEXT>>>"}]}
    out = translate(messages=[USER, second])
    assert out["messages"] == [{"role": "user", "content": [*USER_BLOCKS, {"type": "text", "text": "<<<CONTEXT>>>"}]}]


def test_request_empty_texts_are_dropped_and_empty_messages_skipped() -> None:
    out = translate(messages=[USER, {"role": "assistant", "content": ""}, {"role": "user", "content": "x"}])
    assert out["messages"] == [{"role": "user", "content": [*USER_BLOCKS, {"type": "text", "text": "x"}]}]


def test_request_image_url_https_and_data() -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    assert translate(messages=[{"role": "user", "content": content}])["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
    ]


@pytest.mark.parametrize(
    "url",
    ["data:image/bmp;base64,AAAA", "data:image/png,rawbytes", "ftp://example.com/a.png", "data:image/png;base64"],
)
def test_request_images_anthropic_cannot_read_are_rejected(url: str) -> None:
    error = rejected(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
    assert error.param == "messages[0].content[0]"


def test_request_pdf_file_becomes_a_document() -> None:
    part = {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
    assert translate(messages=[{"role": "user", "content": [part]}])["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
            "title": "a.pdf",
        }
    ]


@pytest.mark.parametrize(
    "file", [{"file_id": "file-abc"}, {"file_data": "data:text/plain;base64,aGk="}], ids=["file_id", "text"]
)
def test_request_files_anthropic_cannot_read_are_rejected(file: JSON) -> None:
    assert rejected(messages=[{"role": "user", "content": [{"type": "file", "file": file}]}]).param == (
        "messages[0].content[0]"
    )


@pytest.mark.parametrize("part", [{"type": "input_audio", "input_audio": {}}, {"type": "text"}, "text"])
def test_request_unknown_or_broken_parts_are_rejected(part: Any) -> None:
    assert rejected(messages=[{"role": "user", "content": [part]}]).param == "messages[0].content[0]"


def test_request_assistant_tool_calls_and_tool_results_keep_ids_and_order() -> None:
    calls = [
        {"id": "callmock1", "type": "function", "function": {"name": "ls", "arguments": '{"path":"."}'}},
        {"id": "functions.read:1", "type": "function", "function": {"name": "read", "arguments": ""}},
    ]
    out = translate(
        messages=[
            USER,
            {"role": "assistant", "content": "Looking.", "tool_calls": calls},
            {"role": "tool", "tool_call_id": "callmock1", "content": "(empty directory)"},
            {"role": "tool", "tool_call_id": "functions.read:1", "content": [{"type": "text", "text": "data"}]},
            {"role": "user", "content": [{"type": "text", "text": "<<<CONTEXT>>>"}]},
        ]
    )
    assert out["messages"] == [
        {"role": "user", "content": USER_BLOCKS},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "callmock1", "name": "ls", "input": {"path": "."}},
                {"type": "tool_use", "id": "functions.read:1", "name": "read", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "callmock1", "content": "(empty directory)"},
                {
                    "type": "tool_result",
                    "tool_use_id": "functions.read:1",
                    "content": [{"type": "text", "text": "data"}],
                },
                {"type": "text", "text": "<<<CONTEXT>>>"},
            ],
        },
    ]


def test_request_empty_tool_result_has_no_content() -> None:
    messages = [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [_call("c1", "f", "{}")]},
        {"role": "tool", "tool_call_id": "c1", "content": ""},
    ]
    assert translate(messages=messages)["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "c1"}],
    }


@pytest.mark.parametrize("arguments", ['{"path":', "[1, 2]", "42"])
def test_request_tool_call_arguments_that_are_not_a_json_object_are_rejected(arguments: str) -> None:
    messages = [USER, {"role": "assistant", "tool_calls": [_call("c1", "ls", arguments)]}]
    assert rejected(messages=messages).param == "messages[1].tool_calls[0].function.arguments"


def test_request_assistant_last_is_kept_as_prefill() -> None:
    out = translate(messages=[USER, {"role": "assistant", "content": "The answer is ("}])
    assert out["messages"][-1] == {"role": "assistant", "content": [{"type": "text", "text": "The answer is ("}]}


def test_request_signed_reasoning_comes_back_as_a_thinking_block_first() -> None:
    assistant = {
        "role": "assistant",
        "content": "Calling.",
        "reasoning_content": "Let me think.",
        "reasoning_signature": "sig_AAAA",
        "tool_calls": [_call("toolu_1", "get_time", "{}")],
    }
    out = translate(messages=[USER, assistant, {"role": "tool", "tool_call_id": "toolu_1", "content": "noon"}])
    assert out["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "Let me think.", "signature": "sig_AAAA"},
        {"type": "text", "text": "Calling."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {}},
    ]


def test_request_thinking_blocks_are_preferred_and_unsigned_reasoning_dropped() -> None:
    blocks: list[JSON] = [
        {"type": "thinking", "thinking": "a", "signature": "s1"},
        {"type": "redacted_thinking", "data": "opaque"},
    ]
    with_blocks = {"role": "assistant", "content": "x", "reasoning_content": "a", "thinking_blocks": blocks}
    assert translate(messages=[USER, with_blocks])["messages"][1]["content"] == [
        *blocks,
        {"type": "text", "text": "x"},
    ]
    unsigned = {"role": "assistant", "content": "x", "reasoning_content": "a"}
    assert translate(messages=[USER, unsigned])["messages"][1]["content"] == [{"type": "text", "text": "x"}]


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([], "messages"),
        ([{"role": "system", "content": "only a system prompt"}], "messages"),
        ([{"role": "function", "name": "f", "content": "x"}], "messages[0].role"),
        ([USER, {"role": "tool", "content": "no id"}], "messages[1].tool_call_id"),
        (["not an object"], "messages[0]"),
    ],
)
def test_request_malformed_messages_are_rejected(messages: list[Any], param: str) -> None:
    assert rejected(messages=messages).param == param


# -- request: parameters ------------------------------------------------------------------------------------


def test_request_tools_become_input_schemas() -> None:
    assert translate(messages=[USER], tools=TOOLS, tool_choice="auto") == {
        "model": MODEL,
        "messages": [{"role": "user", "content": USER_BLOCKS}],
        "max_tokens": 4096,
        "tools": ANTHROPIC_TOOLS,
        "tool_choice": {"type": "auto"},
    }


def test_request_tool_strict_and_cache_control_are_kept() -> None:
    tool = {"type": "function", "function": {"name": "f", "strict": True}, "cache_control": {"type": "ephemeral"}}
    assert translate(messages=[USER], tools=[tool])["tools"] == [
        {
            "name": "f",
            "input_schema": {"type": "object", "properties": {}},
            "strict": True,
            "cache_control": tool["cache_control"],
        }
    ]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ({"type": "function", "function": {"name": "get_time"}}, None, {"type": "tool", "name": "get_time"}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        (None, True, None),
    ],
)
def test_request_tool_choice(choice: Any, parallel: bool | None, expected: JSON | None) -> None:
    body: JSON = {"messages": [USER], "tools": TOOLS, "tool_choice": choice, "parallel_tool_calls": parallel}
    assert translate(**body).get("tool_choice") == expected


def test_request_without_tools_drops_tool_choice() -> None:
    assert translate(messages=[USER], tools=[], tool_choice="auto") == translate(messages=[USER])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
        ({"tools": TOOLS, "tool_choice": {"type": "allowed_tools"}}, "tool_choice"),
    ],
)
def test_request_tools_anthropic_cannot_take_are_rejected(body: JSON, param: str) -> None:
    assert rejected(messages=[USER], **body).param == param


@pytest.mark.parametrize(
    ("body", "max_tokens"),
    [
        ({"max_completion_tokens": 100}, 100),
        ({"max_tokens": 200}, 200),
        ({"max_completion_tokens": 100, "max_tokens": 200}, 100),
    ],
)
def test_request_max_tokens(body: JSON, max_tokens: int) -> None:
    assert translate(messages=[USER], **body)["max_tokens"] == max_tokens


@pytest.mark.parametrize("value", [0, -5, 1.5, "100", True])
def test_request_bad_max_tokens_are_rejected(value: Any) -> None:
    assert rejected(messages=[USER], max_completion_tokens=value).param == "max_completion_tokens"


def test_request_sampling_stop_and_user() -> None:
    out = translate(messages=[USER], temperature=0.7, top_p=0.9, stop="END", user="u-1", stream=True)
    assert out == {
        "model": MODEL,
        "messages": [{"role": "user", "content": USER_BLOCKS}],
        "max_tokens": 4096,
        "temperature": 0.7,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
        "stream": True,
    }
    assert translate(messages=[USER], stop=["a", "b"])["stop_sequences"] == ["a", "b"]


@pytest.mark.parametrize(("name", "value"), [("temperature", 1.5), ("temperature", -0.1), ("top_p", 2)])
def test_request_sampling_out_of_anthropic_range_is_rejected_not_clamped(name: str, value: float) -> None:
    error = rejected(messages=[USER], **{name: value})
    assert error.param == name
    assert name in error.message


@pytest.mark.parametrize(
    ("body", "max_tokens", "budget"),
    [
        ({"reasoning_effort": "low"}, 4096 + 1024, 1024),
        ({"reasoning_effort": "medium"}, 4096 + 4096, 4096),
        ({"reasoning_effort": "high"}, 4096 + 16384, 16384),
        ({"reasoning_effort": "high", "max_completion_tokens": 32000}, 32000, 16384),
        ({"reasoning_effort": "high", "max_completion_tokens": 8000}, 8000, 7999),
    ],
)
def test_request_reasoning_effort_becomes_a_thinking_budget_below_max_tokens(
    body: JSON, max_tokens: int, budget: int
) -> None:
    out = translate(messages=[USER], **body)
    assert (out["max_tokens"], out["thinking"]) == (max_tokens, {"type": "enabled", "budget_tokens": budget})
    assert out["max_tokens"] > out["thinking"]["budget_tokens"]


def test_request_reasoning_effort_none_and_bad_values() -> None:
    assert translate(messages=[USER], reasoning_effort="none")["thinking"] == {"type": "disabled"}
    assert rejected(messages=[USER], reasoning_effort="extreme").param == "reasoning_effort"
    assert rejected(messages=[USER], reasoning_effort="low", max_tokens=1000).param == "max_tokens"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("n", 2),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("response_format", {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}),
        ("response_format", {"type": "json_object"}),
        ("logit_bias", {"50256": -100}),
        ("modalities", ["text", "audio"]),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("functions", [{"name": "f"}]),
        ("web_search_options", {}),
    ],
)
def test_request_parameters_that_change_the_answer_are_rejected(name: str, value: Any) -> None:
    error = rejected(messages=[USER], **{name: value})
    assert error.param == name
    assert error.message.startswith(name)


def test_request_harmless_parameters_are_dropped() -> None:
    harmless: JSON = {
        "frequency_penalty": 0.5,
        "presence_penalty": 0.1,
        "seed": 7,
        "logit_bias": {},
        "store": False,
        "metadata": {"k": "v"},
        "n": 1,
        "logprobs": False,
        "response_format": {"type": "text"},
        "prompt_cache_key": "k",
        "service_tier": "auto",
        "vendor_extension": {"x": 1},
    }
    assert translate(messages=[USER], **harmless) == translate(messages=[USER])


def test_request_stream_options_decide_the_usage_chunk() -> None:
    body = {"messages": [USER], "stream": True, "stream_options": {"include_usage": True}}
    translator = OpenAIToAnthropic(MODEL)
    assert translator.request(body)["stream"] is True
    events = _events(translator.stream(_text_stream()) + translator.close())
    assert events[-2]["choices"] == [] and "usage" in events[-2]


def test_request_an_openclaw_turn_is_accepted_by_the_anthropic_fake() -> None:
    """OpenClaw's second turn (reference/openclaw.md §4.1), translated, passes the fake's validation."""
    body = {
        "model": "anthropic/claude-sonnet-4-6",
        "messages": [
            {"role": "system", "content": "You are a personal assistant running inside OpenClaw."},
            {"role": "user", "content": "Say hello"},
            {"role": "user", "content": [{"type": "text", "text": "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>"}]},
            {"role": "assistant", "content": None, "tool_calls": [_call("callmock1", "ls", '{"path":"."}')]},
            {"role": "tool", "content": "(empty directory)", "tool_call_id": "callmock1"},
            {"role": "user", "content": [{"type": "text", "text": "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>"}]},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": TOOLS,
        "tool_choice": "auto",
        "max_completion_tokens": 4096,
    }
    translator = OpenAIToAnthropic(MODEL)
    upstream = translator.request(body)
    assert [m["role"] for m in upstream["messages"]] == ["user", "assistant", "user"]
    answer = fake.plan_answer(upstream)
    result = _accumulate(translator.stream(b"".join(fake.stream_events(answer))) + translator.close())
    assert result.done and result.finish_reason == "stop" and result.content.startswith("echo: ")


# -- response ------------------------------------------------------------------------------------------------


def _message(content: list[JSON], stop: str = "end_turn", usage: JSON | None = None) -> bytes:
    body = {
        "id": "msg_01abc",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 10, "output_tokens": 5},
    }
    return json.dumps(body).encode()


def _respond(body: bytes) -> tuple[JSON, OpenAIToAnthropic]:
    translator = OpenAIToAnthropic(MODEL)
    out = json.loads(translator.response(body))
    assert isinstance(out.pop("created"), int)
    return out, translator


def _completion(message: JSON, finish: str, usage: JSON) -> JSON:
    return {
        "id": "chatcmpl-msg_01abc",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    }


USAGE_10_5 = {
    "prompt_tokens": 10,
    "completion_tokens": 5,
    "total_tokens": 15,
    "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
}


def test_response_text() -> None:
    out, translator = _respond(_message([{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}]))
    reply = {"role": "assistant", "content": "Hello there", "refusal": None}
    assert out == _completion(reply, "stop", USAGE_10_5)
    assert translator.usage == Usage(10, 5)


def test_response_tool_calls_have_compact_json_arguments() -> None:
    blocks: list[JSON] = [
        {"type": "text", "text": "Calling."},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Zürich", "days": 2}},
        {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}},
    ]
    out, _ = _respond(_message(blocks, "tool_use"))
    reply = {
        "role": "assistant",
        "content": "Calling.",
        "refusal": None,
        "tool_calls": [
            {
                "id": "toolu_01",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Zürich","days":2}'},
            },
            {"id": "toolu_02", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }
    assert out == _completion(reply, "tool_calls", USAGE_10_5)


def test_response_thinking_comes_with_its_signature_and_round_trips() -> None:
    blocks: list[JSON] = [
        {"type": "thinking", "thinking": "Hmm.", "signature": "sig_A"},
        {"type": "tool_use", "id": "toolu_01", "name": "get_time", "input": {}},
    ]
    out, _ = _respond(_message(blocks, "tool_use"))
    message = out["choices"][0]["message"]
    assert message == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "reasoning_content": "Hmm.",
        "reasoning_signature": "sig_A",
        "tool_calls": [{"id": "toolu_01", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}],
    }
    again = translate(messages=[USER, message, {"role": "tool", "tool_call_id": "toolu_01", "content": "noon"}])
    assert again["messages"][1]["content"] == blocks


def test_response_several_thinking_blocks_come_back_whole() -> None:
    blocks: list[JSON] = [
        {"type": "thinking", "thinking": "a", "signature": "s1"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "ok"},
    ]
    message = _respond(_message(blocks))[0]["choices"][0]["message"]
    assert (message["reasoning_content"], message["thinking_blocks"]) == ("a", blocks[:2])
    assert translate(messages=[USER, message])["messages"][1]["content"] == blocks


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
    ],
)
def test_response_finish_reason(stop: str, finish: str) -> None:
    assert _respond(_message([{"type": "text", "text": "x"}], stop))[0]["choices"][0]["finish_reason"] == finish


def test_response_usage_counts_cache_reads_and_writes_as_prompt_tokens() -> None:
    usage = {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20, "output_tokens": 5}
    out, translator = _respond(_message([{"type": "text", "text": "x"}], usage=usage))
    assert out["usage"] == {
        "prompt_tokens": 130,
        "completion_tokens": 5,
        "total_tokens": 135,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 20},
    }
    assert translator.usage == Usage(130, 5)


def test_response_from_the_anthropic_fake() -> None:
    answer = fake.plan_answer({"model": MODEL, "max_tokens": 100, "messages": [USER]})
    out, _ = _respond(json.dumps(fake.message(answer)).encode())
    assert out["choices"][0]["message"]["content"] == "echo: hello brave new world"


@pytest.mark.parametrize("body", [b"<html>oops</html>", b"[1]", b'{"type": "error", "error": {}}'])
def test_response_that_is_not_a_message_raises_for_a_502(body: bytes) -> None:
    with pytest.raises(TranslationError, match="not"):
        OpenAIToAnthropic(MODEL).response(body)


# -- errors --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "out_status", "out_type"),
    [
        (400, "invalid_request_error", 400, "invalid_request_error"),
        (401, "authentication_error", 401, "authentication_error"),
        (403, "permission_error", 403, "permission_error"),
        (404, "not_found_error", 404, "not_found_error"),
        (413, "request_too_large", 413, "invalid_request_error"),
        (429, "rate_limit_error", 429, "rate_limit_error"),
        (500, "api_error", 500, "api_error"),
        (529, "overloaded_error", 503, "overloaded_error"),
    ],
)
def test_error_bodies_are_translated(status: int, kind: str, out_status: int, out_type: str) -> None:
    body = json.dumps(fake.error_body(status, "it broke")).encode()
    assert fake.error_body(status, "x")["error"]["type"] == kind
    got_status, got_body = OpenAIToAnthropic(MODEL).error(status, body)
    assert (got_status, json.loads(got_body)) == (
        out_status,
        {"error": {"message": "it broke", "type": out_type, "param": None, "code": kind}},
    )


def test_error_non_json_body_is_wrapped() -> None:
    status, body = OpenAIToAnthropic(MODEL).error(502, b"<html>Bad Gateway</html>")
    assert (status, json.loads(body)) == (
        502,
        {
            "error": {
                "message": "upstream answered HTTP 502: <html>Bad Gateway</html>",
                "type": "api_error",
                "param": None,
                "code": None,
            }
        },
    )
    assert json.loads(OpenAIToAnthropic(MODEL).error(429, b"")[1])["error"]["type"] == "rate_limit_error"


# -- stream helpers -------------------------------------------------------------------------------------------


def _call(call_id: str, name: str, arguments: str) -> JSON:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _events(out: bytes) -> list[Any]:
    """Every data payload of OpenAI SSE output, JSON-decoded ([DONE] kept as the string)."""
    parser = SSEParser()
    events = parser.feed(out)
    assert not parser.pending, "the translator left a partial event"
    return [event.data if event.data == "[DONE]" else json.loads(event.data) for event in events]


@dataclass
class Result:
    """What an OpenAI client accumulates from a stream."""

    content: str = ""
    reasoning: str = ""
    signature: str = ""
    calls: dict[int, JSON] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: JSON | None = None
    error: JSON | None = None
    done: bool = False
    heads: set[tuple[Any, Any, Any]] = field(default_factory=set)
    role: str | None = None


def _accumulate(out: bytes) -> Result:
    result = Result()
    for event in _events(out):
        assert not result.done and result.error is None, "output after the end of the stream"
        if event == "[DONE]":
            result.done = True
        elif "error" in event:
            result.error = event["error"]
        else:
            _accumulate_chunk(result, event)
    return result


def _accumulate_chunk(result: Result, chunk: JSON) -> None:
    assert chunk["object"] == "chat.completion.chunk"
    result.heads.add((chunk["id"], chunk["created"], chunk["model"]))
    if chunk.get("usage"):
        result.usage = chunk["usage"]
    for choice in chunk["choices"]:
        delta = choice["delta"]
        result.role = delta.get("role", result.role)
        result.content += delta.get("content") or ""
        result.reasoning += delta.get("reasoning_content") or ""
        result.signature += delta.get("reasoning_signature") or ""
        for call in delta.get("tool_calls") or []:
            slot = result.calls.setdefault(call["index"], {"id": None, "name": "", "arguments": ""})
            slot["id"] = call.get("id", slot["id"])
            slot["name"] += call.get("function", {}).get("name") or ""
            slot["arguments"] += call.get("function", {}).get("arguments") or ""
        if choice["finish_reason"] is not None:
            assert result.finish_reason is None
            result.finish_reason = choice["finish_reason"]


def _run(blob: bytes, cuts: Iterable[int] = (), include_usage: bool = True) -> Result:
    translator = OpenAIToAnthropic(MODEL)
    translator.request({"messages": [USER], "stream": True, "stream_options": {"include_usage": include_usage}})
    points = [0, *sorted(cuts), len(blob)]
    out = b"".join(translator.stream(blob[a:b]) for a, b in zip(points, points[1:], strict=False))
    return _accumulate(out + translator.close())


def _answer(**body: Any) -> fake.Answer:
    return fake.plan_answer({"model": MODEL, "max_tokens": 1000, "messages": [USER], **body})


def _text_stream() -> bytes:
    return b"".join(fake.stream_events(_answer()))


def _check_text(result: Result) -> None:
    assert (result.role, result.content, result.finish_reason, result.done) == (
        "assistant",
        "echo: hello brave new world",
        "stop",
        True,
    )
    assert result.usage is not None and result.usage["completion_tokens"] == len("echo: hello brave new world".split())
    assert len(result.heads) == 1


# -- stream --------------------------------------------------------------------------------------------------


def test_stream_text_whole() -> None:
    blob = _text_stream()
    result = _run(blob)
    _check_text(result)
    assert result.usage == {
        "prompt_tokens": 7,
        "completion_tokens": 5,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    }


def test_stream_text_split_at_every_byte_boundary() -> None:
    blob = _text_stream()
    for cut in range(1, len(blob)):
        _check_text(_run(blob, [cut]))
    _check_text(_run(blob, range(1, len(blob))))


def test_stream_text_split_at_random_boundaries() -> None:
    blob = _text_stream()
    rng = random.Random(7)
    for _ in range(100):
        _check_text(_run(blob, rng.sample(range(1, len(blob)), rng.randint(1, 30))))


def test_stream_output_is_incremental() -> None:
    events = fake.stream_events(_answer())
    translator = OpenAIToAnthropic(MODEL)
    translator.request({"messages": [USER], "stream": True})
    out = b"".join(translator.stream(event) for event in events[:-2])  # up to the last content_block_stop
    assert _accumulate(out).content == "echo: hello brave new world"
    first = OpenAIToAnthropic(MODEL)
    assert _events(first.stream(events[0]))[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def test_stream_without_include_usage_has_no_usage_chunk() -> None:
    result = _run(_text_stream(), include_usage=False)
    assert (result.usage, result.done, result.finish_reason) == (None, True, "stop")


def test_stream_tool_calls_split_anywhere() -> None:
    answer = _answer(tools=ANTHROPIC_TOOLS)
    expected = [(b["id"], b["name"], b["input"]) for b in answer.blocks if b["type"] == "tool_use"]
    assert len(expected) == 2
    blob = b"".join(fake.stream_events(answer))
    rng = random.Random(11)
    for cuts in [[], range(1, len(blob)), *(rng.sample(range(1, len(blob)), 20) for _ in range(30))]:
        result = _run(blob, cuts)
        assert result.content == "Calling get_weather, get_time."
        assert sorted(result.calls) == [0, 1]
        got = [(c["id"], c["name"], json.loads(c["arguments"])) for _, c in sorted(result.calls.items())]
        assert got == expected
        assert (result.finish_reason, result.done) == ("tool_calls", True)


def test_stream_thinking_gives_reasoning_content_and_signature() -> None:
    answer = _answer(thinking={"type": "enabled", "budget_tokens": 1024})
    result = _run(b"".join(fake.stream_events(answer)))
    assert result.reasoning == "Thinking about: hello brave new world"
    assert result.signature == "sig_" + "A" * 40
    assert (result.content, result.finish_reason) == ("echo: hello brave new world", "stop")


def _sse(obj: JSON) -> bytes:
    return f"event: {obj['type']}\ndata: {json.dumps(obj)}\n\n".encode()


START = _sse(
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 50, "output_tokens": 1},
        },
    }
)
STOP = _sse({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}) + _sse(
    {"type": "message_stop"}
)


def test_stream_tool_input_given_whole_in_content_block_start_is_not_lost() -> None:
    block = {"type": "tool_use", "id": "toolu_9", "name": "ls", "input": {"path": "."}}
    blob = START + _sse({"type": "content_block_start", "index": 0, "content_block": block})
    blob += _sse({"type": "content_block_stop", "index": 0}) + STOP
    result = _run(blob)
    assert result.calls == {0: {"id": "toolu_9", "name": "ls", "arguments": '{"path":"."}'}}
    assert result.usage == {
        "prompt_tokens": 60,
        "completion_tokens": 9,
        "total_tokens": 69,
        "prompt_tokens_details": {"cached_tokens": 50, "cache_write_tokens": 0},
    }


def test_stream_tool_without_arguments_gets_an_empty_object() -> None:
    block = {"type": "tool_use", "id": "toolu_9", "name": "get_time", "input": {}}
    blob = START + _sse({"type": "content_block_start", "index": 0, "content_block": block})
    blob += _sse({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ""}})
    blob += _sse({"type": "content_block_stop", "index": 0}) + STOP
    assert _run(blob).calls == {0: {"id": "toolu_9", "name": "get_time", "arguments": "{}"}}


def test_stream_upstream_error_event_becomes_an_openai_error_and_ends_the_stream() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    translator = OpenAIToAnthropic(MODEL)
    out = translator.stream(START + _sse(error) + _text_stream())
    assert _events(out)[-1] == {
        "error": {"message": "Overloaded", "type": "overloaded_error", "param": None, "code": "overloaded_error"}
    }
    assert translator.stream(b"data: more\n\n") == b"" and translator.close() == b""
    assert translator.failure == "Overloaded"


def test_stream_cut_before_message_stop_ends_with_an_error_not_a_clean_close() -> None:
    blob = _text_stream()
    cut = blob.index(b"event: message_delta")
    result = _run(blob[:cut])
    assert result.content == "echo: hello brave new world"
    assert (result.done, result.error is not None, result.finish_reason) == (False, True, None)
    assert result.error is not None and result.error["type"] == "api_error"
    translator = OpenAIToAnthropic(MODEL)
    translator.stream(blob[:cut])
    assert translator.failure is None
    translator.close()
    assert translator.failure == "upstream stream ended before message_stop"


def test_stream_close_after_message_stop_is_empty() -> None:
    translator = OpenAIToAnthropic(MODEL)
    translator.stream(_text_stream())
    assert translator.close() == b""
    assert translator.failure is None
    assert translator.usage == Usage(7, 5)


def test_stream_close_flushes_an_unterminated_last_event() -> None:
    translator = OpenAIToAnthropic(MODEL)
    out = translator.stream(_text_stream().rstrip(b"\n"))
    assert b"[DONE]" not in out
    assert _events(out + translator.close())[-1] == "[DONE]"


@pytest.mark.parametrize(
    "bad",
    [
        b"event: content_block_delta\ndata: {not json\n\n",
        b"data: [1, 2]\n\n",
        b'data: {"type": "content_block_delta", "index": "zero", "delta": {}}\n\n',
        b'data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 5}}\n\n',
        b'data: {"type": "content_block_delta", "index": 3, '
        b'"delta": {"type": "input_json_delta", "partial_json": "{"}}\n\n',
        b'data: {"type": "message_start", "message": {"id": "again"}}\n\n',
        b'data: {"type": "message_stop"}\n\n',
    ],
)
def test_stream_malformed_events_end_with_an_error_event(bad: bytes) -> None:
    translator = OpenAIToAnthropic(MODEL)
    events = _events(translator.stream(START + bad) + translator.close())
    assert "error" in events[-1] and events[-1]["error"]["type"] == "api_error"
    assert sum("error" in e for e in events if isinstance(e, dict)) == 1


def _block(index: int, block: JSON, *deltas: JSON) -> bytes:
    events = [{"type": "content_block_start", "index": index, "content_block": block}]
    events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
    return b"".join(_sse(e) for e in [*events, {"type": "content_block_stop", "index": index}])


def test_stream_sends_each_thinking_signature_when_its_block_ends() -> None:
    blob = START + _block(
        0,
        {"type": "thinking", "thinking": "", "signature": ""},
        {"type": "thinking_delta", "thinking": "abc"},
        {"type": "signature_delta", "signature": "SIG"},
    )
    blob += _block(1, {"type": "thinking", "thinking": "", "signature": "S2"})  # signed, without text
    blob += _block(2, {"type": "redacted_thinking", "data": "ENC"})
    blob += _block(3, {"type": "text", "text": ""}, {"type": "text_delta", "text": "hi"}) + STOP
    translator = OpenAIToAnthropic(MODEL)
    chunks = _events(translator.stream(blob) + translator.close())
    deltas = [c["choices"][0]["delta"] for c in chunks[1:-1]]  # role first, [DONE] last
    assert deltas == [
        {"reasoning_content": "abc"},
        {"reasoning_signature": "SIG"},
        {"reasoning_signature": "S2"},
        {"thinking_blocks": [{"type": "redacted_thinking", "data": "ENC"}]},
        {"content": "hi"},
        {},  # the finish_reason chunk repeats nothing
    ]


def test_stream_signature_of_a_thinking_block_left_open_comes_with_the_finish() -> None:
    start = _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "x"}})
    signature = {"type": "signature_delta", "signature": "SIG"}
    blob = START + start + _sse({"type": "content_block_delta", "index": 0, "delta": signature}) + STOP
    result = _run(blob)
    assert (result.reasoning, result.signature, result.finish_reason) == ("x", "SIG", "tool_calls")


BAD_COUNTS = [
    {"input_tokens": 2**64 - 1, "output_tokens": 1},
    {"input_tokens": 2**63, "cache_read_input_tokens": 2**63},
    {"input_tokens": 1, "cache_creation_input_tokens": -1},
    {"input_tokens": "7"},
    {"input_tokens": 7.0},
    {"output_tokens": True},
    {"input_tokens": 1, "output_tokens_details": {"thinking_tokens": -2}},
]


@pytest.mark.parametrize("usage", BAD_COUNTS)
def test_response_with_invalid_token_counts_is_a_translation_error(usage: JSON) -> None:
    with pytest.raises(TranslationError, match="usage"):
        OpenAIToAnthropic(MODEL).response(_message([{"type": "text", "text": "x"}], usage=usage))


@pytest.mark.parametrize("usage", BAD_COUNTS)
@pytest.mark.parametrize("at", ["message_start", "message_delta"])
def test_stream_with_invalid_token_counts_ends_with_an_error_event(usage: JSON, at: str) -> None:
    start = {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "usage": usage}
    finish = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}}
    if at == "message_start":
        start["usage"] = usage
    else:
        start["usage"], finish["usage"] = {"input_tokens": 1}, usage
    blob = _sse({"type": "message_start", "message": start}) + _sse(finish) + _sse({"type": "message_stop"})
    translator = OpenAIToAnthropic(MODEL)
    translator.request({"messages": [USER], "stream": True, "stream_options": {"include_usage": True}})
    out = _events(translator.stream(blob))
    assert out[-1]["error"]["type"] == "api_error" and "usage" in out[-1]["error"]["message"]
    assert translator.failure is not None and translator.close() == b""


def test_stream_null_token_counts_are_not_reported_ones() -> None:
    start = {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "usage": {"input_tokens": 4}}
    finish = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"input_tokens": None, "cache_read_input_tokens": None, "output_tokens": 2},
    }
    blob = _sse({"type": "message_start", "message": start}) + _sse(finish) + _sse({"type": "message_stop"})
    result = _run(blob)
    assert result.usage is not None and (result.usage["prompt_tokens"], result.usage["completion_tokens"]) == (4, 2)


def test_stream_events_before_message_start_are_an_error() -> None:
    translator = OpenAIToAnthropic(MODEL)
    out = translator.stream(_sse({"type": "content_block_stop", "index": 0}))
    assert "error" in _events(out)[0]
    assert translator.usage is None


def test_stream_ping_and_unknown_events_are_ignored() -> None:
    translator = OpenAIToAnthropic(MODEL)
    translator.stream(START)
    assert translator.stream(b'event: ping\ndata: {"type": "ping"}\n\n: comment\n\n') == b""
    assert translator.stream(_sse({"type": "future_event", "x": 1})) == b""


def test_stream_error_from_the_gateway() -> None:
    translator = OpenAIToAnthropic(MODEL)
    translator.stream(START)
    assert _events(translator.stream_error(504, "upstream timed out")) == [
        {"error": {"message": "upstream timed out", "type": "api_error", "param": None, "code": None}}
    ]
    assert translator.close() == b"" and translator.stream_error(502, "again") == b""
    assert translator.failure == "upstream timed out"


# -- properties ----------------------------------------------------------------------------------------------

_FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
_ids = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:", min_size=1, max_size=16)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_args = st.dictionaries(st.text(max_size=6), _json_values, max_size=4)


@st.composite
def conversations(draw: st.DrawFn) -> list[JSON]:
    """Valid OpenAI conversations: system prompts, user and assistant text, tool calls and their results."""
    messages: list[JSON] = []
    for step in draw(st.lists(st.sampled_from(["system", "user", "assistant", "tools"]), min_size=1, max_size=8)):
        if step in ("system", "user", "assistant"):
            text = draw(_text)
            content: Any = text if draw(st.booleans()) else [{"type": "text", "text": text}]
            messages.append({"role": step, "content": content})
            continue
        calls = [_call(draw(_ids), draw(_ids), json.dumps(draw(_args))) for _ in range(draw(st.integers(1, 3)))]
        messages.append({"role": "assistant", "content": draw(st.none() | _text), "tool_calls": calls})
        messages += [{"role": "tool", "tool_call_id": c["id"], "content": draw(_text)} for c in calls]
    if all(m["role"] == "system" for m in messages):
        messages.append({"role": "user", "content": draw(_text)})
    return messages


def _openai_items(messages: list[JSON]) -> list[tuple[str, str, Any]]:
    """(role, kind, value) of every piece of the conversation, in order, system left out."""
    items: list[tuple[str, str, Any]] = []
    for m in messages:
        role = "user" if m["role"] == "tool" else m["role"]
        content = m.get("content")
        if m["role"] == "system":
            continue
        if m["role"] == "tool":
            items.append((role, "tool_result", (m["tool_call_id"], content)))
            continue
        texts = [content] if isinstance(content, str) else [p["text"] for p in content or []]
        items += [(role, "text", t) for t in texts if t]
        for call in m.get("tool_calls", []):
            args = json.loads(call["function"]["arguments"])
            items.append((role, "tool_use", (call["id"], call["function"]["name"], args)))
    return items


def _anthropic_items(turns: list[JSON]) -> list[tuple[str, str, Any]]:
    items: list[tuple[str, str, Any]] = []
    for turn in turns:
        for block in turn["content"]:
            if block["type"] == "text":
                items.append((turn["role"], "text", block["text"]))
            elif block["type"] == "tool_use":
                items.append((turn["role"], "tool_use", (block["id"], block["name"], block["input"])))
            else:
                items.append((turn["role"], "tool_result", (block["tool_use_id"], block.get("content", ""))))
    return items


@_FUZZ
@given(conversations())
def test_property_request_keeps_every_text_tool_id_and_the_order(messages: list[JSON]) -> None:
    out = OpenAIToAnthropic(MODEL).request({"messages": messages})
    assert _anthropic_items(out["messages"]) == _openai_items(messages)
    roles = [turn["role"] for turn in out["messages"]]
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False)), "turns must alternate"
    system_texts = [
        t
        for m in messages
        if m["role"] == "system"
        for t in ([m["content"]] if isinstance(m["content"], str) else [p["text"] for p in m["content"]])
    ]
    system = out.get("system", [])
    assert ([system] if isinstance(system, str) else [b["text"] for b in system]) == system_texts


_EVENT_TYPES = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
]


_FIELDS = ["index", "delta", "message", "content_block", "error", "usage", "type"]


def _mangle(draw: st.DrawFn, event: bytes) -> list[bytes]:
    """One real event kept, dropped, repeated, given a random field value, or joined by random bytes."""
    action = draw(st.integers(0, 79))
    if action == 0:
        return []
    if action == 1:
        return [event, event]
    if action == 2:
        payload = json.loads(SSEParser().feed(event)[0].data)
        payload[draw(st.sampled_from(_FIELDS))] = draw(_json_values | st.sampled_from(_EVENT_TYPES))
        return [_sse(payload)]
    if action == 3:
        return [event, draw(st.binary(max_size=40))]
    if action == 4:
        return [
            _sse(
                {
                    "type": draw(st.sampled_from(_EVENT_TYPES)),
                    **draw(st.dictionaries(st.sampled_from(_FIELDS), _json_values, max_size=3)),
                }
            )
        ]
    return [event]


@st.composite
def mangled_streams(draw: st.DrawFn) -> bytes:
    """A real stream (thinking, text, two tool calls) with some of its events mangled."""
    events = fake.stream_events(_answer(tools=ANTHROPIC_TOOLS, thinking={"type": "enabled", "budget_tokens": 1024}))
    return b"".join(piece for event in events for piece in _mangle(draw, event))


def _check_fuzzed_output(out: bytes) -> None:
    parser = SSEParser()
    events = parser.feed(out)
    assert not parser.pending
    for event in events:
        if event.data != "[DONE]":
            assert isinstance(json.loads(event.data), dict)
    assert events, "close() must say how the stream ended"
    last = events[-1].data
    assert last == "[DONE]" or "error" in json.loads(last)


@_FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=8))
def test_property_stream_never_raises_on_arbitrary_bytes(blob: bytes, cuts: list[int]) -> None:
    translator = OpenAIToAnthropic(MODEL)
    points = [0, *sorted(c for c in cuts if c < len(blob)), len(blob)]
    out = b"".join(translator.stream(blob[a:b]) for a, b in zip(points, points[1:], strict=False))
    _check_fuzzed_output(out + translator.close())


@_FUZZ
@given(mangled_streams(), st.lists(st.integers(0, 5000), max_size=6))
def test_property_stream_never_raises_on_mangled_events(blob: bytes, cuts: list[int]) -> None:
    translator = OpenAIToAnthropic(MODEL)
    points = [0, *sorted(c for c in cuts if c < len(blob)), len(blob)]
    out = b"".join(translator.stream(blob[a:b]) for a, b in zip(points, points[1:], strict=False))
    _check_fuzzed_output(out + translator.close())
    assert translator.usage is None or isinstance(translator.usage, Usage)


_MESSAGE_KEYS = ["role", "content", "tool_calls", "tool_call_id", "reasoning_content", "reasoning_signature"]
_ROLES = st.sampled_from(["user", "assistant", "tool", "system", "developer"])
_PARAMS = [
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "reasoning_effort",
    "n",
    "response_format",
    "logit_bias",
    "stream_options",
    "user",
]
_parts = st.dictionaries(
    st.sampled_from(["type", "text", "image_url", "file", "function", "id"]),
    _json_values | st.sampled_from(["text", "image_url", "file", "function"]),
    max_size=4,
)
_junk = _json_values | _ROLES | st.lists(_parts, max_size=3)


@_FUZZ
@given(st.lists(st.dictionaries(st.sampled_from(_MESSAGE_KEYS), _junk, max_size=5), max_size=4))
def test_property_junk_messages_are_rejected_only_with_translation_errors(messages: list[JSON]) -> None:
    try:
        OpenAIToAnthropic(MODEL).request({"messages": messages})
    except TranslationError as exc:
        assert exc.message


@_FUZZ
@given(st.dictionaries(st.sampled_from(_PARAMS), _junk, max_size=4), st.booleans())
def test_property_junk_parameters_are_rejected_only_with_translation_errors(params: JSON, tools: bool) -> None:
    body = {"messages": [USER], **({"tools": TOOLS} if tools else {}), **params}
    try:
        OpenAIToAnthropic(MODEL).request(body)
    except TranslationError as exc:
        assert exc.message


@_FUZZ
@given(st.dictionaries(st.sampled_from(["id", "type", "content", "stop_reason", "usage"]), _junk, max_size=5))
def test_property_response_never_fails_with_anything_but_translation_error(message: JSON) -> None:
    try:
        out = json.loads(OpenAIToAnthropic(MODEL).response(json.dumps(message).encode()))
    except TranslationError:
        return
    assert out["object"] == "chat.completion" and len(out["choices"]) == 1
