"""OpenAI chat-completion SSE → Anthropic Messages SSE, event by event, for `AnthropicToOpenAI.stream`.

Also the answer-side helpers the whole and streamed paths share: stop reasons, usage, error types and messages.
Every emitted event carries both `event: <type>` and `data: {"type": <type>, ...}` (the Anthropic SDK skips
events without an `event:` line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from switchpoint.formats import anthropic
from switchpoint.formats.sse import SSEParser
from switchpoint.formats.usage import Usage, usage_from_obj

JSON = dict[str, Any]
Target = str | int  # "thinking", "redacted", "text", or the OpenAI index of a tool call

_STOP_REASONS = {"stop": "end_turn", "end": "end_turn", "length": "max_tokens", "content_filter": "refusal"}
_TOOL_FINISHES = ("tool_calls", "tool_call", "function_call")
_MORE_ERROR_TYPES = {402: "billing_error", 503: "overloaded_error", 504: "timeout_error"}
_ERROR_WORDS = (("rate_limit", "rate_limit_error"), ("overloaded", "overloaded_error"),
                ("invalid_api_key", "authentication_error"), ("authentication", "authentication_error"),
                ("permission", "permission_error"), ("not_found", "not_found_error"),
                ("invalid_request", "invalid_request_error"))  # fmt: skip


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def obj_of(value: Any) -> JSON:
    """`value` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def text_of(value: Any) -> str:
    """`value` if it is a string, else ""."""
    return value if isinstance(value, str) else ""


def stop_reason(finish: Any, has_tools: bool) -> str:
    """OpenAI finish_reason → Anthropic stop_reason; a plain stop that carried tool calls is a tool_use."""
    reason = "tool_use" if finish in _TOOL_FINISHES else _STOP_REASONS.get(text_of(finish), "end_turn")
    return "tool_use" if has_tools and reason == "end_turn" else reason


def anthropic_usage(usage: Any) -> JSON:
    """OpenAI usage → Anthropic usage (zeros when unknown): input excludes the cache reads and writes that
    prompt_tokens include (`prompt_tokens_details.cached_tokens` and `.cache_write_tokens`)."""
    usage = obj_of(usage)
    details = obj_of(usage.get("prompt_tokens_details"))
    prompt = max(as_int(usage.get("prompt_tokens")) or 0, 0)
    cached = as_int(details.get("cached_tokens"))
    if cached is None:
        cached = as_int(usage.get("prompt_cache_hit_tokens"))  # DeepSeek's spelling
    cached = min(max(cached or 0, 0), prompt)
    written = min(max(as_int(details.get("cache_write_tokens")) or 0, 0), prompt - cached)
    return {
        "input_tokens": prompt - cached - written,
        "output_tokens": as_int(usage.get("completion_tokens")) or 0,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
    }


def gateway_usage(usage: Any) -> Usage | None:
    """The upstream's OpenAI usage, read by the shared reader so cache and reasoning parts are kept."""
    return usage_from_obj({"usage": usage}) if isinstance(usage, dict) else None


def error_type(status: int) -> str:
    """Anthropic error type for an HTTP status (503 is overloaded); other 4xx are invalid requests."""
    kind = _MORE_ERROR_TYPES.get(status) or anthropic.error_type(status)
    return "invalid_request_error" if kind == "api_error" and 400 <= status < 500 else kind


def error_body(status: int, message: str, kind: str | None = None) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind or error_type(status), "message": message}})


def error_message(obj: Any) -> str | None:
    """The message of an OpenAI (`{"error": {...}}`), Workers AI v4 (`{"errors": [...]}`) or vLLM error body."""
    if isinstance(obj, list):
        return error_message(obj[0]) if obj else None
    obj, errors = obj_of(obj), obj_of(obj).get("errors")
    candidates = (
        text_of(obj.get("error")) or text_of(obj_of(obj.get("error")).get("message")),
        "; ".join(m for m in (text_of(obj_of(e).get("message")) for e in errors) if m)
        if isinstance(errors, list)
        else "",
        text_of(obj.get("message")),
        text_of(obj.get("detail")),
    )
    return next((found for found in candidates if found), None)


