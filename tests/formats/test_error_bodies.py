"""Error bodies in each dialect (Cloudflare envelope, OpenAI, Anthropic) and the stream error events."""

from __future__ import annotations

import orjson
import pytest

from switchpoint.formats import anthropic, cloudflare, openai
from switchpoint.formats.sse import Event, SSEParser


def one_event(blob: bytes) -> Event:
    parser = SSEParser()
    events = parser.feed(blob)
    assert len(events) == 1 and not parser.pending, blob
    return events[0]


# -- Cloudflare --------------------------------------------------------------------------------------


def test_cloudflare_envelope_exact() -> None:
    assert orjson.loads(cloudflare.error_body(401, 2009, "Unauthorized")) == {
        "success": False,
        "result": [],
        "messages": [],
        "error": [{"code": 2009, "message": "Unauthorized"}],
        "name": "AiGatewayError",
        "httpCode": 401,
        "internalCode": 2009,
        "message": "Unauthorized",
        "description": "Unauthorized",
    }


def test_cloudflare_envelope_without_a_code_uses_the_status() -> None:
    assert orjson.loads(cloudflare.error_body(404, None, "Not found")) == {
        "success": False,
        "result": [],
        "messages": [],
        "error": [{"code": 404, "message": "Not found"}],
        "name": "AiGatewayError",
        "httpCode": 404,
        "internalCode": 404,
        "message": "Not found",
        "description": "Not found",
    }


def test_cloudflare_envelope_escapes_the_message() -> None:
    body = orjson.loads(cloudflare.error_body(400, 2040, "alias 'x\"y'\n"))
    assert body["error"] == [{"code": 2040, "message": "alias 'x\"y'\n"}]


# -- OpenAI ------------------------------------------------------------------------------------------


def test_openai_error_body_exact() -> None:
    assert orjson.loads(openai.error_body("Unauthorized", "authentication_error", 2009)) == {
        "error": {"message": "Unauthorized", "type": "authentication_error", "param": None, "code": 2009}
    }
    assert orjson.loads(openai.error_body("bad", "invalid_request_error", "model_not_found", "model")) == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": "model", "code": "model_not_found"}
    }
    assert orjson.loads(openai.error_body("x", "api_error", None)) == {
        "error": {"message": "x", "type": "api_error", "param": None, "code": None}
    }


def test_openai_error_obj_is_the_body_as_a_dict() -> None:
    assert openai.error_obj("m", "t", 1, "p") == orjson.loads(openai.error_body("m", "t", 1, "p"))


def test_openai_stream_error_event() -> None:
    blob = openai.stream_error_event("Provider stream ended before it was complete", "api_error", 2005)
    assert blob.startswith(b"data: ") and blob.endswith(b"\n\n")
    event = one_event(blob)
    assert event.event is None  # the OpenAI SDK reads `data:` only; an `error` key makes it raise
    assert orjson.loads(event.data) == {
        "error": {
            "message": "Provider stream ended before it was complete",
            "type": "api_error",
            "param": None,
            "code": 2005,
        }
    }


def test_openai_stream_error_event_with_newline_in_message_is_one_data_line() -> None:
    event = one_event(openai.stream_error_event("line1\nline2", "api_error", 2005))
    assert orjson.loads(event.data)["error"]["message"] == "line1\nline2"


def test_openai_stream_finished() -> None:
    assert openai.stream_finished(b'data: {"x":1}\n\ndata: [DONE]\n\n')
    assert not openai.stream_finished(b'data: {"x":1}\n\n')


# -- Anthropic ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (529, "overloaded_error"),
        (500, "api_error"),
        (502, "api_error"),
    ],
)
def test_anthropic_error_body_exact(status: int, kind: str) -> None:
    assert anthropic.error_type(status) == kind
    assert orjson.loads(anthropic.error_body(status, "went wrong")) == {
        "type": "error",
        "error": {"type": kind, "message": "went wrong"},
    }


def test_anthropic_stream_error_event() -> None:
    blob = anthropic.stream_error_event(502, "Provider connection was reset")
    assert blob.startswith(b"event: error\ndata: ") and blob.endswith(b"\n\n")
    event = one_event(blob)
    assert event.event == "error"
    assert orjson.loads(event.data) == {
        "type": "error",
        "error": {"type": "api_error", "message": "Provider connection was reset"},
    }


def test_anthropic_stream_error_event_for_overload() -> None:
    event = one_event(anthropic.stream_error_event(529, "Overloaded"))
    assert orjson.loads(event.data)["error"] == {"type": "overloaded_error", "message": "Overloaded"}


def test_anthropic_stream_finished() -> None:
    assert anthropic.stream_finished(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert not anthropic.stream_finished(b'event: message_delta\ndata: {"type":"message_delta"}\n\n')
