"""Anthropic Messages answers as OpenAI Chat Completions: whole messages, error bodies, and the SSE stream
state that translates a stream event by event.

Every event is translated as it arrives; nothing waits for the end of the stream: a thinking block's signature
goes out as a `reasoning_signature` delta when the block ends, a redacted_thinking block as a one-block
`thinking_blocks` delta when it starts. A stream that is cut, malformed (token counts included: each must be an
integer from 0 to MAX_TOKENS) or carries an upstream `error` event ends with an OpenAI error event, never a
clean close.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from switchpoint.formats import openai
from switchpoint.formats.sse import Event, SSEParser
from switchpoint.formats.translator import TranslationError
from switchpoint.formats.usage import Usage

JSON = dict[str, Any]

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
MAX_TOKENS = 2**53 - 1  # a larger token count is no real count, and sums of four such counts still encode as JSON
# Anthropic's error types already use OpenAI's words, except this one (its status, 413, is kept).
_ERROR_TYPES = {"request_too_large": "invalid_request_error"}
_IN_MESSAGE = frozenset(
    {"content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}
)
_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def finish_reason(stop_reason: object) -> str:
    """OpenAI's finish_reason for an Anthropic stop_reason (unknown ones end the turn normally)."""
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def openai_error_type(anthropic_type: object, status: int) -> str:
    if isinstance(anthropic_type, str) and anthropic_type:
        return _ERROR_TYPES.get(anthropic_type, anthropic_type)
    return _STATUS_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def sse_json(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def thinking_fields(blocks: list[JSON]) -> JSON:
    """Where a client finds the thinking it must send back: `reasoning_signature` when one signed block says
    it all (with the joined `reasoning_content`), else the blocks themselves as `thinking_blocks`."""
    if not blocks:
        return {}
    if len(blocks) == 1 and blocks[0]["type"] == "thinking":
        return {"reasoning_signature": blocks[0]["signature"]}
    return {"thinking_blocks": blocks}


def _count(usage: JSON, key: str, default: int) -> int:
    """A token count of Anthropic's usage; null or absent keeps `default`, anything but 0..MAX_TOKENS is Malformed."""
    value = usage.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        raise Malformed(f"upstream usage has an invalid {key!r}: {value!r:.40}")
    return value


@dataclass(slots=True)
class TokenCounts:
    """Anthropic's usage fields, cumulative: later reports (message_delta) overwrite earlier ones."""

    input: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0
    reasoning: int | None = None

    def update(self, usage: object) -> None:
        """Raises Malformed for a count that is not an integer in 0..MAX_TOKENS (null means not reported)."""
        if not isinstance(usage, dict):
            return
        self.input = _count(usage, "input_tokens", self.input)
        self.cache_read = _count(usage, "cache_read_input_tokens", self.cache_read)
        self.cache_write = _count(usage, "cache_creation_input_tokens", self.cache_write)
        self.output = _count(usage, "output_tokens", self.output)
        details = usage.get("output_tokens_details")
        if isinstance(details, dict) and details.get("thinking_tokens") is not None:
            self.reasoning = _count(details, "thinking_tokens", 0)

    @property
    def prompt(self) -> int:
        """OpenAI's prompt_tokens include cached ones; Anthropic's input_tokens exclude cache reads and writes."""
        return self.input + self.cache_read + self.cache_write

    def openai(self) -> JSON:
        body: JSON = {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.output,
            "total_tokens": self.prompt + self.output,
            "prompt_tokens_details": {"cached_tokens": self.cache_read, "cache_write_tokens": self.cache_write},
        }
        if self.reasoning is not None:
            body["completion_tokens_details"] = {"reasoning_tokens": self.reasoning}
        return body

    def usage(self) -> Usage:
        """Cache parts kept apart, so cost never bills cached tokens at the full input price."""
        return Usage(self.prompt, self.output, self.cache_read, self.cache_write, self.reasoning)


def completion_body(body: bytes, model: str) -> tuple[bytes, Usage]:
    """An Anthropic Message body → an OpenAI `chat.completion` body and its usage.

    A 2xx body that is not a message (or whose token counts are not counts) raises TranslationError, as in
    `anthropic_openai`: the caller answers 502.
    """
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise TranslationError(f"The upstream answer is not JSON: {exc}") from exc
    if not isinstance(message, dict) or message.get("type", "message") != "message":
        raise TranslationError(f"The upstream answer is not an Anthropic message: {body[:200]!r}")
    try:
        answer, tokens = completion(message, model)
        return orjson.dumps(answer), tokens.usage()
    except (Malformed, orjson.JSONEncodeError) as exc:
        raise TranslationError(f"The upstream answer cannot be translated: {exc}") from exc


def completion(message: JSON, model: str) -> tuple[JSON, TokenCounts]:
    content = message.get("content")
    blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
    texts = [b["text"] for b in blocks if b.get("type") == "text" and isinstance(b.get("text"), str)]
    thinking = [_answer_thinking(b) for b in blocks if b.get("type") in ("thinking", "redacted_thinking")]
    reply: JSON = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if thinking:
        reply["reasoning_content"] = "".join(b.get("thinking", "") for b in thinking)
        reply.update(thinking_fields(thinking))
    calls = [_answer_call(b) for b in blocks if b.get("type") == "tool_use"]
    if calls:
        reply["tool_calls"] = calls
    tokens = TokenCounts()
    tokens.update(message.get("usage"))
    finish = finish_reason(message.get("stop_reason"))
    choice = {"index": 0, "message": reply, "logprobs": None, "finish_reason": finish}
    msg_id = message.get("id")
    completion = {
        "id": f"chatcmpl-{msg_id if isinstance(msg_id, str) else ''}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": tokens.openai(),
    }
    return completion, tokens


def _answer_thinking(block: JSON) -> JSON:
    if block["type"] == "redacted_thinking":
        return {"type": "redacted_thinking", "data": _str(block.get("data"))}
    return {"type": "thinking", "thinking": _str(block.get("thinking")), "signature": _str(block.get("signature"))}


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _answer_call(block: JSON) -> JSON:
    arguments = orjson.dumps(block.get("input") or {}).decode()
    function = {"name": block.get("name"), "arguments": arguments}
    return {"id": block.get("id"), "type": "function", "function": function}


def error_fields(status: int, body: bytes) -> tuple[str, str | None]:
    """(message, Anthropic error type) of an upstream error body, JSON or not."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        kind = error.get("type")
        return error["message"], kind if isinstance(kind, str) and kind else None
    text = body.decode("utf-8", "replace").strip()[:1000]
    return (f"upstream answered HTTP {status}: {text}" if text else f"upstream answered HTTP {status}"), None


class Malformed(Exception):
    """An upstream event whose shape is not Anthropic's; it ends the stream with an error event."""


def _field(obj: JSON, key: str, kind: type) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise Malformed(f"upstream {obj.get('type', 'event')} has no valid {key!r}")
    return value


@dataclass(slots=True)
class _ToolCall:
    index: int
    start_input: object
    has_arguments: bool = False


@dataclass(slots=True)
class StreamState:
    """Anthropic SSE bytes in any chunking → OpenAI `chat.completion.chunk` SSE bytes, one event at a time."""

    model: str
    include_usage: bool = False
    tokens: TokenCounts = field(default_factory=TokenCounts)
    started: bool = False
    done: bool = False
    failure: str | None = None
    _finished: bool = False
    _parser: SSEParser = field(default_factory=SSEParser)
    _head: JSON = field(default_factory=dict)
    _tools: dict[int, _ToolCall] = field(default_factory=dict)
    _signatures: dict[int, str] = field(default_factory=dict)  # open thinking blocks' signatures, by index

    def feed(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        for event in self._parser.feed(chunk):
            if self.done:
                break
            out.append(self._on_event(event))
        return b"".join(out)

    def close(self) -> bytes:
        tail = self.feed(b"\n\n") if self._parser.pending and not self.done else b""
        if self.done:
            return tail
        return tail + self.fail("upstream stream ended before message_stop", "api_error")

    def fail(self, message: str, type_: str, code: str | None = None) -> bytes:
        self.done = True
        self.failure = message
        return openai.stream_error_event(message, type_, code)

    def _on_event(self, event: Event) -> bytes:
        if not event.data.strip():
            return b""
        try:
            data = orjson.loads(event.data)
            if not isinstance(data, dict):
                raise Malformed("upstream stream event is not a JSON object")
            kind = data.get("type", event.event)
            if not isinstance(kind, str):
                raise Malformed("upstream stream event has no type")
            return self._dispatch(kind, data)
        except orjson.JSONDecodeError:
            return self.fail("upstream sent a malformed stream event (invalid JSON)", "api_error")
        except Malformed as exc:
            return self.fail(str(exc), "api_error")
        except orjson.JSONEncodeError as exc:  # a value of the upstream's that JSON cannot carry back out
            return self.fail(f"upstream stream event cannot be translated: {exc}", "api_error")

    def _dispatch(self, kind: str, data: JSON) -> bytes:
        if kind == "error":
            return self._upstream_error(data)
        if kind == "message_start":
            return self._message_start(data)
        if kind not in _IN_MESSAGE:
            return b""  # ping, and event types added after this was written
        if not self.started:
            raise Malformed(f"upstream sent {kind} before message_start")
        if kind == "message_delta":
            return self._message_delta(data)
        if kind == "message_stop":
            return self._message_stop()
        index = _field(data, "index", int)
        if kind == "content_block_start":
            return self._block_start(index, _field(data, "content_block", dict))
        if kind == "content_block_delta":
            return self._block_delta(index, _field(data, "delta", dict))
        return self._block_stop(index)

    def _chunk(self, delta: JSON, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse_json({**self._head, "choices": [choice]})

    def _message_start(self, data: JSON) -> bytes:
        if self.started:
            raise Malformed("upstream sent a second message_start")
        message = _field(data, "message", dict)
        msg_id = _field(message, "id", str)
        self.started = True
        self._head = {
            "id": "chatcmpl-" + msg_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
        }
        self.tokens.update(message.get("usage"))
        return self._chunk({"role": "assistant", "content": ""})

    def _block_start(self, index: int, block: JSON) -> bytes:
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            return self._chunk({"content": text}) if isinstance(text, str) and text else b""
        if kind == "thinking":
            text = _str(block.get("thinking"))
            self._signatures[index] = _str(block.get("signature"))
            return self._chunk({"reasoning_content": text}) if text else b""
        if kind == "redacted_thinking":
            redacted = {"type": "redacted_thinking", "data": _field(block, "data", str)}
            return self._chunk({"thinking_blocks": [redacted]})  # whole at its start: sent at once
        if kind == "tool_use":
            return self._tool_start(index, block)
        return b""  # server tool blocks and citations: nothing an OpenAI client can represent

    def _tool_start(self, index: int, block: JSON) -> bytes:
        call_id, name = _field(block, "id", str), _field(block, "name", str)
        call = _ToolCall(len(self._tools), block.get("input"))
        self._tools[index] = call
        head = {"index": call.index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        return self._chunk({"tool_calls": [head]})

    def _block_delta(self, index: int, delta: JSON) -> bytes:
        kind = delta.get("type")
        if kind == "text_delta":
            text = _field(delta, "text", str)
            return self._chunk({"content": text}) if text else b""
        if kind == "thinking_delta":
            text = _field(delta, "thinking", str)
            return self._chunk({"reasoning_content": text}) if text else b""
        if kind == "signature_delta":
            if index in self._signatures:
                self._signatures[index] += _field(delta, "signature", str)
            return b""  # sent when the block stops, once it is whole
        if kind == "input_json_delta":
            return self._arguments(index, _field(delta, "partial_json", str))
        return b""

    def _arguments(self, index: int, piece: str) -> bytes:
        call = self._tools.get(index)
        if call is None:
            raise Malformed("upstream sent input_json_delta for a block that is not a tool_use")
        if not piece:
            return b""
        call.has_arguments = True
        return self._chunk({"tool_calls": [{"index": call.index, "function": {"arguments": piece}}]})

    def _block_stop(self, index: int) -> bytes:
        if index in self._signatures:
            return self._signature(index)
        call = self._tools.get(index)
        if call is None or call.has_arguments:
            return b""
        # No input_json_delta carried the input: it is whole in content_block_start (or empty). Send it now,
        # so the client never sees a call whose accumulated arguments are not JSON.
        call.has_arguments = True
        arguments = orjson.dumps(call.start_input).decode() if call.start_input else "{}"
        return self._chunk({"tool_calls": [{"index": call.index, "function": {"arguments": arguments}}]})

    def _signature(self, index: int) -> bytes:
        """A thinking block is whole: its signature goes out before anything that follows the block."""
        signature = self._signatures.pop(index)
        return self._chunk({"reasoning_signature": signature}) if signature else b""

    def _message_delta(self, data: JSON) -> bytes:
        self.tokens.update(data.get("usage"))
        delta = data.get("delta")
        stop = delta.get("stop_reason") if isinstance(delta, dict) else None
        if not isinstance(stop, str) or self._finished:
            return b""
        self._finished = True
        unstopped = b"".join(self._signature(index) for index in sorted(self._signatures))
        return unstopped + self._chunk({}, finish_reason(stop))

    def _message_stop(self) -> bytes:
        if not self._finished:
            raise Malformed("upstream stream stopped without a stop_reason")
        usage = sse_json({**self._head, "choices": [], "usage": self.tokens.openai()}) if self.include_usage else b""
        self.done = True
        return usage + openai.STREAM_DONE + b"\n\n"

    def _upstream_error(self, data: JSON) -> bytes:
        error = data.get("error")
        error = error if isinstance(error, dict) else {}
        message = error.get("message")
        kind = error.get("type")
        code = kind if isinstance(kind, str) else None
        text = message if isinstance(message, str) and message else "upstream stream failed"
        return self.fail(text, openai_error_type(kind, 500), code)
