"""`formats.anthropic_openai`: an Anthropic Messages client served by an OpenAI Chat Completions upstream.

Requests, answers and errors are compared whole; streams are built from realistic OpenAI chunk sequences
(the shapes of `tests/upstreams/openai.py`, Workers AI's reasoning and usage-on-every-chunk included), fed
in every chunking, checked for a well-formed Anthropic event sequence, and read back by the real anthropic
SDK from a local aiohttp server.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import anthropic
import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchpoint.formats.anthropic_openai import AnthropicToOpenAI
from switchpoint.formats.sse import SSEParser
from switchpoint.formats.translator import TranslationError
from tests.upstreams import openai as fake_openai
from tests.upstreams import workers_ai as fake_workers

JSON = dict[str, Any]
MODEL = "gpt-4o"
_UNSET: Any = object()


# -- helpers ---------------------------------------------------------------------------------------------


def chunk(delta: JSON | None = None, finish: str | None = None, usage: Any = _UNSET, choices: Any = None) -> bytes:
    """One OpenAI `chat.completion.chunk` event, shaped like the fake (and the real) OpenAI stream."""
    body: JSON = {"id": "chatcmpl-abc123", "object": "chat.completion.chunk", "created": 1700000000, "model": MODEL}
    body["choices"] = (
        choices
        if choices is not None
        else [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}]
    )
    if usage is not _UNSET:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def usage(prompt: int, completion: int, cached: int = 0) -> JSON:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
    }


def events(blob: bytes) -> list[JSON]:
    """The Anthropic events in `blob`; each must carry `event: <type>` matching the `type` in its data."""
    parsed = SSEParser().feed(blob)
    out = []
    for event in parsed:
        data = orjson.loads(event.data)
        assert event.event == data["type"], event
        out.append(data)
    return out


def translate(chunks: Iterable[bytes], closing: bool = True) -> bytes:
    translator = AnthropicToOpenAI(MODEL)
    out = b"".join(translator.stream(c) for c in chunks)
    return out + (translator.close() if closing else b"")


def check_well_formed(seq: list[JSON]) -> None:
    """message_start first; blocks indexed 0, 1, ... each started, fed, stopped in turn; then delta+stop or error."""
    assert seq, "no events"
    kinds = [e["type"] for e in seq]
    if kinds[-1] == "error":
        seq = seq[:-1]
        assert "error" not in kinds[:-1] and "message_stop" not in kinds
        if not seq:
            return
    else:
        assert kinds[-2:] == ["message_delta", "message_stop"], kinds
        assert kinds.count("message_delta") == 1 and kinds.count("message_stop") == 1
    assert seq[0]["type"] == "message_start" and kinds.count("message_start") == 1
    open_block: str | None = None  # the open block's type
    next_index, signed = 0, False
    for event in seq[1:]:
        if event["type"] == "content_block_start":
            assert open_block is None and event["index"] == next_index
            open_block, next_index, signed = event["content_block"]["type"], next_index + 1, False
        elif event["type"] == "content_block_delta":
            assert open_block is not None and event["index"] == next_index - 1
            allowed = {"text": {"text_delta"}, "thinking": {"thinking_delta", "signature_delta"}}
            assert event["delta"]["type"] in allowed.get(open_block, {"input_json_delta"})
            assert not signed, "a delta after the thinking signature"
            signed = event["delta"]["type"] == "signature_delta"
        elif event["type"] == "content_block_stop":
            assert open_block is not None and event["index"] == next_index - 1
            assert open_block != "thinking" or signed, "thinking block without signature"
            open_block = None
        else:
            assert event["type"] in ("message_delta", "message_stop"), event
            assert open_block is None, "message ended with an open block"


def tool_inputs(seq: list[JSON]) -> dict[str, str]:
    """Tool id → the partial_json pieces of its block, joined."""
    ids = {e["index"]: e["content_block"].get("id") for e in seq if e["type"] == "content_block_start"}
    found: dict[str, str] = {}
    for e in seq:
        if e["type"] == "content_block_start" and e["content_block"]["type"] == "tool_use":
            found[e["content_block"]["id"]] = ""
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta":
            found[ids[e["index"]]] += e["delta"]["partial_json"]
    return found


def bytewise(blob: bytes) -> list[bytes]:
    return [blob[i : i + 1] for i in range(len(blob))]


# -- requests --------------------------------------------------------------------------------------------


def test_request_maps_every_scalar_field() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["\n\nHuman:", "END"],
        "stream": True,
        "metadata": {"user_id": "user-42"},
    }
    assert AnthropicToOpenAI("moonshot-v1").request(body) == {
        "model": "moonshot-v1",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 1024,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": ["\n\nHuman:", "END"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "user-42",
    }


def test_request_from_openclaw_keeps_the_tool_round_trip() -> None:
    """The anthropic-messages body OpenClaw sends (reference/openclaw.md §4.5), second turn."""
    cached = {"type": "ephemeral"}
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 4096,
        "stream": True,
        "system": [
            {"type": "text", "text": "<stable prefix>", "cache_control": cached},
            {"type": "text", "text": "<dynamic suffix>"},
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Say hello", "cache_control": cached}]},
            {"role": "user", "content": [{"type": "text", "text": "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>"}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolumock1", "name": "ls", "input": {"path": "."}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolumock1",
                        "content": "(empty directory)",
                        "is_error": False,
                        "cache_control": cached,
                    }
                ],
            },
            {"role": "user", "content": [{"type": "text", "text": "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>"}]},
        ],
        "tools": [
            {"name": "ls", "description": "List files", "input_schema": {"type": "object", "properties": {}}},
            {
                "name": "read",
                "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
                "cache_control": cached,
            },
        ],
        "thinking": {"type": "adaptive", "display": "summarized"},
        "output_config": {"effort": "low"},
    }
    assert AnthropicToOpenAI("@cf/moonshotai/kimi-k2.5").request(body) == {
        "model": "@cf/moonshotai/kimi-k2.5",
        "messages": [
            {"role": "system", "content": "<stable prefix>\n\n<dynamic suffix>"},
            {"role": "user", "content": "Say hello"},
            {"role": "user", "content": "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "toolumock1", "type": "function", "function": {"name": "ls", "arguments": '{"path":"."}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "toolumock1", "content": "(empty directory)"},
            {"role": "user", "content": "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "ls",
                    "description": "List files",
                    "parameters": {"type": "object", "properties": {}},
                },
            },
            {
                "type": "function",
                "function": {
                    "name": "read",
                    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
                },
            },
        ],
        "max_tokens": 4096,
        "stream": True,
        "stream_options": {"include_usage": True},
        "reasoning_effort": "low",
    }


def test_request_claude_code_history_with_thinking_parallel_tools_and_results() -> None:
    image = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    body = {
        "max_tokens": 200,
        "messages": [
            {"role": "user", "content": "Look around"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "I should list and read.", "signature": "sig-1"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_01A", "name": "Bash", "input": {"command": "ls -la"}},
                    {"type": "tool_use", "id": "toolu_01B", "name": "Read", "input": {"file_path": "/a.png"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A", "content": [{"type": "text", "text": "a.png"}]},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01B",
                        "content": [{"type": "text", "text": "the file:"}, {"type": "image", "source": image}],
                    },
                    {"type": "text", "text": "What is in it?"},
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_01C", "name": "Bash", "input": {"command": "rm x"}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01C",
                        "content": "permission denied",
                        "is_error": True,
                    },
                ],
            },
        ],
    }
    assert AnthropicToOpenAI(MODEL).request(body)["messages"] == [
        {"role": "user", "content": "Look around"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_01A",
                    "type": "function",
                    "function": {"name": "Bash", "arguments": '{"command":"ls -la"}'},
                },
                {
                    "id": "toolu_01B",
                    "type": "function",
                    "function": {"name": "Read", "arguments": '{"file_path":"/a.png"}'},
                },
            ],
            "reasoning_content": "I should list and read.",
            "reasoning_signature": "sig-1",
        },
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "a.png"},
        {
            "role": "tool",
            "tool_call_id": "toolu_01B",
            "content": "the file:\n[image attached in the next user message]",
        },
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "text", "text": "What is in it?"},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "toolu_01C", "type": "function", "function": {"name": "Bash", "arguments": '{"command":"rm x"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01C", "content": "Error: permission denied"},
    ]


def test_request_images_and_documents() -> None:
    pdf = {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {"type": "document", "source": pdf, "title": "report.pdf"},
        {"type": "document", "source": pdf},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain notes"}},
        {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": "inline doc"}]}},
        {"type": "text", "text": "Summarise."},
    ]
    request = AnthropicToOpenAI(MODEL).request({"max_tokens": 9, "messages": [{"role": "user", "content": content}]})
    assert request["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                {
                    "type": "file",
                    "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
                },
                {
                    "type": "file",
                    "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
                },
                {"type": "text", "text": "plain notes"},
                {"type": "text", "text": "inline doc"},
                {"type": "text", "text": "Summarise."},
            ],
        }
    ]


TOOL = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "get_weather"},
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        ),
        ({"type": "auto", "disable_parallel_tool_use": True}, {"tool_choice": "auto", "parallel_tool_calls": False}),
        ({"type": "any", "disable_parallel_tool_use": True}, {"tool_choice": "required", "parallel_tool_calls": False}),
        (None, {}),
    ],
    ids=["auto", "any", "none", "tool", "auto-serial", "any-serial", "absent"],
)
def test_request_tool_choice(choice: JSON | None, expected: JSON) -> None:
    body = {"max_tokens": 9, "messages": [{"role": "user", "content": "x"}], "tools": [TOOL], "tool_choice": choice}
    request = AnthropicToOpenAI(MODEL).request(body)
    assert {k: v for k, v in request.items() if k in ("tool_choice", "parallel_tool_calls")} == expected
    assert request["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "parameters": TOOL["input_schema"]}}
    ]


def test_request_tool_choice_without_tools_is_dropped() -> None:
    body = {
        "max_tokens": 9,
        "messages": [{"role": "user", "content": "x"}],
        "tools": [],
        "tool_choice": {"type": "any"},
    }
    assert AnthropicToOpenAI(MODEL).request(body) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 9,
    }


@pytest.mark.parametrize(
    ("thinking", "output_config", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, None, "low"),
        ({"type": "enabled", "budget_tokens": 2048}, None, "low"),
        ({"type": "enabled", "budget_tokens": 2049}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 8192}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 8193}, None, "high"),
        ({"type": "enabled", "budget_tokens": 31999}, {"effort": "low"}, "low"),
        ({"type": "adaptive"}, None, None),
        ({"type": "adaptive"}, {"effort": "medium"}, "medium"),
        ({"type": "adaptive"}, {"effort": "xhigh"}, "high"),
        (None, {"effort": "max"}, "high"),
        ({"type": "disabled"}, {"effort": "high"}, None),
        (None, None, None),
    ],
)
def test_request_reasoning_effort(thinking: JSON | None, output_config: JSON | None, effort: str | None) -> None:
    body: JSON = {"max_tokens": 40000, "messages": [{"role": "user", "content": "x"}]}
    if thinking is not None:
        body["thinking"] = thinking
    if output_config is not None:
        body["output_config"] = output_config
    assert AnthropicToOpenAI(MODEL).request(body).get("reasoning_effort") == effort


def test_request_structured_output_becomes_a_json_schema_response_format() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    body = {
        "max_tokens": 9,
        "messages": [{"role": "user", "content": "x"}],
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
    }
    assert AnthropicToOpenAI(MODEL).request(body)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]}, "web_search"),
        ({"tools": [TOOL, {"type": "bash_20250124", "name": "bash"}]}, "bash (bash_20250124)"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "role"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}
                ]
            },
            "'file'",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "server_tool_use", "id": "s"}]}]}, "server_tool_use"),
        ({"mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "m"}]}, "mcp_servers"),
        ({"system": [{"type": "image"}]}, "system[0]"),
    ],
    ids=["server-tool", "builtin-tool", "empty", "role", "file-image", "user-server-block", "mcp", "system"],
)
def test_request_rejects_what_the_upstream_cannot_do(patch: JSON, needle: str) -> None:
    body = {"max_tokens": 9, "messages": [{"role": "user", "content": "x"}], **patch}
    with pytest.raises(TranslationError) as caught:
        AnthropicToOpenAI(MODEL).request(body)
    assert needle in caught.value.message


# -- whole answers ---------------------------------------------------------------------------------------


def completion(message: JSON, finish: str = "stop", usage_body: JSON | None = None) -> bytes:
    body = {
        "id": "chatcmpl-xyz",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage_body or usage(20, 5, cached=8),
        "service_tier": "default",
    }
    return orjson.dumps(body)


def test_response_text_with_cached_prompt_tokens() -> None:
    translator = AnthropicToOpenAI(MODEL)
    message = {"role": "assistant", "content": "Hello!", "refusal": None, "annotations": []}
    assert orjson.loads(translator.response(completion(message))) == {
        "id": "msg_chatcmpl-xyz",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 12,
            "output_tokens": 5,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 8,
        },
    }
    assert translator.usage is not None and (translator.usage.tokens_in, translator.usage.tokens_out) == (20, 5)


def test_response_reasoning_text_and_tool_calls_in_order() -> None:
    message = {
        "role": "assistant",
        "content": "Let me check.",
        "reasoning_content": "The user wants weather.",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}},
            {"id": "call_3", "type": "function", "function": {"name": "bad", "arguments": '{"city": "Par'}},
            {"id": "call_4", "type": "function", "function": {"name": "twice", "arguments": '"{\\"a\\":1}"'}},
        ],
    }
    answer = orjson.loads(AnthropicToOpenAI(MODEL).response(completion(message, "tool_calls")))
    assert answer["content"] == [
        {"type": "thinking", "thinking": "The user wants weather.", "signature": ""},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "now", "input": {}},
        {"type": "tool_use", "id": "call_3", "name": "bad", "input": {"_raw": '{"city": "Par'}},
        {"type": "tool_use", "id": "call_4", "name": "twice", "input": {"a": 1}},
    ]
    assert answer["stop_reason"] == "tool_use"


def test_response_from_workers_ai_envelope_with_reasoning_field() -> None:
    inner = orjson.loads(completion({"role": "assistant", "content": "ok", "reasoning": "hmm"}, "stop"))
    body = orjson.dumps({"result": inner, "success": True, "errors": [], "messages": []})
    answer = orjson.loads(AnthropicToOpenAI("@cf/openai/gpt-oss-120b").response(body))
    assert answer["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": ""},
        {"type": "text", "text": "ok"},
    ]
    assert answer["model"] == "@cf/openai/gpt-oss-120b"


def test_response_thinking_blocks_come_back_in_order_with_their_signatures() -> None:
    blocks = [{"type": "redacted_thinking", "data": "ENC"}, {"type": "thinking", "thinking": "t", "signature": "S"}]
    message = {"role": "assistant", "content": "hi", "reasoning_content": "t", "thinking_blocks": [*blocks, "junk"]}
    answer = orjson.loads(AnthropicToOpenAI(MODEL).response(completion(message)))
    assert answer["content"] == [*blocks, {"type": "text", "text": "hi"}]


def test_response_signed_thinking_without_text_is_still_a_block() -> None:
    message = {"role": "assistant", "content": "hi", "reasoning_content": "", "reasoning_signature": "S"}
    answer = orjson.loads(AnthropicToOpenAI(MODEL).response(completion(message)))
    assert answer["content"][0] == {"type": "thinking", "thinking": "", "signature": "S"}


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        ({"cached_tokens": 8, "cache_write_tokens": 20}, (2, 20, 8)),
        ({"cache_write_tokens": 1}, (29, 1, 0)),
        ({"cached_tokens": 25, "cache_write_tokens": 20}, (0, 5, 25)),  # never more than prompt_tokens in all
        ({"cached_tokens": 8, "cache_write_tokens": -3}, (22, 0, 8)),
    ],
)
def test_response_usage_takes_cache_writes_out_of_prompt_tokens(details: JSON, expected: tuple[int, ...]) -> None:
    body = {"prompt_tokens": 30, "completion_tokens": 4, "total_tokens": 34, "prompt_tokens_details": details}
    translator = AnthropicToOpenAI(MODEL)
    answer = orjson.loads(translator.response(completion({"role": "assistant", "content": "x"}, usage_body=body)))
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    assert tuple(answer["usage"][k] for k in keys) == expected
    assert translator.usage is not None and translator.usage.tokens_in == 30


@pytest.mark.parametrize(
    ("finish", "tools", "reason"),
    [
        ("stop", False, "end_turn"),
        ("length", False, "max_tokens"),
        ("tool_calls", True, "tool_use"),
        ("function_call", True, "tool_use"),
        ("stop", True, "tool_use"),
        ("content_filter", False, "refusal"),
        (None, False, "end_turn"),
    ],
)
def test_response_stop_reasons(finish: str | None, tools: bool, reason: str) -> None:
    message: JSON = {"role": "assistant", "content": "x"}
    if tools:
        message["tool_calls"] = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    body = orjson.loads(completion(message))
    body["choices"][0]["finish_reason"] = finish
    assert orjson.loads(AnthropicToOpenAI(MODEL).response(orjson.dumps(body)))["stop_reason"] == reason


def test_response_refusal_becomes_text_with_refusal_stop() -> None:
    answer = orjson.loads(
        AnthropicToOpenAI(MODEL).response(completion({"role": "assistant", "content": None, "refusal": "I can't."}))
    )
    assert (answer["content"], answer["stop_reason"]) == ([{"type": "text", "text": "I can't."}], "refusal")


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"error": {"message": "boom"}}', b'{"choices": []}'])
def test_response_that_is_not_a_completion_raises(body: bytes) -> None:
    with pytest.raises(TranslationError):
        AnthropicToOpenAI(MODEL).response(body)


# -- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (529, "overloaded_error"),
    ],
)
def test_error_type_follows_the_status(status: int, kind: str) -> None:
    body = orjson.dumps(fake_openai.error_body(status, "went wrong"))
    assert AnthropicToOpenAI(MODEL).error(status, body) == (
        status,
        orjson.dumps({"type": "error", "error": {"type": kind, "message": "went wrong"}}),
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (fake_workers.envelope_error(429, "Capacity temporarily exceeded").encode(), "Capacity temporarily exceeded"),
        (b'{"error": "model overloaded"}', "model overloaded"),
        (b'{"object": "error", "message": "context too long", "code": 400}', "context too long"),
        (b"<html>502 Bad Gateway</html>", "<html>502 Bad Gateway</html>"),
        (b"", "The upstream answered HTTP 429"),
    ],
    ids=["workers-ai-envelope", "string-error", "vllm", "html", "empty"],
)
def test_error_message_from_any_dialect(body: bytes, message: str) -> None:
    status, translated = AnthropicToOpenAI(MODEL).error(429, body)
    assert (status, orjson.loads(translated)) == (
        429,
        {"type": "error", "error": {"type": "rate_limit_error", "message": message}},
    )


# -- streams: exact sequences ----------------------------------------------------------------------------

START = {
    "type": "message_start",
    "message": {
        "id": "msg_chatcmpl-abc123",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    },
}
STOP = {"type": "message_stop"}


def block_start(index: int, block: JSON) -> JSON:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, kind: str, **fields: str) -> JSON:
    return {"type": "content_block_delta", "index": index, "delta": {"type": kind, **fields}}


def block_stop(index: int) -> JSON:
    return {"type": "content_block_stop", "index": index}


def message_delta(reason: str, prompt: int, completion: int, cached: int = 0) -> JSON:
    tokens = {
        "input_tokens": prompt - cached,
        "output_tokens": completion,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }
    return {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None}, "usage": tokens}


def call_head(index: int, call_id: str, name: str) -> JSON:
    return {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}


def call_piece(index: int, piece: str) -> JSON:
    return {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}


TEXT_STREAM = [
    chunk({"role": "assistant", "content": "", "refusal": None}, usage=None),
    chunk({"content": "Hello"}, usage=None),
    chunk({"content": " world"}, usage=None),
    chunk({}, "stop", usage=None),
    chunk(choices=[], usage=usage(12, 2, cached=4)),
    DONE,
]
TEXT_EVENTS = [
    START,
    block_start(0, {"type": "text", "text": ""}),
    delta(0, "text_delta", text="Hello"),
    delta(0, "text_delta", text=" world"),
    block_stop(0),
    message_delta("end_turn", 12, 2, cached=4),
    STOP,
]

TOOLS_STREAM = [
    chunk({"role": "assistant", "content": None, "tool_calls": [call_head(0, "call_A", "get_weather")]}, usage=None),
    chunk(call_piece(0, '{"ci'), usage=None),
    chunk(call_piece(0, 'ty": "Par'), usage=None),
    chunk(call_piece(0, 'is"}'), usage=None),
    chunk({"tool_calls": [call_head(1, "call_B", "get_time")]}, usage=None),
    chunk(call_piece(1, '{"tz":'), usage=None),
    chunk(call_piece(1, '"CET"}'), usage=None),
    chunk({}, "tool_calls", usage=None),
    chunk(choices=[], usage=usage(30, 17)),
    DONE,
]
TOOLS_EVENTS = [
    START,
    block_start(0, {"type": "tool_use", "id": "call_A", "name": "get_weather", "input": {}}),
    delta(0, "input_json_delta", partial_json='{"ci'),
    delta(0, "input_json_delta", partial_json='ty": "Par'),
    delta(0, "input_json_delta", partial_json='is"}'),
    block_stop(0),
    block_start(1, {"type": "tool_use", "id": "call_B", "name": "get_time", "input": {}}),
    delta(1, "input_json_delta", partial_json='{"tz":'),
    delta(1, "input_json_delta", partial_json='"CET"}'),
    block_stop(1),
    message_delta("tool_use", 30, 17),
    STOP,
]

INTERLEAVED_STREAM = [
    chunk({"role": "assistant", "content": "On it."}),
    chunk({"tool_calls": [call_head(0, "call_A", "read"), call_head(1, "call_B", "ls")]}),
    chunk(call_piece(0, '{"path":')),
    chunk(call_piece(1, '{"dir":')),
    chunk(call_piece(0, '"a.txt"}')),
    chunk(call_piece(1, '"/tmp"}')),
    chunk({}, "tool_calls"),
    DONE,
]
INTERLEAVED_EVENTS = [
    START,
    block_start(0, {"type": "text", "text": ""}),
    delta(0, "text_delta", text="On it."),
    block_stop(0),
    block_start(1, {"type": "tool_use", "id": "call_A", "name": "read", "input": {}}),
    delta(1, "input_json_delta", partial_json='{"path":'),
    delta(1, "input_json_delta", partial_json='"a.txt"}'),
    block_stop(1),
    block_start(2, {"type": "tool_use", "id": "call_B", "name": "ls", "input": {}}),
    delta(2, "input_json_delta", partial_json='{"dir":'),
    delta(2, "input_json_delta", partial_json='"/tmp"}'),
    block_stop(2),
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    },
    STOP,
]


def workers_usage(completion: int) -> JSON:
    return {"prompt_tokens": 9, "completion_tokens": completion, "total_tokens": 9 + completion}


REASONING_STREAM = [  # Workers AI's OpenAI-style models: reasoning_content, usage on every chunk, no [DONE] wait
    chunk({"role": "assistant", "content": "", "refusal": None}, usage=workers_usage(0)),
    chunk({"reasoning_content": "Let me"}, usage=workers_usage(1)),
    chunk({"reasoning_content": " think."}, usage=workers_usage(2)),
    chunk({"content": "Answer"}, usage=workers_usage(3)),
    chunk({}, "stop", usage=workers_usage(3)),
    DONE,
]
REASONING_EVENTS = [
    {**START, "message": {**START["message"], "usage": {**START["message"]["usage"], "input_tokens": 9}}},
    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    delta(0, "thinking_delta", thinking="Let me"),
    delta(0, "thinking_delta", thinking=" think."),
    delta(0, "signature_delta", signature=""),
    block_stop(0),
    block_start(1, {"type": "text", "text": ""}),
    delta(1, "text_delta", text="Answer"),
    block_stop(1),
    message_delta("end_turn", 9, 3),
    STOP,
]

SIGNED_STREAM = [  # an Anthropic upstream behind OpenAIToAnthropic: each signature as its thinking block ends
    chunk({"role": "assistant", "content": ""}, usage=None),
    chunk({"reasoning_content": "Let me"}, usage=None),
    chunk({"reasoning_content": " think."}, usage=None),
    chunk({"reasoning_signature": "sig-1"}, usage=None),
    chunk({"reasoning_signature": "sig-2"}, usage=None),  # a signed thinking block without text
    chunk({"thinking_blocks": [{"type": "redacted_thinking", "data": "opaque"}]}, usage=None),
    chunk({"reasoning_content": "More."}, usage=None),
    chunk({"content": "Answer"}, usage=None),
    chunk({}, "stop", usage=None),
    chunk(choices=[], usage={**usage(30, 4), "prompt_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 20}}),
    DONE,
]
SIGNED_EVENTS = [
    START,
    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    delta(0, "thinking_delta", thinking="Let me"),
    delta(0, "thinking_delta", thinking=" think."),
    delta(0, "signature_delta", signature="sig-1"),
    block_stop(0),
    block_start(1, {"type": "thinking", "thinking": "", "signature": ""}),
    delta(1, "signature_delta", signature="sig-2"),
    block_stop(1),
    block_start(2, {"type": "redacted_thinking", "data": "opaque"}),
    block_stop(2),
    block_start(3, {"type": "thinking", "thinking": "", "signature": ""}),
    delta(3, "thinking_delta", thinking="More."),
    delta(3, "signature_delta", signature=""),  # unsigned: closed when the text starts
    block_stop(3),
    block_start(4, {"type": "text", "text": ""}),
    delta(4, "text_delta", text="Answer"),
    block_stop(4),
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {
            "input_tokens": 2,
            "output_tokens": 4,
            "cache_creation_input_tokens": 20,
            "cache_read_input_tokens": 8,
        },
    },
    STOP,
]

SCENARIOS = {
    "text": (TEXT_STREAM, TEXT_EVENTS),
    "parallel-tools": (TOOLS_STREAM, TOOLS_EVENTS),
    "interleaved-tools": (INTERLEAVED_STREAM, INTERLEAVED_EVENTS),
    "reasoning-then-text": (REASONING_STREAM, REASONING_EVENTS),
    "signed-thinking": (SIGNED_STREAM, SIGNED_EVENTS),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_stream_scenario_events(name: str) -> None:
    stream, expected = SCENARIOS[name]
    seq = events(translate(stream))
    assert seq == expected
    check_well_formed(seq)


@pytest.mark.parametrize("name", SCENARIOS)
def test_stream_same_output_at_every_byte_boundary(name: str) -> None:
    blob = b"".join(SCENARIOS[name][0])
    whole = translate([blob])
    assert translate(bytewise(blob)) == whole
    assert translate([blob.replace(b"\n", b"\r\n")]) == whole
    for cut in range(1, len(blob)):
        assert translate([blob[:cut], blob[cut:]]) == whole, cut
    rng = random.Random(name)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(blob)), rng.randint(1, 12)))
        points = [0, *cuts, len(blob)]
        assert translate(blob[a:b] for a, b in zip(points, points[1:], strict=False)) == whole


def test_stream_tool_inputs_equal_the_upstream_arguments() -> None:
    for stream in (TOOLS_STREAM, INTERLEAVED_STREAM):
        inputs = {k: orjson.loads(v) for k, v in tool_inputs(events(translate(stream))).items()}
        assert inputs in (
            {"call_A": {"city": "Paris"}, "call_B": {"tz": "CET"}},
            {"call_A": {"path": "a.txt"}, "call_B": {"dir": "/tmp"}},
        )


def test_stream_emits_each_delta_as_it_arrives() -> None:
    translator = AnthropicToOpenAI(MODEL)
    outputs = [events(translator.stream(c)) for c in TOOLS_STREAM]
    assert [e["type"] for e in outputs[0]] == ["message_start", "content_block_start"]
    assert outputs[1] == [delta(0, "input_json_delta", partial_json='{"ci')]
    assert outputs[2] == [delta(0, "input_json_delta", partial_json='ty": "Par')]
    assert outputs[7] == [block_stop(1)]  # finish_reason closes the block; message_delta waits for usage
    assert [e["type"] for e in outputs[8]] == ["message_delta", "message_stop"]
    assert outputs[9] == [] and translator.close() == b""


def test_stream_without_usage_chunk_ends_on_done() -> None:
    stream = [chunk({"content": "Hi"}), chunk({}, "length"), DONE]
    translator = AnthropicToOpenAI(MODEL)
    assert [e["type"] for e in events(translator.stream(b"".join(stream[:2])))][-1] == "content_block_stop"
    tail = events(translator.stream(stream[2]))
    assert tail == [message_delta("max_tokens", 0, 0), STOP]
    assert translator.usage is None


def test_stream_signature_waits_with_its_thinking_behind_an_unfinished_tool_call() -> None:
    stream = [
        chunk({"tool_calls": [call_head(0, "call_A", "f")]}),
        chunk(call_piece(0, '{"a":')),
        chunk({"reasoning_content": "x", "reasoning_signature": "S"}),
        chunk(call_piece(0, "1}")),
        chunk({}, "tool_calls"),
        DONE,
    ]
    seq = events(translate(stream))
    check_well_formed(seq)
    assert seq[5:10] == [
        block_start(1, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(1, "thinking_delta", thinking="x"),
        delta(1, "signature_delta", signature="S"),
        block_stop(1),
        message_delta("tool_use", 0, 0),
    ]


def test_stream_usage_is_the_last_seen() -> None:
    translator = AnthropicToOpenAI(MODEL)
    translator.stream(b"".join(REASONING_STREAM))
    assert translator.usage is not None and (translator.usage.tokens_in, translator.usage.tokens_out) == (9, 3)


def test_stream_close_after_finish_without_done_ends_cleanly() -> None:
    assert events(translate(TEXT_STREAM[:-1])) == TEXT_EVENTS
    assert events(translate([b"".join(TEXT_STREAM).rstrip(b"\n")])) == TEXT_EVENTS  # "[DONE]" unterminated


@pytest.mark.parametrize(
    "stream",
    [[], TEXT_STREAM[:3], [TEXT_STREAM[0], b'data: {"id": "chatcmpl-abc123", "choices": [{"delta": {"content": "Hel']],
    ids=["empty", "no-finish", "cut-mid-event"],
)
def test_stream_cut_before_finish_ends_with_an_error(stream: list[bytes]) -> None:
    seq = events(translate(stream))
    assert seq[-1] == {
        "type": "error",
        "error": {"type": "api_error", "message": seq[-1]["error"]["message"]},
    }
    assert "message_stop" not in [e["type"] for e in seq]
    check_well_formed(seq)


@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        (b'data: {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}\n\n',
         "rate_limit_error", "Rate limit reached"),
        (b'data: {"error": {"message": "boom", "type": "server_error", "code": null}}\n\n', "api_error", "boom"),
        (b'data: {"errors": [{"code": 3040, "message": "Capacity temporarily exceeded"}]}\n\n',
         "api_error", "Capacity temporarily exceeded"),
        (b'data: {"object": "error", "message": "bad", "type": "BadRequestError", "code": 400}\n\n',
         "invalid_request_error", "bad"),
        (b"event: error\ndata: {\"message\": \"overloaded\", \"status\": 529}\n\n", "overloaded_error", "overloaded"),
    ],
    ids=["openai-rate-limit", "openai-server", "workers-ai", "vllm", "event-error"],
)  # fmt: skip
def test_stream_upstream_error_event_becomes_an_anthropic_error(error: bytes, kind: str, message: str) -> None:
    translator = AnthropicToOpenAI(MODEL)
    seq = events(translator.stream(b"".join(TEXT_STREAM[:2]) + error + b"".join(TEXT_STREAM[2:])))
    assert seq[-1] == {"type": "error", "error": {"type": kind, "message": message}}
    assert [e["type"] for e in seq] == ["message_start", "content_block_start", "content_block_delta", "error"]
    assert translator.stream(TEXT_STREAM[-1]) == b"" and translator.close() == b""


def test_stream_error_maps_status_and_is_final() -> None:
    translator = AnthropicToOpenAI(MODEL)
    translator.stream(TEXT_STREAM[1])
    assert events(translator.stream_error(503, "upstream reset")) == [
        {"type": "error", "error": {"type": "overloaded_error", "message": "upstream reset"}}
    ]
    assert translator.stream(b"".join(TEXT_STREAM)) == b"" and translator.close() == b""
    finished = AnthropicToOpenAI(MODEL)
    finished.stream(b"".join(TEXT_STREAM))
    assert finished.stream_error(502, "late") == b""


def test_stream_non_json_event_becomes_an_error() -> None:
    seq = events(translate([TEXT_STREAM[0], b"data: {not json\n\n", *TEXT_STREAM[1:]]))
    assert seq[-1]["type"] == "error" and seq[-1]["error"]["type"] == "api_error"
    check_well_formed(seq)


def test_stream_tool_call_name_arriving_late_and_missing_index() -> None:
    stream = [
        chunk({"tool_calls": [{"id": "call_X", "type": "function", "function": {"arguments": ""}}]}),
        chunk({"tool_calls": [{"function": {"name": "late_name", "arguments": '{"a":'}}]}),
        chunk({"tool_calls": [{"function": {"arguments": "1}"}}]}),
        chunk({}, "stop"),
        DONE,
    ]
    seq = events(translate(stream))
    check_well_formed(seq)
    assert seq[1] == block_start(0, {"type": "tool_use", "id": "call_X", "name": "late_name", "input": {}})
    assert tool_inputs(seq) == {"call_X": '{"a":1}'}
    assert seq[-2]["delta"]["stop_reason"] == "tool_use"  # "stop" with tool calls is still a tool use


ONE_SHOT_CALLS = {
    # text and a tool head in one chunk (LiteLLM lost the name there), Kimi-style ids kept verbatim
    "text-and-head-in-one-chunk": [
        chunk({"content": "Sure.", "tool_calls": [call_head(0, "functions.read:0", "read")]}),
        chunk(call_piece(0, '{"path":"a"}')),
        chunk({}, "tool_calls"),
        DONE,
    ],
    # Ollama / Gemini-compat style: whole arguments in the head, several calls in one delta, no `index`
    "whole-calls-without-index": [
        chunk({"tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "read", "arguments": '{"path":"a"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "ls", "arguments": {"dir": "/"}}},
        ]}),
        chunk({}, "stop"),
    ],
    # servers that put every call at index 0 with a fresh id
    "index-reused-per-call": [
        chunk({"tool_calls": [call_head(0, "call_1", "read")]}),
        chunk(call_piece(0, '{"path":"a"}')),
        chunk({"tool_calls": [call_head(0, "call_2", "ls")]}),
        chunk(call_piece(0, '{"dir":"/"}')),
        chunk({}, "tool_calls"),
        DONE,
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", ONE_SHOT_CALLS)
def test_stream_tool_calls_in_other_servers_shapes(name: str) -> None:
    seq = events(translate(ONE_SHOT_CALLS[name]))
    check_well_formed(seq)
    heads = [(e["content_block"]["type"], e["content_block"].get("name")) for e in seq if "content_block" in e]
    inputs = {k: orjson.loads(v) for k, v in tool_inputs(seq).items()}
    if name == "text-and-head-in-one-chunk":
        assert heads == [("text", None), ("tool_use", "read")]
        assert inputs == {"functions.read:0": {"path": "a"}}
    else:
        assert heads == [("tool_use", "read"), ("tool_use", "ls")]
        assert inputs == {"call_1": {"path": "a"}, "call_2": {"dir": "/"}}
    assert seq[-2]["delta"]["stop_reason"] == "tool_use" and seq[-1] == STOP


# -- streams: the real anthropic SDK reads what we emit --------------------------------------------------


async def sdk_stream(aiohttp_server: Any, blob: bytes) -> anthropic.types.Message:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in blob.split(b"\n\n"):
            if event:
                await response.write(event + b"\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", handler)
    server = await aiohttp_server(app)
    client = anthropic.AsyncAnthropic(base_url=str(server.make_url("")), api_key="x", max_retries=0)
    try:
        async with client.messages.stream(
            model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            return await stream.get_final_message()
    finally:
        await client.close()


def fake_upstream(body: JSON, flavor: fake_openai.Flavor) -> tuple[fake_openai.Turn, list[bytes]]:
    turn = fake_openai.plan_turn(body, flavor)
    return turn, fake_openai.chunks(turn, body, flavor)


WEATHER_TOOLS = [
    TOOL,
    {
        "name": "ls",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}, "n": {"type": "integer"}}},
    },
]
ANTHROPIC_REQUEST = {"max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "hello there"}]}


@pytest.mark.parametrize("flavor", [fake_openai.OPENAI, fake_workers.OPENAI_STYLE], ids=["openai", "workers-ai"])
@pytest.mark.parametrize("with_tools", [False, True], ids=["text", "tools"])
async def test_sdk_accumulates_translated_fake_streams(
    aiohttp_server: Any, flavor: fake_openai.Flavor, with_tools: bool
) -> None:
    translator = AnthropicToOpenAI(MODEL)
    request = translator.request({**ANTHROPIC_REQUEST, **({"tools": WEATHER_TOOLS} if with_tools else {})})
    turn, upstream = fake_upstream(request, flavor)
    blob = b"".join(translator.stream(c) for c in upstream) + translator.close()
    check_well_formed(events(blob))
    message = await sdk_stream(aiohttp_server, blob)
    expected: list[JSON] = []
    if turn.reasoning_pieces:
        expected.append({"type": "thinking", "thinking": "".join(turn.reasoning_pieces), "signature": ""})
    if turn.text_pieces:
        expected.append({"type": "text", "text": "".join(turn.text_pieces)})
    for call_id, name, args in turn.calls:
        expected.append({"type": "tool_use", "id": call_id, "name": name, "input": orjson.loads(args)})
    assert [b.model_dump(exclude_none=True, exclude={"caller"}) for b in message.content] == expected
    assert all(b.input for b in message.content if b.type == "tool_use")  # never {}
    assert message.stop_reason == ("tool_use" if with_tools else "end_turn")
    assert (message.usage.input_tokens, message.usage.output_tokens) == (turn.prompt_tokens, turn.completion_tokens)
    assert message.id == f"msg_{turn.id}" and message.model == MODEL


async def test_sdk_accumulates_interleaved_parallel_calls(aiohttp_server: Any) -> None:
    message = await sdk_stream(aiohttp_server, translate(INTERLEAVED_STREAM))
    assert [(b.type, getattr(b, "input", None)) for b in message.content] == [
        ("text", None),
        ("tool_use", {"path": "a.txt"}),
        ("tool_use", {"dir": "/tmp"}),
    ]


async def test_sdk_reads_usage_from_message_delta_including_cache_reads(aiohttp_server: Any) -> None:
    message = await sdk_stream(aiohttp_server, translate(TEXT_STREAM))
    assert message.content[0].type == "text" and message.content[0].text == "Hello world"
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (8, 2, 4)
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)


@pytest.mark.parametrize("stream", [TEXT_STREAM[:3], [*TEXT_STREAM[:2], b'data: {"error": {"message": "x"}}\n\n']])
async def test_sdk_raises_on_a_cut_or_failed_stream(aiohttp_server: Any, stream: list[bytes]) -> None:
    with pytest.raises(anthropic.APIStatusError):
        await sdk_stream(aiohttp_server, translate(stream))


async def test_sdk_parses_whole_answers_and_errors(aiohttp_server: Any) -> None:
    translator = AnthropicToOpenAI(MODEL)
    message = {"role": "assistant", "content": "Hi", "reasoning_content": "think", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "ls", "arguments": '{"path":"."}'}}]}  # fmt: skip
    answers = [
        (200, translator.response(completion(message, "tool_calls"))),
        translator.error(429, orjson.dumps(fake_openai.error_body(429, "slow down"))),
    ]

    async def handler(request: web.Request) -> web.Response:
        status, body = answers.pop(0)
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/messages", handler)
    server = await aiohttp_server(app)
    client = anthropic.AsyncAnthropic(base_url=str(server.make_url("")), api_key="x", max_retries=0)
    try:
        got = await client.messages.create(model="m", max_tokens=9, messages=[{"role": "user", "content": "hi"}])
        assert [b.type for b in got.content] == ["thinking", "text", "tool_use"]
        assert got.content[2].type == "tool_use" and got.content[2].input == {"path": "."}
        assert (got.usage.input_tokens, got.usage.cache_read_input_tokens) == (12, 8)
        with pytest.raises(anthropic.RateLimitError, match="slow down"):
            await client.messages.create(model="m", max_tokens=9, messages=[{"role": "user", "content": "hi"}])
    finally:
        await client.close()


# -- properties ------------------------------------------------------------------------------------------

texts = st.text(min_size=1, max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def conversations(draw: st.DrawFn) -> list[JSON]:
    """Alternating turns: assistants may call tools, the next user turn answers every call, then may talk."""
    messages: list[JSON] = [{"role": "user", "content": [{"type": "text", "text": draw(texts)}]}]
    counter = 0
    for _ in range(draw(st.integers(0, 3))):
        calls = []
        for _ in range(draw(st.integers(0, 3))):
            counter += 1
            suffix = draw(st.from_regex(r"[A-Za-z0-9:._-]{0,6}", fullmatch=True))  # Kimi ids look like `ls:0`
            name = draw(st.from_regex(r"[a-z_]{1,8}", fullmatch=True))
            arguments = draw(st.dictionaries(st.text(max_size=5), json_values, max_size=3))
            calls.append({"type": "tool_use", "id": f"toolu_{counter}{suffix}", "name": name, "input": arguments})
        said = [{"type": "text", "text": t} for t in draw(st.lists(texts, max_size=2))]
        messages.append({"role": "assistant", "content": said + calls or [{"type": "text", "text": draw(texts)}]})
        results = [{"type": "tool_result", "tool_use_id": c["id"], "content": draw(texts)} for c in calls]
        talk = [{"type": "text", "text": t} for t in draw(st.lists(texts, max_size=2, min_size=0 if calls else 1))]
        messages.append({"role": "user", "content": results + talk})
    return messages


def flat_texts(messages: list[JSON]) -> str:
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out += [p.get("text") or p.get("content") or "" for p in content]
    return "\x00".join(out)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations())
def test_request_keeps_every_tool_id_argument_and_text_in_order(messages: list[JSON]) -> None:
    out = AnthropicToOpenAI(MODEL).request({"max_tokens": 9, "messages": messages})["messages"]
    blocks = [b for m in messages for b in m["content"]]
    call_ids = [b["id"] for b in blocks if b["type"] == "tool_use"]
    assert [c["id"] for m in out for c in m.get("tool_calls", [])] == call_ids
    assert [m["tool_call_id"] for m in out if m["role"] == "tool"] == [
        b["tool_use_id"] for b in blocks if b["type"] == "tool_result"
    ]
    arguments = [orjson.loads(c["function"]["arguments"]) for m in out for c in m.get("tool_calls", [])]
    assert arguments == [b["input"] for b in blocks if b["type"] == "tool_use"]
    rendered, position = flat_texts(out), 0
    for block in blocks:
        text = block.get("text") if block["type"] == "text" else block.get("content")
        if isinstance(text, str):
            position = rendered.index(text, position) + len(text)


def valid_sse(blob: bytes) -> list[JSON]:
    """The output is SSE whose every event is `event: <type>` + JSON data with that type; returns the data."""
    assert blob == b"" or blob.endswith(b"\n\n")
    return events(blob)


garbage_events = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda v: b"data: " + orjson.dumps(v) + b"\n\n", json_values),
    st.sampled_from(
        [
            DONE,
            b"data: {\n\n",
            b": keep-alive\n\n",
            b"event: ping\ndata: {}\n\n",
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}),
            chunk({"tool_calls": [{"index": 1, "id": "c1", "function": {"name": "n", "arguments": 5}}]}),
            chunk({"tool_calls": [None, {"index": "x"}]}),
            chunk({"content": 7, "reasoning_content": ["x"]}),
            chunk(choices={"index": 0}),
            chunk({}, finish="tool_calls"),
            chunk(choices=[], usage={"prompt_tokens": "x", "completion_tokens": None}),
            *TEXT_STREAM,
            *TOOLS_STREAM,
            *REASONING_STREAM,
        ]
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(garbage_events, max_size=12), st.lists(st.integers(0, 4000), max_size=8))
def test_stream_fuzz_never_raises_and_stays_well_formed(parts: list[bytes], cuts: list[int]) -> None:
    blob = b"".join(parts)
    points = [0, *sorted(c for c in cuts if c < len(blob)), len(blob)]
    translator = AnthropicToOpenAI(MODEL)
    out = b"".join(translator.stream(blob[a:b]) for a, b in zip(points, points[1:], strict=False))
    out += translator.close()
    seq = valid_sse(out)
    check_well_formed(seq)
    assert seq[-1]["type"] in ("message_stop", "error")


@st.composite
def interleaved_calls(draw: st.DrawFn) -> tuple[list[tuple[str, str, str]], list[bytes]]:
    """1–3 tool calls whose argument pieces arrive in any interleaving (each call's own order kept)."""
    calls, queues = [], []
    for i in range(draw(st.integers(1, 3))):
        args = orjson.dumps(draw(st.dictionaries(st.text(max_size=4), json_values, max_size=3))).decode()
        cuts = sorted(set(draw(st.lists(st.integers(1, max(len(args) - 1, 1)), max_size=4))))
        pieces = [args[a:b] for a, b in zip([0, *cuts], [*cuts, len(args)], strict=False) if args[a:b]]
        calls.append((f"call_{i}", f"tool_{i}", args))
        queues.append([chunk({"tool_calls": [call_head(i, f"call_{i}", f"tool_{i}")]})] +
                      [chunk(call_piece(i, p)) for p in pieces])  # fmt: skip
    stream: list[bytes] = []
    while any(queues):
        queue = draw(st.sampled_from([q for q in queues if q]))
        stream.append(queue.pop(0))
    return calls, [*stream, chunk({}, "tool_calls"), DONE]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(interleaved_calls())
def test_stream_interleaved_tool_calls_keep_every_piece(case: tuple[list[tuple[str, str, str]], list[bytes]]) -> None:
    calls, stream = case
    seq = events(translate(stream))
    check_well_formed(seq)
    assert tool_inputs(seq) == {call_id: args for call_id, _, args in calls}
    names = {e["content_block"]["id"]: e["content_block"]["name"] for e in seq if e["type"] == "content_block_start"}
    assert names == {call_id: name for call_id, name, _ in calls}
