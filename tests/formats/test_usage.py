"""`formats.usage`: token usage from OpenAI, Workers AI and Anthropic answers, whole or streamed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchpoint.formats.usage import Usage, usage_from_body, usage_from_obj, usage_from_sse


def sse(*objects: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return b"".join(head + b"data: " + orjson.dumps(o) + b"\n\n" for o in objects)


def openai_stream(pieces: list[str], usage: dict[str, Any] | None, null_usage: bool = True) -> bytes:
    """OpenAI with stream_options.include_usage: `"usage": null` on every chunk, then a choices-less usage chunk."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
    extra: dict[str, Any] = {"usage": None} if null_usage else {}
    out = sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}], **extra})
    for piece in pieces:
        out += sse({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}], **extra})
    out += sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], **extra})
    if usage is not None:
        out += sse({**base, "choices": [], "usage": usage})
    return out + b"data: [DONE]\n\n"


def workers_ai_stream(prompt: int, completions: list[int]) -> bytes:
    out = b""
    for n in completions:
        usage = {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n}
        out += sse({"response": "tok", "p": "abc", "usage": usage})
    return out + b"data: [DONE]\n\n"


def anthropic_stream(input_usage: dict[str, Any], output_tokens: int) -> bytes:
    message = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "usage": {**input_usage, "output_tokens": 1},
    }
    return (
        sse({"type": "message_start", "message": message}, event="message_start")
        + sse(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            event="content_block_start",
        )
        + sse({"type": "ping"}, event="ping")
        + sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
            event="content_block_delta",
        )
        + sse({"type": "content_block_stop", "index": 0}, event="content_block_stop")
        + sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
            event="message_delta",
        )
        + sse({"type": "message_stop"}, event="message_stop")
    )


# -- whole answers -----------------------------------------------------------------------------------


def test_openai_body() -> None:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 7,
            "total_tokens": 19,
            "prompt_tokens_details": {"cached_tokens": 4},
        },
    }
    assert usage_from_obj(body) == Usage(12, 7)
    assert usage_from_body(orjson.dumps(body)) == Usage(12, 7)


def test_workers_ai_envelope() -> None:
    body = {
        "result": {"response": "hi", "usage": {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35}},
        "success": True,
        "errors": [],
        "messages": [],
    }
    assert usage_from_body(orjson.dumps(body)) == Usage(30, 5)


def test_workers_ai_envelope_when_top_level_usage_is_null() -> None:
    body = {"usage": None, "result": {"usage": {"prompt_tokens": 3, "completion_tokens": 2}}}
    assert usage_from_obj(body) == Usage(3, 2)


def test_anthropic_body_adds_cache_tokens_to_input() -> None:
    body = {
        "id": "msg_01",
        "type": "message",
        "content": [{"type": "text", "text": "hi"}],
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 200,
            "cache_read_input_tokens": 3000,
            "output_tokens": 42,
        },
    }
    assert usage_from_body(orjson.dumps(body)) == Usage(3210, 42)


def test_anthropic_null_cache_fields() -> None:
    usage = {"input_tokens": 10, "cache_creation_input_tokens": None, "cache_read_input_tokens": None}
    assert usage_from_obj({"usage": {**usage, "output_tokens": 2}}) == Usage(10, 2)


def test_zero_tokens_are_kept() -> None:
    assert usage_from_obj({"usage": {"prompt_tokens": 0, "completion_tokens": 0}}) == Usage(0, 0)


def test_partial_usage() -> None:
    assert usage_from_obj({"usage": {"prompt_tokens": 9, "total_tokens": 9}}) == Usage(9, None)  # embeddings
    assert usage_from_obj({"usage": {"output_tokens": 4}}) == Usage(None, 4)


@pytest.mark.parametrize(
    "obj",
    [
        {"id": "x", "choices": []},
        {"usage": None},
        {"usage": {}},
        {"usage": "12"},
        {"usage": {"total_tokens": 3}},
        {"result": {"response": "x"}},
        {"result": [1, 2]},
        [{"usage": {"prompt_tokens": 1}}],
        "usage",
        None,
    ],
)
def test_no_usage_is_none(obj: Any) -> None:
    assert usage_from_obj(obj) is None


