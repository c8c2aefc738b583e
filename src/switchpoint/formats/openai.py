"""OpenAI dialect: error bodies and the in-stream error event that ends a broken stream."""

from __future__ import annotations

import re

import orjson

STREAM_DONE = b"data: [DONE]"


def error_obj(message: str, type_: str, code: int | str | None, param: str | None = None) -> dict[str, object]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_body(message: str, type_: str, code: int | str | None, param: str | None = None) -> bytes:
    return orjson.dumps(error_obj(message, type_, code, param))


def stream_error_event(message: str, type_: str, code: int | str | None) -> bytes:
    """An SSE event the OpenAI SDK raises as an APIError instead of treating the stream as complete."""
    return b"data: " + orjson.dumps(error_obj(message, type_, code)) + b"\n\n"


def stream_finished(tail: bytes) -> bool:
    return STREAM_DONE in tail


_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def _usage_only(event: bytes) -> bool:
    return b'"usage"' in event and (b'"choices":[]' in event or b'"choices": []' in event)


class UsageChunkStripper:
    """Drops the usage-only chunk (`choices: []`) that the gateway asked for on the client's behalf, and the
    `"usage":null` OpenAI adds to every other chunk once usage is asked for.

    Every other byte passes through unchanged; only the tail of an incomplete event is held back.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> bytes:
        buf = self._buf + chunk if self._buf else chunk
        out: list[bytes] = []
        start = 0
        for match in _EVENT_END.finditer(buf):
            event = buf[start : match.end()]
            if not _usage_only(event):
                out.append(_without_null_usage(event))
            start = match.end()
        self._buf = buf[start:]
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self._buf = self._buf, b""
        return b"" if _usage_only(rest) else _without_null_usage(rest)


_NULL_USAGE = b'"usage":null'


def _without_null_usage(event: bytes) -> bytes:
    """The event without its (compact, top-level) `"usage":null` member, as a chunk sent without usage is."""
    if _NULL_USAGE not in event:
        return event
    if b',"usage":null' in event:
        return event.replace(b',"usage":null', b"", 1)
    return event.replace(b'"usage":null,', b"", 1)
