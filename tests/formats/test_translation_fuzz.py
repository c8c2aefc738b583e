"""Both stream translators fed malformed upstream streams: nothing escapes, and the client always gets a
well-formed stream that ends in its dialect's terminal event.

Inputs: random bytes, SSE-shaped token soup, and real streams of either dialect (the upstream's) that are
truncated, reordered, given wrong types, huge numbers, wrong event types, invalid UTF-8, odd line ends and
interleaved garbage, then fed in random chunks and ended with `close()` or `stream_error()`.

Checked after every call: `stream`/`close`/`stream_error` never raise; each non-empty output is whole SSE
events (`event:`/`data:` lines, a blank line after each, one JSON data line per event, `[DONE]` excepted);
the last event is the only terminal one (`[DONE]` or an error object for OpenAI clients, `message_stop` or
`error` for Anthropic clients), nothing follows it, and `failure` is set exactly when it is an error.
Anthropic output is also checked for its block structure (message_start first, blocks opened, fed and closed
one at a time with increasing indices, message_delta before message_stop).

`test_*_small` runs by default (≈200 examples); the `slow` ones run 5,000 (`pytest -m slow`).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchpoint.formats.anthropic_openai import AnthropicToOpenAI
from switchpoint.formats.openai_anthropic import OpenAIToAnthropic
from tests.formats.test_roundtrip import anthropic_streams, cut, ids, json_values, names, positions, texts

JSON = dict[str, Any]
SMALL = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
BIG = settings(max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck))

# -- real upstream streams, as (event name, payload) pairs ------------------------------------------------------

Event = tuple[str | None, Any]  # payload: a JSON value, or str for raw data text


@st.composite
def anthropic_events(draw: st.DrawFn) -> list[Event]:
    _, events = draw(anthropic_streams())
    return [(e["type"], e) for e in events]


@st.composite
def openai_events(draw: st.DrawFn) -> list[Event]:
    """A chat.completion.chunk stream: role, reasoning, content, tool-call pieces, finish, usage, [DONE]."""
    head = {"id": "chatcmpl-" + draw(ids), "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}

    def chunk(delta: JSON, finish: str | None = None, **extra: Any) -> Event:
        return None, {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"reasoning_content": t}) for t in draw(st.lists(texts, max_size=3))]
    out += [chunk({"content": t}) for t in draw(st.lists(texts, max_size=3))]
    for index in range(draw(st.integers(0, 2))):
        args = orjson.dumps(draw(st.dictionaries(st.text(max_size=4), json_values, max_size=3))).decode()
        first = {"index": index, "id": draw(ids), "type": "function", "function": {"name": draw(names)}}
        out.append(chunk({"tool_calls": [first]}))
        for piece in [args[a:b] for a, b in zip([0, 3, 9], [3, 9, len(args)], strict=False)] if args else []:
            out.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    finish = draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter", "weird"]))
    out.append(chunk({}, finish))
    if draw(st.booleans()):
        usage = {"prompt_tokens": draw(st.integers(0, 10**6)), "completion_tokens": draw(st.integers(0, 10**6))}
        out.append((None, {**head, "choices": [], "usage": usage}))
    out.append((None, "[DONE]"))
    return out


# -- corruption -------------------------------------------------------------------------------------------------

# Raw number texts that Python cannot write through orjson: they are spliced into the JSON text.
# Integers are of any size (beyond 64 bits they are written by the standard library, see `_encode`).
RAW_NUMBERS = ["1e400", "-1e400", "123456789012345678901234567890", "-9223372036854775809", "1e-400",
               "1152921504606846976", "-1152921504606846976", "1.7976931348623157e308", "-0", "0e0", "NaN"]  # fmt: skip
weird_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from([f"@@RAW{i}@@" for i in range(len(RAW_NUMBERS))]),
    st.lists(json_values, max_size=2),
    st.dictionaries(st.text(max_size=4), json_values, max_size=2),
)
TYPES = ["message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
         "message_stop", "ping", "error", "text_delta", "input_json_delta", "thinking_delta", "signature_delta",
         "tool_use", "text", "thinking", "redacted_thinking", "chat.completion.chunk", "", "unknown"]  # fmt: skip
GARBAGE_DATA = ['{"type":', "[1,2", "null", "42", '"str"', "[]", "{}", "{}}", "[DONE", "DONE", '{"error":{}}',
                '{"error":"boom"}', '{"type":"error","error":{"type":7}}', '{"object":"error"}', "\u2028"]  # fmt: skip
GARBAGE_BLOCKS = [b": comment\n\n", b"retry: 10\n\n", b"id: \x00\n\n", b"event: error\n\n", b"data\n\n", b"\n\n\n",
                  b"event: message_stop\ndata: {}\n\n", b"data: [DONE]\n\n", b"field without colon\n", b"\r\r",
                  b"event: error\ndata: {\"error\": {\"message\": \"x\"}}\n\n"]  # fmt: skip
BAD_BYTES = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00", b"\xc0\xaf", b"\xe2\x82"]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            found += _paths(inner, (*prefix, i))
    return found


def _set(value: Any, path: tuple[Any, ...], new: Any) -> None:
    for step in path[:-1]:
        value = value[step]
    value[path[-1]] = new


@st.composite
def corrupted(draw: st.DrawFn, real: st.SearchStrategy[list[Event]]) -> bytes:
    """A real stream with a few event-level mutations, then encoded, then a few byte-level ones."""
    events = [(name, orjson.loads(orjson.dumps(p)) if not isinstance(p, str) else p) for name, p in draw(real)]
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["value", "type", "drop", "dup", "swap", "data", "name"]))
        at = draw(st.integers(0, len(events) - 1)) if events else None
        if at is None:
            break
        name, payload = events[at]
        if op == "value" and isinstance(payload, dict | list) and _paths(payload):
            _set(payload, draw(st.sampled_from(_paths(payload))), draw(weird_values))
        elif op == "type" and isinstance(payload, dict):
            payload["type"] = draw(st.sampled_from(TYPES))
        elif op == "drop":
            events.pop(at)
        elif op == "dup":
            events.insert(at, (name, copy.deepcopy(payload)))
        elif op == "swap":
            other = draw(st.integers(0, len(events) - 1))
            events[at], events[other] = events[other], events[at]
        elif op == "data":
            events[at] = (name, draw(st.sampled_from(GARBAGE_DATA)))
        elif op == "name":
            events[at] = (draw(st.sampled_from([None, *TYPES])), payload)
    blob = b"".join(_encode(name, payload) for name, payload in events)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["bytes", "block", "random", "crlf", "truncate"]))
        at = draw(st.integers(0, len(blob)))
        if op == "bytes":
            blob = blob[:at] + draw(st.sampled_from(BAD_BYTES)) + blob[at:]
        elif op == "block":
            blob = blob[:at] + draw(st.sampled_from(GARBAGE_BLOCKS)) + blob[at:]
        elif op == "random":
            blob = blob[:at] + draw(st.binary(max_size=12)) + blob[at:]
        elif op == "crlf":
            blob = blob.replace(b"\n", draw(st.sampled_from([b"\r\n", b"\r"])))
        else:
            blob = blob[:at]
    return blob


def _json(payload: Any) -> bytes:
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits
        return json.dumps(payload, ensure_ascii=False).encode()


def _encode(name: str | None, payload: Any) -> bytes:
    data = payload.encode() if isinstance(payload, str) else _json(payload)
    data = re.sub(rb'"@@RAW(\d+)@@"', lambda m: RAW_NUMBERS[int(m.group(1))].encode(), data)
    head = b"event: " + name.encode() + b"\n" if name is not None else b""
    return head + b"data: " + data.replace(b"\n", b"\ndata: ") + b"\n\n"


sse_soup = st.lists(
    st.sampled_from([b"data: ", b"event: ", b":", b"\n", b"\r", b"\r\n", b"{", b"}", b'"type"', b'"choices"',
                     b"[DONE]", b"message_start", b"error", b"0", b"1e400", b"\xff", b" "]) | st.binary(max_size=4),
    max_size=60,
).map(b"".join)  # fmt: skip


def inputs(real: st.SearchStrategy[list[Event]]) -> st.SearchStrategy[bytes]:
    clean = real.map(lambda events: b"".join(_encode(n, p) for n, p in events))
    return st.one_of(st.binary(max_size=300), sse_soup, clean, corrupted(real), corrupted(real), corrupted(real))


endings = st.sampled_from(["close", "error", "close+error"])
statuses = st.sampled_from([400, 429, 500, 502, 503, 529])


# -- the client's view --------------------------------------------------------------------------------------------


def sse_events(blob: bytes) -> list[tuple[str | None, str]]:
    """Strict: UTF-8; events of `event:`/`data:` lines, each ended by one blank line; one data line per event."""
    text = blob.decode("utf-8")
    assert "\r" not in text
    assert text == "" or text.endswith("\n\n"), text[-120:]
    out = []
    for raw in text.split("\n\n")[:-1]:
        event, data = None, []
        for line in raw.split("\n"):
            name, sep, value = line.partition(": ")
            assert sep and name in ("event", "data"), f"not an SSE field line: {line!r}"
            if name == "event":
                assert event is None
                event = value
            else:
                data.append(value)
        assert len(data) == 1, raw
        out.append((event, data[0]))
    return out


def check_openai_client_stream(events: list[tuple[str | None, str]]) -> bool:
    """OpenAI dialect: data-only events, JSON chunks, then [DONE] or an error object. Returns: ended in error."""
    assert events, "no terminal event"
    parsed: list[Any] = []
    for name, data in events:
        assert name is None
        parsed.append("[DONE]" if data == "[DONE]" else orjson.loads(data))
    terminal = [i for i, p in enumerate(parsed) if p == "[DONE]" or (isinstance(p, dict) and "error" in p)]
    assert terminal == [len(parsed) - 1], parsed
    for chunk in parsed[:-1]:
        assert chunk["object"] == "chat.completion.chunk" and isinstance(chunk["choices"], list)
    last = parsed[-1]
    if last != "[DONE]":
        assert isinstance(last["error"]["message"], str) and last["error"]["message"]
    return last != "[DONE]"


def check_anthropic_client_stream(events: list[tuple[str | None, str]]) -> bool:
    """Anthropic dialect: `event:` matches `type`; blocks in order; message_stop or error last. Returns: error."""
    assert events, "no terminal event"
    seq = []
    for name, data in events:
        obj = orjson.loads(data)
        assert isinstance(obj, dict) and name == obj["type"], (name, data)
        seq.append(obj)
    kinds = [e["type"] for e in seq]
    terminal = [i for i, k in enumerate(kinds) if k in ("message_stop", "error")]
    assert terminal == [len(seq) - 1], kinds
    if kinds[-1] == "error":
        assert isinstance(seq[-1]["error"]["type"], str) and seq[-1]["error"]["message"]
    body = seq[:-1]
    if body:
        assert kinds[0] == "message_start" and kinds.count("message_start") == 1, kinds
    next_index, open_index = 0, None
    for e in body[1:]:
        kind = e["type"]
        if kind == "content_block_start":
            assert open_index is None and e["index"] == next_index, kinds
            open_index = next_index
        elif kind == "content_block_delta":
            assert e["index"] == open_index, kinds
        elif kind == "content_block_stop":
            assert e["index"] == open_index, kinds
            open_index, next_index = None, next_index + 1
        else:
            assert kind == "message_delta" and open_index is None, kinds
    if kinds[-1] == "message_stop":
        assert kinds[-2] == "message_delta", kinds
    return kinds[-1] == "error"


def run(translator: Any, blob: bytes, cuts: list[int], ending: str, status: int) -> bytes:
    """Feed `blob` in pieces and end it; every output must be whole events, and nothing may follow the end."""
    pieces = [translator.stream(piece) for piece in cut(blob, cuts)]
    if ending in ("close", "close+error"):
        pieces.append(translator.close())
    if ending in ("error", "close+error"):
        pieces.append(translator.stream_error(status, "upstream connection reset"))
    for piece in pieces:
        assert isinstance(piece, bytes) and (piece == b"" or piece.endswith(b"\n\n")), piece[-80:]
    assert translator.stream(b"data: {}\n\nevent: message_stop\ndata: {}\n\n") == b""
    assert translator.close() == b""
    assert translator.stream_error(500, "late") == b""
    translator.usage  # noqa: B018 - must not raise either
    return b"".join(pieces)


def fuzz_openai_client(blob: bytes, cuts: list[int], ending: str, status: int, include_usage: bool) -> None:
    """An OpenAI client, an Anthropic upstream: `OpenAIToAnthropic.stream` reads Anthropic events."""
    translator = OpenAIToAnthropic("claude-sonnet-4-6")
    translator.request({"messages": [{"role": "user", "content": "hi"}], "stream": True,
                        "stream_options": {"include_usage": include_usage}})  # fmt: skip
    failed = check_openai_client_stream(sse_events(run(translator, blob, cuts, ending, status)))
    assert failed == (translator.failure is not None)


def fuzz_anthropic_client(blob: bytes, cuts: list[int], ending: str, status: int) -> None:
    """An Anthropic client, an OpenAI upstream: `AnthropicToOpenAI.stream` reads OpenAI chunks."""
    translator = AnthropicToOpenAI("gpt-4o")
    failed = check_anthropic_client_stream(sse_events(run(translator, blob, cuts, ending, status)))
    assert failed == (translator.failure is not None)


# -- the runs -------------------------------------------------------------------------------------------------


@SMALL
@given(inputs(anthropic_events()), positions, endings, statuses, st.booleans())
def test_openai_client_stream_fuzz_small(blob: bytes, cuts: list[int], ending: str, status: int, usage: bool) -> None:
    fuzz_openai_client(blob, cuts, ending, status, usage)


@SMALL
@given(inputs(openai_events()), positions, endings, statuses)
def test_anthropic_client_stream_fuzz_small(blob: bytes, cuts: list[int], ending: str, status: int) -> None:
    fuzz_anthropic_client(blob, cuts, ending, status)


@pytest.mark.slow
@BIG
@given(inputs(anthropic_events()), positions, endings, statuses, st.booleans())
def test_openai_client_stream_fuzz(blob: bytes, cuts: list[int], ending: str, status: int, usage: bool) -> None:
    fuzz_openai_client(blob, cuts, ending, status, usage)


@pytest.mark.slow
@BIG
@given(inputs(openai_events()), positions, endings, statuses)
def test_anthropic_client_stream_fuzz(blob: bytes, cuts: list[int], ending: str, status: int) -> None:
    fuzz_anthropic_client(blob, cuts, ending, status)


def _anthropic_stream_with_usage(usage: JSON) -> bytes:
    events = [{"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                    "content": [], "usage": usage}},
              {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}},
              {"type": "message_stop"}]  # fmt: skip
    return b"".join(_encode(e["type"], e) for e in events)


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": 2**64 - 1, "output_tokens": 1},
        {"input_tokens": 2**63, "cache_read_input_tokens": 2**63},
        {"input_tokens": -(2**63), "cache_creation_input_tokens": -(2**63)},
    ],
)
def test_openai_client_stream_with_usage_beyond_64_bits_ends_cleanly(usage: JSON) -> None:
    fuzz_openai_client(_anthropic_stream_with_usage(usage), [], "close", 500, True)
