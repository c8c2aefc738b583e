"""Curl-style HTTP for the e2e tests: one request on its own connection, and the error-body shape checks.

`call` returns the status, headers and the whole (de-chunked) body exactly as the wire carried it, so
tests can compare bytes and assert exact error bodies in the Cloudflare and OpenAI dialects.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tests.support.stack import GatewayStack

USER = [{"role": "user", "content": "hello there"}]
OPENAI_KEY = {"authorization": "Bearer sk-test"}


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    elapsed: float

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def log_id(self) -> str:
        value = self.headers.get("cf-aig-log-id")
        assert value, f"no cf-aig-log-id on a {self.status} answer"
        return value


def call(
    method: str,
    url: str,
    body: bytes | Iterable[bytes] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One request; an iterable body is sent chunked (no Content-Length)."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    start = time.monotonic()
    try:
        chunked = body is not None and not isinstance(body, bytes)
        conn.request(method, target, body=body, headers=dict(headers or {}), encode_chunked=chunked)
        response = conn.getresponse()
        data = response.read()
        return Reply(response.status, response.headers, data, time.monotonic() - start)
    finally:
        conn.close()


def post_json(url: str, obj: Any, headers: Mapping[str, str] | None = None, **kw: Any) -> Reply:
    merged = {"content-type": "application/json", **OPENAI_KEY, **(headers or {})}
    return call("POST", url, json.dumps(obj).encode(), merged, **kw)


def chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": USER, **extra}


def assert_cf_error(reply: Reply, status: int, code: int) -> str:
    """The Cloudflare AiGatewayError envelope, exactly; returns the message."""
    assert reply.status == status, (reply.status, reply.body)
    assert reply.headers.get("content-type", "").startswith("application/json")
    body = reply.json()
    message = body["error"][0]["message"]
    assert isinstance(message, str) and message
    assert body == {
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
    return message


def assert_openai_error(reply: Reply, status: int, code: int | None, type_: str = "invalid_request_error") -> str:
    """OpenAI's `{"error": {message, type, param, code}}`, with the Cloudflare code kept inside."""
    assert reply.status == status, (reply.status, reply.body)
    assert reply.headers.get("content-type", "").startswith("application/json")
    body = reply.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert (error["type"], error["code"], error["param"]) == (type_, code, None)
    return str(error["message"])


def sent(stack: GatewayStack, provider: str, model: str) -> list[Any]:
    """What reached the fake `provider` for `model` (from the JSON body or a Workers AI run path)."""
    return [r for r in stack.ups.requests_for(provider) if r.model == model]


def wait_for(predicate: Any, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
