"""Anthropic dialect: error bodies and the `error` stream event."""

from __future__ import annotations

import orjson

STREAM_STOP = b"message_stop"

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    return _TYPE_BY_STATUS.get(status, "api_error")


def error_body(status: int, message: str, code: int | None = None) -> bytes:
    """Anthropic's error envelope; `code` is the Cloudflare code of an error the gateway raised itself
    (2003 rate limited, 2041 budget...), kept inside `error` as the OpenAI body keeps it (SDKs ignore it)."""
    error: dict[str, object] = {"type": error_type(status), "message": message}
    if code is not None:
        error["code"] = code
    return orjson.dumps({"type": "error", "error": error})


def stream_error_event(status: int, message: str, code: int | None = None) -> bytes:
    return b"event: error\ndata: " + error_body(status, message, code) + b"\n\n"


def stream_finished(tail: bytes) -> bool:
    return STREAM_STOP in tail
