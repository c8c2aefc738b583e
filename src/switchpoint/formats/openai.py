"""OpenAI dialect: error bodies and the in-stream error event that ends a broken stream."""

from __future__ import annotations

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
