"""`formats.usage` detail fields: cache reads, cache writes and reasoning tokens for every provider shape."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchpoint.formats.usage import Usage, usage_from_body, usage_from_obj, usage_from_sse


def detail(usage: Usage | None) -> tuple[int | None, ...]:
    """All five fields: `==` on Usage compares only the two totals."""
    assert usage is not None
    return (
        usage.tokens_in,
        usage.tokens_out,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
    )


def sse(obj: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(obj) + b"\n\n"


def test_positional_construction_and_defaults_are_unchanged() -> None:
    usage = Usage(12, 7)
    assert detail(usage) == (12, 7, None, None, None)
    assert Usage(12, 7, 4, 1, 2) == Usage(12, 7)  # detail fields stay out of ==


def test_openai_cached_and_reasoning_are_inside_the_totals() -> None:
    usage = {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0},
    }
    body = {"id": "chatcmpl-1", "object": "chat.completion", "choices": [], "usage": usage}
    assert detail(usage_from_body(orjson.dumps(body))) == (1200, 300, 1024, None, 256)


def test_openai_stream_final_chunk_details() -> None:
    usage = {"prompt_tokens": 50, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 32}}
    stream = sse({"choices": [{"delta": {"content": "hi"}}], "usage": None}) + sse({"choices": [], "usage": usage})
    assert detail(usage_from_sse(stream + b"data: [DONE]\n\n")) == (50, 9, 32, None, None)


def test_workers_ai_envelope_details() -> None:
    usage = {
        "prompt_tokens": 400,
        "completion_tokens": 80,
        "total_tokens": 480,
        "prompt_tokens_details": {"cached_tokens": 256},
        "completion_tokens_details": {"reasoning_tokens": 60},
    }
    body = {"result": {"response": "x", "usage": usage}, "success": True, "errors": [], "messages": []}
    assert detail(usage_from_body(orjson.dumps(body))) == (400, 80, 256, None, 60)


def test_openai_cache_write_tokens_from_translated_usage() -> None:
    usage = {"prompt_tokens": 310, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 200,
             "cache_write_tokens": 100}}  # fmt: skip
    assert detail(usage_from_obj({"usage": usage})) == (310, 5, 200, 100, None)


def test_deepseek_and_moonshot_cache_fields() -> None:
    deepseek = {
        "prompt_tokens": 100,
        "completion_tokens": 3,
        "prompt_cache_hit_tokens": 64,
        "prompt_cache_miss_tokens": 36,
    }
    assert detail(usage_from_obj({"usage": deepseek})) == (100, 3, 64, None, None)
    moonshot = {"prompt_tokens": 100, "completion_tokens": 3, "total_tokens": 103, "cached_tokens": 80}
    assert detail(usage_from_obj({"usage": moonshot})) == (100, 3, 80, None, None)


def test_reasoning_reported_beside_completion_tokens_is_added_to_the_output() -> None:
    # xAI: total_tokens = prompt + completion + reasoning, so completion_tokens left reasoning out
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 35,
             "completion_tokens_details": {"reasoning_tokens": 20}}  # fmt: skip
    assert detail(usage_from_obj({"usage": usage})) == (10, 25, None, None, 20)


def test_reasoning_inside_completion_tokens_is_not_added_again() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 25, "total_tokens": 35,
             "completion_tokens_details": {"reasoning_tokens": 20}}  # fmt: skip
    assert detail(usage_from_obj({"usage": usage})) == (10, 25, None, None, 20)


def test_anthropic_body_records_cache_parts_and_sums_them_into_tokens_in() -> None:
    usage = {
        "input_tokens": 10,
        "cache_creation_input_tokens": 200,
        "cache_read_input_tokens": 3000,
        "output_tokens": 42,
    }
    body = {"id": "msg_01", "type": "message", "content": [], "usage": usage}
    assert detail(usage_from_body(orjson.dumps(body))) == (3210, 42, 3000, 200, None)


def test_anthropic_zero_cache_fields_are_known_zeros() -> None:
    usage = {"input_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}
    assert detail(usage_from_obj({"usage": usage})) == (7, 1, 0, 0, None)


def anthropic_stream(start_usage: dict[str, Any], delta_usage: dict[str, Any]) -> bytes:
    message = {"id": "msg_01", "type": "message", "role": "assistant", "content": [], "usage": start_usage}
    return (
        sse({"type": "message_start", "message": message}, "message_start")
        + sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
            "content_block_delta",
        )  # fmt: skip
        + sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": delta_usage}, "message_delta")
        + sse({"type": "message_stop"}, "message_stop")
    )


START = {"input_tokens": 5, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 2000, "output_tokens": 1}


def test_anthropic_stream_merge_input_and_cache_from_start_output_from_delta() -> None:
    assert detail(usage_from_sse(anthropic_stream(START, {"output_tokens": 8}))) == (2105, 8, 2000, 100, None)


def test_anthropic_stream_delta_repeating_every_input_field() -> None:
    repeated = {**START, "output_tokens": 8}
    assert detail(usage_from_sse(anthropic_stream(START, repeated))) == (2105, 8, 2000, 100, None)


def test_anthropic_stream_delta_repeating_input_tokens_with_null_cache_fields() -> None:
    delta = {
        "input_tokens": 5,
        "cache_creation_input_tokens": None,
        "cache_read_input_tokens": None,
        "output_tokens": 8,
    }
    assert detail(usage_from_sse(anthropic_stream(START, delta))) == (2105, 8, 2000, 100, None)


def test_merge_keeps_the_newest_detail() -> None:
    merged = Usage(2105, 1, 2000, 100).merge(Usage(None, 8))
    assert detail(merged) == (2105, 8, 2000, 100, None)
    assert detail(Usage(40, 3, 0, None, 1).merge(Usage(40, 9, 16, None, 4))) == (40, 9, 16, None, 4)


def test_responses_api_body_and_stream() -> None:
    usage = {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 60}, "output_tokens": 50,
             "output_tokens_details": {"reasoning_tokens": 20}, "total_tokens": 150}  # fmt: skip
    assert detail(usage_from_obj({"object": "response", "usage": usage})) == (100, 50, 60, None, 20)
    stream = sse({"type": "response.created", "response": {"id": "r", "usage": None}}, "response.created") + sse(
        {"type": "response.completed", "response": {"id": "r", "usage": usage}}, "response.completed"
    )
    assert detail(usage_from_sse(stream)) == (100, 50, 60, None, 20)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # cache counts beside inputTokens (no totalTokens to say otherwise): added
        ({"inputTokens": 10, "outputTokens": 5, "cacheReadInputTokens": 300, "cacheWriteInputTokens": 50},
         (360, 5, 300, 50, None)),
        # totalTokens = input + output + cache: the cache was beside inputTokens
        ({"inputTokens": 10, "outputTokens": 5, "totalTokens": 315, "cacheReadInputTokens": 300},
         (310, 5, 300, None, None)),
        # totalTokens = input + output: inputTokens already held the cache
        ({"inputTokens": 310, "outputTokens": 5, "totalTokens": 315, "cacheReadInputTokens": 300},
         (310, 5, 300, None, None)),
        ({"inputTokens": 12, "outputTokens": 3, "totalTokens": 15}, (12, 3, None, None, None)),
    ],
)  # fmt: skip
def test_bedrock_camel_case(usage: dict[str, Any], expected: tuple[int | None, ...]) -> None:
    assert detail(usage_from_obj({"output": {}, "usage": usage, "stopReason": "end_turn"})) == expected


def test_bad_detail_values_are_ignored() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": "4"},
             "completion_tokens_details": [1]}  # fmt: skip
    assert detail(usage_from_obj({"usage": usage})) == (10, 2, None, None, None)
    assert detail(usage_from_obj({"usage": {"inputTokens": True, "outputTokens": 3}})) == (None, 3, None, None, None)
