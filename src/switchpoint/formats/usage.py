"""Token usage read from any provider's answer: OpenAI `usage`, Workers AI `result.usage`, Anthropic's, Bedrock's.

Every shape is normalised to one meaning, so cost is never double counted: `tokens_in` is every prompt token
(uncached, cache reads and cache writes alike) and `tokens_out` every generated token (reasoning included); the
cache and reasoning counts are parts of those totals, never additions to them.

- OpenAI chat (also Workers AI, Moonshot, DeepSeek, xAI): `prompt_tokens` already holds cached tokens
  (`prompt_tokens_details.cached_tokens`, DeepSeek `prompt_cache_hit_tokens`, Moonshot `cached_tokens`;
  writes in `prompt_tokens_details.cache_write_tokens`); `completion_tokens_details.reasoning_tokens` is inside
  `completion_tokens`, and is added to it only when `total_tokens` shows it was reported beside it (xAI).
- OpenAI Responses: `input_tokens` holds `input_tokens_details.cached_tokens`; `output_tokens` holds
  `output_tokens_details.reasoning_tokens`.
- Anthropic: `cache_read_input_tokens` and `cache_creation_input_tokens` are NOT in `input_tokens`, so
  `tokens_in` is the sum of the three. Thinking tokens are inside `output_tokens` and not reported apart.
- Bedrock Converse: `inputTokens`, `outputTokens`, `cacheReadInputTokens`, `cacheWriteInputTokens`; the cache
  counts are added to `inputTokens` unless `totalTokens` equals input + output (then they were inside).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from switchpoint.formats.sse import SSEParser

_INNER_KEYS = ("result", "message", "response")  # Workers AI envelope, Anthropic message_start, Responses events


@dataclass(frozen=True, slots=True)
class Usage:
    """One call's token counts. The detail fields are parts of `tokens_in`/`tokens_out` (see the module docstring).

    The detail fields are left out of `==` so that comparisons of the two totals, which callers and tests rely
    on, keep their meaning; compare them explicitly when they matter.
    """

    tokens_in: int | None = None
    tokens_out: int | None = None
    cache_read_tokens: int | None = field(default=None, compare=False)
    cache_write_tokens: int | None = field(default=None, compare=False)
    reasoning_tokens: int | None = field(default=None, compare=False)

    def merge(self, later: Usage) -> Usage:
        """Anthropic streams give input tokens first and output tokens last; keep the newest of each.

        A later event that repeats `input_tokens` without its cache parts (Anthropic's `message_delta` with null
        cache fields) must not shrink the prompt total the earlier event gave with them.
        """
        tokens_in = _newest(later.tokens_in, self.tokens_in)
        if (
            later.tokens_in is not None
            and self.tokens_in is not None
            and later.cache_read_tokens is None
            and later.cache_write_tokens is None
            and (self.cache_read_tokens or self.cache_write_tokens)
        ):
            tokens_in = max(self.tokens_in, later.tokens_in)
        return Usage(
            tokens_in,
            _newest(later.tokens_out, self.tokens_out),
            _newest(later.cache_read_tokens, self.cache_read_tokens),
            _newest(later.cache_write_tokens, self.cache_write_tokens),
            _newest(later.reasoning_tokens, self.reasoning_tokens),
        )


def _newest(later: int | None, earlier: int | None) -> int | None:
    return later if later is not None else earlier


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _detail(usage: dict[str, Any], section: str, key: str) -> int | None:
    inner = usage.get(section)
    return _int(inner.get(key)) if isinstance(inner, dict) else None


def _first(*values: int | None) -> int | None:
    return next((v for v in values if v is not None), None)


def _find_usage(obj: dict[str, Any]) -> Any:
    usage = obj.get("usage")
    if usage is None:
        for key in _INNER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, dict) and inner.get("usage") is not None:
                return inner["usage"]
    return usage


def _openai_usage(usage: dict[str, Any]) -> Usage:
    """Chat-completions shape: cached and reasoning tokens are already inside prompt/completion tokens."""
    tokens_in = _int(usage.get("prompt_tokens"))
    tokens_out = _int(usage.get("completion_tokens"))
    reasoning = _first(
        _detail(usage, "completion_tokens_details", "reasoning_tokens"), _int(usage.get("reasoning_tokens"))
    )
    total = _int(usage.get("total_tokens"))
    if reasoning and tokens_in is not None and tokens_out is not None and total == tokens_in + tokens_out + reasoning:
        tokens_out += reasoning  # xAI-style: reasoning reported beside completion_tokens, not inside them
    cache_read = _first(
        _detail(usage, "prompt_tokens_details", "cached_tokens"),
        _int(usage.get("prompt_cache_hit_tokens")),  # DeepSeek
        _int(usage.get("cached_tokens")),  # Moonshot
    )
    cache_write = _detail(usage, "prompt_tokens_details", "cache_write_tokens")
    return Usage(tokens_in, tokens_out, cache_read, cache_write, reasoning)


def _input_tokens_usage(usage: dict[str, Any]) -> Usage:
    """Anthropic (cache tokens beside `input_tokens`) or OpenAI Responses (cached inside, in `*_details`)."""
    tokens_in = _int(usage.get("input_tokens"))
    tokens_out = _int(usage.get("output_tokens"))
    if "input_tokens_details" in usage or "output_tokens_details" in usage:
        cached = _detail(usage, "input_tokens_details", "cached_tokens")
        return Usage(tokens_in, tokens_out, cached, None, _detail(usage, "output_tokens_details", "reasoning_tokens"))
    cache_read = _int(usage.get("cache_read_input_tokens"))
    cache_write = _int(usage.get("cache_creation_input_tokens"))
    if tokens_in is not None:
        tokens_in += (cache_read or 0) + (cache_write or 0)
    return Usage(tokens_in, tokens_out, cache_read, cache_write)


def _bedrock_usage(usage: dict[str, Any]) -> Usage:
    """Converse camelCase; cache tokens are beside `inputTokens` unless `totalTokens` says they are inside."""
    tokens_in = _int(usage.get("inputTokens"))
    tokens_out = _int(usage.get("outputTokens"))
    cache_read = _int(usage.get("cacheReadInputTokens"))
    cache_write = _int(usage.get("cacheWriteInputTokens"))
    total = _int(usage.get("totalTokens"))
    included = total is not None and total == (tokens_in or 0) + (tokens_out or 0)
    if tokens_in is not None and not included:
        tokens_in += (cache_read or 0) + (cache_write or 0)
    return Usage(tokens_in, tokens_out, cache_read, cache_write)


def usage_from_obj(obj: Any) -> Usage | None:
    """Find usage in a parsed answer or stream event; None when the object carries none."""
    if not isinstance(obj, dict):
        return None
    usage = _find_usage(obj)
    if not isinstance(usage, dict):
        return None
    if _int(usage.get("prompt_tokens")) is not None or _int(usage.get("completion_tokens")) is not None:
        found = _openai_usage(usage)
    elif _int(usage.get("inputTokens")) is not None or _int(usage.get("outputTokens")) is not None:
        found = _bedrock_usage(usage)
    else:
        found = _input_tokens_usage(usage)
    if found.tokens_in is None and found.tokens_out is None:
        return None
    return found


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
    if b"\r" in body:  # one framing for the boundary search below
        body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        first = body.find(b'"usage"')
    last = body.rfind(b'"usage"')
    found = _event_usage(_event_around(body, first))
    if last != first:
        later = _event_usage(_event_around(body, last))
        if later is not None:
            found = later if found is None else found.merge(later)
    return found