def test_booleans_are_not_token_counts() -> None:
    assert usage_from_obj({"usage": {"prompt_tokens": True, "completion_tokens": False}}) is None
    assert usage_from_obj({"usage": {"prompt_tokens": True, "completion_tokens": 3}}) == Usage(None, 3)
    assert usage_from_obj({"usage": {"input_tokens": 5, "cache_read_input_tokens": True}}) == Usage(5, None)


def test_floats_and_strings_are_not_token_counts() -> None:
    assert usage_from_obj({"usage": {"prompt_tokens": 1.5, "completion_tokens": "3"}}) is None


def test_body_without_usage_or_not_json() -> None:
    assert usage_from_body(b'{"id": "x"}') is None
    assert usage_from_body(b"") is None
    assert usage_from_body(b'{"usage": {"prompt_tokens": 1') is None
    assert usage_from_body(b'not json "usage"') is None


# -- streams -----------------------------------------------------------------------------------------


def test_openai_stream_usage_only_in_the_final_chunk() -> None:
    usage = {"prompt_tokens": 17, "completion_tokens": 3, "total_tokens": 20}
    assert usage_from_sse(openai_stream(["Hel", "lo", "!"], usage)) == Usage(17, 3)


def test_openai_stream_without_null_usage_fields() -> None:
    usage = {"prompt_tokens": 17, "completion_tokens": 3, "total_tokens": 20}
    assert usage_from_sse(openai_stream(["a"], usage, null_usage=False)) == Usage(17, 3)


def test_openai_stream_without_include_usage() -> None:
    assert usage_from_sse(openai_stream(["a", "b"], None)) is None
    assert usage_from_sse(openai_stream(["a", "b"], None, null_usage=False)) is None


def test_the_word_usage_in_generated_text_is_not_usage() -> None:
    stream = openai_stream(['say "usage"', ' "usage": {}'], None, null_usage=False)
    assert b'"usage"' not in stream  # JSON escapes the quotes
    assert usage_from_sse(stream) is None


def test_workers_ai_stream_last_chunk_wins() -> None:
    assert usage_from_sse(workers_ai_stream(40, [1, 2, 3, 4, 9])) == Usage(40, 9)


def test_workers_ai_stream_single_chunk() -> None:
    assert usage_from_sse(workers_ai_stream(40, [6])) == Usage(40, 6)


def test_anthropic_stream_input_from_message_start_output_from_message_delta() -> None:
    stream = anthropic_stream({"input_tokens": 25}, 15)
    assert usage_from_sse(stream) == Usage(25, 15)


def test_anthropic_stream_with_cache_tokens() -> None:
    start = {"input_tokens": 5, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 2000}
    assert usage_from_sse(anthropic_stream(start, 8)) == Usage(2105, 8)


def test_stream_without_usage() -> None:
    assert usage_from_sse(b"") is None
    assert usage_from_sse(b"data: [DONE]\n\n") is None
    assert usage_from_sse(sse({"type": "ping"}, event="ping")) is None


def test_stream_with_broken_json_in_the_usage_event() -> None:
    assert usage_from_sse(b'data: {"usage": {"prompt_tokens": 1\n\ndata: [DONE]\n\n') is None


def test_openai_stream_crlf_framing() -> None:
    usage = {"prompt_tokens": 17, "completion_tokens": 3, "total_tokens": 20}
    assert usage_from_sse(openai_stream(["a", "b"], usage).replace(b"\n", b"\r\n")) == Usage(17, 3)


def test_streams_with_cr_framing() -> None:
    assert usage_from_sse(workers_ai_stream(40, [1, 2, 7]).replace(b"\n", b"\r")) == Usage(40, 7)
    assert usage_from_sse(anthropic_stream({"input_tokens": 25}, 15).replace(b"\n", b"\r")) == Usage(25, 15)


def test_workers_ai_stream_crlf_framing_last_chunk_wins() -> None:
    assert usage_from_sse(workers_ai_stream(40, [1, 2, 3, 9]).replace(b"\n", b"\r\n")) == Usage(40, 9)


def test_anthropic_stream_crlf_framing() -> None:
    assert usage_from_sse(anthropic_stream({"input_tokens": 25}, 15).replace(b"\n", b"\r\n")) == Usage(25, 15)


def test_usage_merge_keeps_the_newest_of_each() -> None:
    assert Usage(10, 1).merge(Usage(None, 7)) == Usage(10, 7)
    assert Usage(10, 1).merge(Usage(12, None)) == Usage(12, 1)
    assert Usage(None, None).merge(Usage(None, None)) == Usage(None, None)
