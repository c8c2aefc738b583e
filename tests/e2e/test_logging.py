"""The log record each call leaves: its fields, payload collection, opting out, and failed calls."""

from __future__ import annotations

import json
import time

import openai

from tests.e2e.rawhttp import USER, post_json
from tests.support.stack import GatewayStack

CHAT = "openai/chat/completions"


def _absent(stack: GatewayStack, log_id: str, gateway: str = "default") -> bool:
    """True when `log_id` has no record, checked after a later logged call was written (FIFO writer)."""
    marker = post_json(stack.url("default", CHAT), {"model": "gpt-log-marker", "messages": USER})
    stack.log_record(marker.log_id)
    time.sleep(0.3)
    return stack.log_rows("id = ?", (log_id,)) == []


def test_record_of_a_non_stream_call(stack: GatewayStack) -> None:
    with openai.OpenAI(
        base_url=stack.url("default", "compat"),
        api_key="sk-test",
        max_retries=0,
        default_headers={"user-agent": "log-test/1.0"},
    ) as client:
        raw = client.chat.completions.with_raw_response.create(model="openai/gpt-log-plain", messages=USER)
    answer = raw.parse()
    log_id = raw.headers["cf-aig-log-id"]
    assert raw.headers["cf-aig-event-id"] == log_id
    assert raw.headers["cf-aig-request-id"] == log_id
    record = stack.log_record(log_id)
    assert {k: record[k] for k in ("gateway", "account", "provider", "model", "method", "surface")} == {
        "gateway": "default",
        "account": "acct",
        "provider": "openai",
        "model": "gpt-log-plain",
        "method": "POST",
        "surface": "compat",
    }
    assert record["path"] == "/v1/acct/default/compat/chat/completions"
    assert (record["status_code"], record["success"], record["stream"], record["cached"]) == (200, 1, 0, 0)
    assert (record["attempts"], record["error"]) == (1, None)
    assert record["step"] in (None, 0)
    assert (record["tokens_in"], record["tokens_out"]) == (answer.usage.prompt_tokens, answer.usage.completion_tokens)
    assert 0 < record["ttfb_ms"] <= record["duration_ms"] < 5000
    assert record["event_id"] == log_id
    assert record["metadata"] is None
    assert record["user_agent"] == "log-test/1.0"
    assert json.loads(record["request_body"])["messages"] == USER
    assert record["response_body"] == raw.content
    assert record["response_size"] == len(raw.content)
    assert record["request_size"] == len(record["request_body"])
    assert abs(record["created_at"] - time.time()) < 10


