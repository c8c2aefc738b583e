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


class StreamUsageTap:
    """Reads usage off a stream on the side: every chunk is framed, only usage-bearing events are kept.

    The first and the last usage-bearing events are parsed once, at the end (Anthropic reports input
    tokens in `message_start` and output tokens in `message_delta`; OpenAI in the final chunk).
    """

    __slots__ = ("_parser", "_first", "_last")

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._first: str | None = None
        self._last: str | None = None

    def feed(self, chunk: bytes) -> None:
        for event in self._parser.feed(chunk):
            if '"usage"' in event.data:
                if self._first is None:
                    self._first = event.data
                else:
                    self._last = event.data

    def usage(self) -> Usage | None:
        found: Usage | None = None
        for data in (self._first, self._last):
            if data is None:
                continue
            try:
                usage = usage_from_obj(orjson.loads(data))
            except orjson.JSONDecodeError:
                continue
            if usage is not None:
                found = usage if found is None else found.merge(usage)
        return found