def upstream_error_message(status: int, body: bytes) -> str:
    """The message of an upstream error body in any dialect, else its text, else the status."""
    try:
        found = error_message(orjson.loads(body))
    except orjson.JSONDecodeError:
        found = None
    text = found or body.decode("utf-8", "replace").strip()[:1000]
    return text or f"The upstream answered HTTP {status}"


def _stream_error_type(obj: JSON) -> str:
    """Anthropic error type of an in-stream error object: an HTTP-like code if any, else its type words."""
    inner = obj_of(obj.get("error"))
    for value in (inner.get("status"), inner.get("code"), obj.get("status"), obj.get("code")):
        status = as_int(value)
        if status is not None and 400 <= status < 600:
            return error_type(status)
    words = " ".join(str(v) for v in (inner.get("type"), inner.get("code"), obj.get("type")) if isinstance(v, str))
    return next((kind for word, kind in _ERROR_WORDS if word in words.lower()), "api_error")


def _is_error(obj: JSON) -> bool:
    errors = obj.get("errors")
    return bool(obj.get("error")) or obj.get("object") == "error" or (isinstance(errors, list) and bool(errors))


def _event(name: bytes, payload: JSON) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


@dataclass(slots=True)
class _Call:
    """One OpenAI tool call: its head, and the argument pieces already emitted into its Anthropic block."""

    id: str | None = None
    name: str | None = None
    args: list[str] = field(default_factory=list)
    ends_object: bool = False
    closed: bool = False

    def add(self, piece: str) -> None:
        self.args.append(piece)
        if piece.strip():
            self.ends_object = piece.rstrip().endswith("}")

    def complete(self) -> bool:
        """Whether the arguments emitted so far are a whole JSON value (parsed only when they end in `}`)."""
        if not self.ends_object:
            return False
        try:
            orjson.loads("".join(self.args))
        except orjson.JSONDecodeError:
            return False
        return True


