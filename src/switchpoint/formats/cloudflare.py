"""Cloudflare AI Gateway's error envelope, used for errors the gateway raises on passthrough routes."""

from __future__ import annotations

import orjson


def error_body(status: int, code: int | None, message: str) -> bytes:
    code = code if code is not None else status
    return orjson.dumps(
        {
            "success": False,
            "result": [],
            "messages": [],
            "error": [{"code": code, "message": message}],
            "name": "AiGatewayError",
            "httpCode": status,
            "internalCode": code,
            "message": message,
            "description": message,
        }
    )
