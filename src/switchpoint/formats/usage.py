"""Token usage read from any provider's answer: OpenAI `usage`, Workers AI `result.usage`, Anthropic's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from switchpoint.formats.sse import SSEParser


@dataclass(frozen=True, slots=True)
class Usage:
    tokens_in: int | None = None
    tokens_out: int | None = None

    def merge(self, later: Usage) -> Usage:
        """Anthropic streams give input tokens first and output tokens last; keep the newest of each."""
        return Usage(
            later.tokens_in if later.tokens_in is not None else self.tokens_in,
            later.tokens_out if later.tokens_out is not None else self.tokens_out,
        )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def usage_from_obj(obj: Any) -> Usage | None:
    """Find usage in a parsed answer or stream event; None when the object carries none."""
    if not isinstance(obj, dict):
        return None
    usage = obj.get("usage")
    if usage is None:
        inner = obj.get("result") or obj.get("message")
        usage = inner.get("usage") if isinstance(inner, dict) else None
    if not isinstance(usage, dict):
        return None
    tokens_in = _int(usage.get("prompt_tokens"))
    if tokens_in is None:
        tokens_in = _int(usage.get("input_tokens"))
        if tokens_in is not None:
            cache = (_int(usage.get("cache_read_input_tokens")) or 0) + (
                _int(usage.get("cache_creation_input_tokens")) or 0
            )
            tokens_in += cache
    tokens_out = _int(usage.get("completion_tokens"))
    if tokens_out is None:
        tokens_out = _int(usage.get("output_tokens"))
    if tokens_in is None and tokens_out is None:
        return None
    return Usage(tokens_in, tokens_out)


def usage_from_body(body: bytes) -> Usage | None:
    """Usage of a whole JSON answer; parses only when the bytes mention usage at all."""
    if b'"usage"' not in body:
        return None
    try:
        return usage_from_obj(orjson.loads(body))
    except orjson.JSONDecodeError:
        return None


def _event_around(body: bytes, pos: int) -> bytes:
    """The bytes of the SSE event that contains offset `pos`."""
    start = max(body.rfind(b"\n\n", 0, pos), body.rfind(b"\r\r", 0, pos))
    start = 0 if start < 0 else start + 2
    ends = [i for i in (body.find(b"\n\n", pos), body.find(b"\r\r", pos)) if i >= 0]
    return body[start : min(ends) if ends else len(body)]


def _event_usage(event: bytes) -> Usage | None:
    for parsed in SSEParser().feed(event + b"\n\n"):
        try:
            usage = usage_from_obj(orjson.loads(parsed.data))
        except orjson.JSONDecodeError:
            continue
        if usage is not None:
            return usage
    return None


def usage_from_sse(body: bytes) -> Usage | None:
    """Usage of a whole event stream, read once at its end instead of parsing every chunk on the way.

    Only the first and the last events that mention usage are parsed: Anthropic reports input tokens in
    `message_start` and output tokens in `message_delta`; OpenAI-format streams in their final chunk.
    """
    first = body.find(b'"usage"')
    if first < 0:
        return None
    last = body.rfind(b'"usage"')
    found = _event_usage(_event_around(body, first))
    if last != first:
        later = _event_usage(_event_around(body, last))
        if later is not None:
            found = later if found is None else found.merge(later)
    return found