class AnthropicStream:
    """Feed OpenAI SSE bytes, get Anthropic SSE bytes; one block is open at a time, indices increase.

    Deltas for the open block are emitted at once. A delta for another target waits in `_queue` until
    the open block may close: text and thinking blocks always may, a tool_use block once its arguments
    are a whole JSON value (so interleaved parallel calls never lose a piece). A `reasoning_signature` ends
    its thinking block (a signature without text still makes one); a redacted_thinking block in a delta's
    `thinking_blocks` is whole at once. The finish_reason closes everything; message_delta and message_stop
    follow once usage has arrived, or on `[DONE]` / `close()`.
    `[DONE]` without a finish_reason still ends cleanly; a body that ends with neither, a non-JSON event or
    an upstream error object ends with an Anthropic `error` event instead, and nothing follows it.
    """

    def __init__(self, model: str) -> None:
        self._model = model
        self._parser = SSEParser()
        self._out: list[bytes] = []
        self._started = False
        self._done = False
        self._msg_id = ""
        self._next = 0
        self._open: Target | None = None
        self._queue: list[tuple[Target, str, bool]] = []  # (target, piece, whether it is the signature)
        self._calls: dict[int, _Call] = {}
        self._keys: dict[int, int] = {}  # OpenAI tool-call index → our key
        self._last: int | None = None
        self._finish: str | None = None
        self._usage: JSON | None = None
        self.failure: str | None = None  # why the stream ended in an error event, for the log

    @property
    def usage(self) -> Usage | None:
        return gateway_usage(self._usage)

    def feed(self, chunk: bytes) -> bytes:
        self._consume(chunk)
        return self._flush()

    def close(self) -> bytes:
        """End of the upstream body: flush a last unterminated event, then finish or report the cut."""
        self._consume(b"\n\n")
        if not self._done:
            if self._finish is not None:
                self._terminate()
            else:
                self._fail("api_error", "The upstream stream ended before its finish_reason: the answer is incomplete")
        return self._flush()

    def error(self, status: int, message: str) -> bytes:
        if not self._done:
            self._fail(error_type(status), message)
        return self._flush()

    def _consume(self, chunk: bytes) -> None:
        for event in self._parser.feed(chunk):
            if self._done:
                return
            self._on_event(event.data, event.event)

    def _flush(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out

    def _on_event(self, data: str, name: str | None) -> None:
        if data.strip() == "[DONE]":
            self._terminate()
            return
        if not data.strip():
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._fail("api_error", f"The upstream sent an event that is not JSON: {data[:200]}")
            return
        if not isinstance(obj, dict):
            self._fail("api_error", f"The upstream sent an event that is not a JSON object: {data[:200]}")
        elif name == "error" or _is_error(obj):
            self._fail(_stream_error_type(obj), error_message(obj) or f"The upstream failed: {data[:500]}")
        else:
            self._on_chunk(obj)

    def _on_chunk(self, obj: JSON) -> None:
        self._start(obj)
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self._usage = usage  # Workers AI repeats usage on every chunk: the last one wins
        choices = obj.get("choices")
        if isinstance(choices, list):
            choice = next((c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0), None)
            if choice is not None:
                self._on_choice(choice)
        if self._finish is not None and isinstance(usage, dict) and not self._done:
            self._terminate()

    def _start(self, obj: JSON) -> None:
        if self._started:
            return
        self._started = True
        self._msg_id = "msg_" + (text_of(obj.get("id")) or "unknown")
        usage = anthropic_usage(obj.get("usage"))
        message: JSON = {"id": self._msg_id, "type": "message", "role": "assistant", "model": self._model,
                         "content": [], "stop_reason": None, "stop_sequence": None,
                         "usage": {**usage, "output_tokens": 0}}  # fmt: skip
        self._out.append(_event(b"message_start", {"type": "message_start", "message": message}))

    def _on_choice(self, choice: JSON) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            self._on_delta(delta)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish and not self._done:
            self._finish = finish
            self._pump(final=True)

    def _on_delta(self, delta: JSON) -> None:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            self._put("thinking", reasoning)
        signature = delta.get("reasoning_signature")
        if isinstance(signature, str) and signature:
            self._put("thinking", signature, seal=True)
        blocks = delta.get("thinking_blocks")  # in a stream: each block once, as it comes (thinking text does not)
        for block in blocks if isinstance(blocks, list) else []:
            if obj_of(block).get("type") == "redacted_thinking" and isinstance(block.get("data"), str):
                self._put("redacted", block["data"])
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                self._put("text", text)
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for position, call in enumerate(calls):
                if isinstance(call, dict) and not self._done:
                    self._on_tool_delta(call, position)

    def _on_tool_delta(self, delta: JSON, position: int) -> None:
        key = self._call_key(delta, position)
        call = self._calls[key]
        function = obj_of(delta.get("function"))
        call.id = call.id or text_of(delta.get("id")) or None
        call.name = call.name or text_of(function.get("name")) or None
        args = function.get("arguments")
        piece = args if isinstance(args, str) else orjson.dumps(args).decode() if isinstance(args, dict) else ""
        if call.closed:
            if piece.strip():
                self._fail("api_error", f"The upstream streamed arguments for tool call {key} after it ended")
            return
        self._put(key, piece)

    def _call_key(self, delta: JSON, position: int) -> int:
        """Our key (0, 1, ... by first appearance) for a tool-call delta.

        By OpenAI `index`, unless a new id arrives on a used index (servers that reuse index 0 per call);
        without `index`, by id, else the latest call (or a new one for a later position in the delta).
        """
        call_id, index = text_of(delta.get("id")), as_int(delta.get("index"))
        if index is not None:
            key = self._keys.get(index)
            if key is None or (call_id and self._calls[key].id not in (None, call_id)):
                key = self._keys[index] = self._new_call()
        elif call_id:
            key = next((k for k, c in self._calls.items() if c.id == call_id), None)
            key = self._new_call() if key is None else key
        else:
            key = self._last if self._last is not None and position == 0 else self._new_call()
        self._last = key
        return key

    def _new_call(self) -> int:
        key = len(self._calls)
        self._calls[key] = _Call()
        return key

    def _put(self, target: Target, piece: str, seal: bool = False) -> None:
        if target == self._open and seal:
            self._close(piece)
        elif target == self._open:
            self._delta(target, piece)
        else:
            self._queue.append((target, piece, seal))
        self._pump(final=False)

    def _pump(self, final: bool) -> None:
        """Open queued targets in arrival order while the open block may close; `final` forces all out.

        An opened block takes its queued pieces in order, up to its signature (a redacted block: none)."""
        while self._queue and (final or self._may_close()):
            target, first, _ = self._queue[0]
            if not final and isinstance(target, int) and self._calls[target].name is None:
                return  # a tool block needs its name to open
            self._close()
            self._open_block(target, first)
            rest = []
            for entry in self._queue:
                if self._open != target or entry[0] != target:
                    rest.append(entry)
                elif target == "redacted" or entry[2]:
                    self._close(entry[1] if entry[2] else "")
                else:
                    self._delta(target, entry[1])
            self._queue = rest
        if final:
            self._close()

    def _may_close(self) -> bool:
        return not isinstance(self._open, int) or self._calls[self._open].complete()

    def _open_block(self, target: Target, first: str) -> None:
        block: JSON
        if target == "thinking":
            block = {"type": "thinking", "thinking": "", "signature": ""}
        elif target == "redacted":
            block = {"type": "redacted_thinking", "data": first}
        elif target == "text":
            block = {"type": "text", "text": ""}
        else:
            call = self._calls[int(target)]
            call.id = call.id or f"toolu_{self._msg_id[4:]}_{target}"
            block = {"type": "tool_use", "id": call.id, "name": call.name or "", "input": {}}
        start = {"type": "content_block_start", "index": self._next, "content_block": block}
        self._out.append(_event(b"content_block_start", start))
        self._open = target

    def _delta(self, target: Target, piece: str) -> None:
        if not piece:
            return
        delta: JSON
        if target == "thinking":
            delta = {"type": "thinking_delta", "thinking": piece}
        elif target == "text":
            delta = {"type": "text_delta", "text": piece}
        else:
            self._calls[int(target)].add(piece)
            delta = {"type": "input_json_delta", "partial_json": piece}
        self._emit_delta(delta)

    def _emit_delta(self, delta: JSON) -> None:
        event = {"type": "content_block_delta", "index": self._next, "delta": delta}
        self._out.append(_event(b"content_block_delta", event))

    def _close(self, signature: str = "") -> None:
        if self._open is None:
            return
        if self._open == "thinking":  # unsigned reasoning (from upstreams other than Anthropic) is signed ""
            self._emit_delta({"type": "signature_delta", "signature": signature})
        elif isinstance(self._open, int):
            self._calls[self._open].closed = True
        self._out.append(_event(b"content_block_stop", {"type": "content_block_stop", "index": self._next}))
        self._open = None
        self._next += 1

    def _terminate(self) -> None:
        self._start({})
        self._pump(final=True)
        usage = anthropic_usage(self._usage)
        delta = {"stop_reason": stop_reason(self._finish, bool(self._calls)), "stop_sequence": None}
        self._out.append(_event(b"message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        self._out.append(_event(b"message_stop", {"type": "message_stop"}))
        self._done = True

    def _fail(self, kind: str, message: str) -> None:
        self.failure = message
        self._out.append(_event(b"error", {"type": "error", "error": {"type": kind, "message": message}}))
        self._done = True