def test_record_of_a_stream_call_with_event_id_and_metadata(stack: GatewayStack) -> None:
    metadata = {"team": "search", "n": 3, "beta": True, "cf.user_id": "spoofed", "ratio": 0.5}
    headers = {"cf-aig-event-id": "my-evt", "cf-aig-metadata": json.dumps(metadata)}
    body = {"model": "gpt-log-stream", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    reply = post_json(stack.url("default", CHAT), body, headers)
    assert reply.status == 200
    assert reply.headers["cf-aig-event-id"] == "my-evt"
    assert reply.headers["cf-aig-log-id"] != "my-evt"
    record = stack.log_record(reply.log_id)
    assert (record["provider"], record["model"], record["surface"]) == ("openai", "gpt-log-stream", "passthrough")
    assert (record["status_code"], record["success"], record["stream"]) == (200, 1, 1)
    assert record["event_id"] == "my-evt"
    assert json.loads(record["metadata"]) == {"team": "search", "n": 3, "beta": True, "ratio": 0.5}
    final = json.loads(reply.body.split(b"\n\n")[-3].removeprefix(b"data: "))
    assert (record["tokens_in"], record["tokens_out"]) == (
        final["usage"]["prompt_tokens"],
        final["usage"]["completion_tokens"],
    )
    assert record["tokens_out"] > 0
    assert 0 < record["ttfb_ms"] <= record["duration_ms"]
    assert record["request_body"] == json.dumps(body).encode()
    assert record["response_body"] == reply.body
    assert stack.log_rows("event_id = ?", ("my-evt",))[0]["id"] == reply.log_id


def test_no_payload_keeps_everything_but_the_bodies(stack: GatewayStack) -> None:
    reply = post_json(
        stack.url("default", CHAT),
        {"model": "gpt-log-nopayload", "messages": USER},
        {"cf-aig-collect-log-payload": "false"},
    )
    assert reply.status == 200
    record = stack.log_record(reply.log_id)
    assert (record["request_body"], record["response_body"]) == (None, None)
    assert (record["model"], record["status_code"], record["success"]) == ("gpt-log-nopayload", 200, 1)
    assert record["tokens_in"] > 0 and record["tokens_out"] > 0
    assert record["response_size"] == len(reply.body) and record["request_size"] > 0


def test_collect_log_false_leaves_no_record(stack: GatewayStack) -> None:
    reply = post_json(
        stack.url("default", CHAT), {"model": "gpt-log-off", "messages": USER}, {"cf-aig-collect-log": "false"}
    )
    assert reply.status == 200
    assert _absent(stack, reply.log_id)


def test_quiet_gateway_logs_only_when_asked(stack: GatewayStack) -> None:
    silent = post_json(stack.url("quiet", CHAT), {"model": "gpt-log-quiet", "messages": USER})
    assert silent.status == 200
    asked = post_json(
        stack.url("quiet", CHAT), {"model": "gpt-log-quiet-asked", "messages": USER}, {"cf-aig-collect-log": "true"}
    )
    record = stack.log_record(asked.log_id)
    assert (record["gateway"], record["model"]) == ("quiet", "gpt-log-quiet-asked")
    assert _absent(stack, silent.log_id)


def test_upstream_failure_is_recorded_with_its_status(stack: GatewayStack) -> None:
    reply = post_json(stack.url("default", CHAT), {"model": "error-503-log", "messages": USER})
    assert reply.status == 503
    record = stack.log_record(reply.log_id)
    assert (record["status_code"], record["success"], record["model"], record["provider"]) == (
        503,
        0,
        "error-503-log",
        "openai",
    )
    assert record["response_body"] == reply.body
    assert (record["tokens_in"], record["tokens_out"]) == (None, None)


def test_invalid_provider_is_recorded_as_400(stack: GatewayStack) -> None:
    reply = post_json(
        stack.url("default", "bogus-provider/chat/completions"), {"model": "gpt-log-2008", "messages": USER}
    )
    assert reply.status == 400 and reply.json()["internalCode"] == 2008
    record = stack.log_record(reply.log_id)
    assert (record["status_code"], record["success"]) == (400, 0)
    assert "bogus-provider" in record["error"]


def test_gateway_error_on_compat_is_recorded(stack: GatewayStack) -> None:
    reply = post_json(
        stack.url("default", "compat/chat/completions"), {"model": "nope/gpt-log-compat", "messages": USER}
    )
    assert reply.status == 400
    record = stack.log_record(reply.log_id)
    assert (record["status_code"], record["surface"]) == (400, "compat")
    assert record["error"]


def test_unreachable_provider_is_recorded_as_502(stack: GatewayStack) -> None:
    reply = post_json(stack.url("default", "custom-dead/v1/chat/completions"), {"model": "dead-log", "messages": USER})
    record = stack.log_record(reply.log_id)
    assert (record["status_code"], record["success"], record["provider"]) == (502, 0, "custom-dead")
    assert record["error"]


def test_call_rejected_for_a_bad_header_is_still_logged(stack: GatewayStack) -> None:
    reply = post_json(
        stack.url("default", CHAT), {"model": "gpt-log-badhdr", "messages": USER}, {"cf-aig-max-attempts": "9"}
    )
    assert reply.status == 400
    log_id = reply.headers.get("cf-aig-log-id")
    assert log_id, "the 400 carries no cf-aig-log-id"
    record = stack.log_record(log_id, timeout=1.0)
    assert record["status_code"] == 400
