"""Passthrough `/{provider}/{rest}`: query, method, body and stream bytes reach the other side unchanged."""

from __future__ import annotations

import json
import re

import anthropic
from yarl import URL

from tests.e2e.rawhttp import OPENAI_KEY, USER, call, chat, post_json, sent
from tests.support.stack import GatewayStack

WAI_MODEL = "@cf/meta/llama-3.1-8b-instruct"
# Fields the fake OpenAI randomises per answer; everything else in a stream is deterministic.
_RANDOM = [
    (re.compile(rb'"id":( ?)"chatcmpl-[0-9a-f]+"'), rb'"id":\1"ID"'),
    (re.compile(rb'"created":( ?)\d+'), rb'"created":\g<1>0'),
    (re.compile(rb'"obfuscation":( ?)"[0-9a-f]*"'), rb'"obfuscation":\1""'),
]


def _normalised(stream: bytes) -> bytes:
    for pattern, replacement in _RANDOM:
        stream = pattern.sub(replacement, stream)
    return stream


def test_query_string_is_preserved(stack: GatewayStack) -> None:
    query = "api-version=2024-10-21&q=a%26b&x=1%202&flag"
    reply = post_json(stack.url("default", "openai/chat/completions?" + query), chat("gpt-pt-query"))
    assert reply.status == 200
    (recorded,) = sent(stack, "openai", "gpt-pt-query")
    assert recorded.path == "/v1/chat/completions"
    # the fake records aiohttp's decoded query string; `%26` must still be an escaped `&`
    assert recorded.query_string == URL("/?" + query).query_string
    assert dict(URL("/?" + recorded.query_string).query) == {
        "api-version": "2024-10-21",
        "q": "a&b",
        "x": "1 2",
        "flag": "",
    }


def test_get_models_reaches_get_v1_models(stack: GatewayStack) -> None:
    before = len(stack.ups.requests_for("openai"))
    reply = call("GET", stack.url("default", "openai/models?limit=3"), headers=OPENAI_KEY)
    assert reply.status == 200
    assert reply.json()["object"] == "list"
    recorded = stack.ups.requests_for("openai")[before:]
    assert [(r.method, r.path, r.query_string, r.body) for r in recorded] == [("GET", "/v1/models", "limit=3", b"")]


def test_other_methods_pass_through(stack: GatewayStack) -> None:
    before = len(stack.ups.requests_for("openai"))
    reply = call("DELETE", stack.url("default", "openai/v1/files/file-abc"), headers=OPENAI_KEY)
    assert reply.status == 404  # the fake has no files API: its own 404 comes back unchanged
    assert reply.json()["error"]["message"] == "Invalid URL (DELETE /v1/files/file-abc)"
    recorded = stack.ups.requests_for("openai")[before:]
    assert [(r.method, r.path) for r in recorded] == [("DELETE", "/v1/files/file-abc")]


def test_request_body_reaches_the_upstream_byte_for_byte(stack: GatewayStack) -> None:
    body = (
        b'{ "stream" :false ,\n\t"messages":[ {"content":"hi  \\u00e9 there","role":"user"} ],'
        b'   "temperature":1.50,"model" : "gpt-pt-bytes"  }'
    )
    reply = call(
        "POST",
        stack.url("default", "openai/chat/completions"),
        body,
        {"content-type": "application/json", **OPENAI_KEY},
    )
    assert reply.status == 200, reply.body
    (recorded,) = sent(stack, "openai", "gpt-pt-bytes")
    assert recorded.body == body
    assert recorded.headers["content-type"] == "application/json"
    assert recorded.headers["content-length"] == str(len(body))


def test_chunked_upload_reaches_the_upstream_whole(stack: GatewayStack) -> None:
    body = json.dumps(chat("gpt-pt-chunked-upload")).encode()
    pieces = iter([body[:10], body[10:30], body[30:]])
    headers = {"content-type": "application/json", **OPENAI_KEY}
    reply = call("POST", stack.url("default", "openai/chat/completions"), pieces, headers)
    assert reply.status == 200
    (recorded,) = sent(stack, "openai", "gpt-pt-chunked-upload")
    assert recorded.body == body
    assert recorded.headers["content-length"] == str(len(body))
    assert "transfer-encoding" not in recorded.headers


def test_response_body_and_headers_come_back_unchanged(stack: GatewayStack) -> None:
    reply = post_json(stack.url("default", "openai/chat/completions"), chat("gpt-pt-response"))
    direct = post_json(stack.ups.openai_base + "/chat/completions", chat("gpt-pt-response"))
    assert reply.status == direct.status == 200
    assert reply.headers["openai-version"] == "2020-10-01"
    assert reply.headers["x-request-id"].startswith("req_")
    answer = reply.json()
    assert answer["choices"][0]["message"]["content"] == "echo: hello there"
    assert _normalised(reply.body) == _normalised(direct.body)
    assert reply.headers["content-length"] == str(len(reply.body))


def test_sse_chunks_reach_the_client_byte_for_byte(stack: GatewayStack) -> None:
    body = chat("gpt-pt-sse", stream=True, stream_options={"include_usage": True})
    via_gateway = post_json(stack.url("default", "openai/chat/completions"), body)
    direct = post_json(stack.ups.openai_base + "/chat/completions", body)
    assert via_gateway.status == direct.status == 200
    assert via_gateway.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert via_gateway.body.endswith(b"data: [DONE]\n\n")
    assert _normalised(via_gateway.body) == _normalised(direct.body)
    assert via_gateway.body.count(b"data: ") == direct.body.count(b"data: ") > 5


def test_workers_ai_stream_is_identical_to_a_direct_call(stack: GatewayStack) -> None:
    """The legacy Workers AI stream has no ids or timestamps, so the bytes must match exactly."""
    body = {"messages": USER, "stream": True}
    via_gateway = post_json(stack.url("default", "workers-ai/" + WAI_MODEL), body)
    direct = post_json(stack.ups.workers_ai_url("acct") + "run/" + WAI_MODEL, body)
    assert via_gateway.status == direct.status == 200
    assert via_gateway.body == direct.body
    assert via_gateway.body.endswith(b"data: [DONE]\n\n")


def test_gateway_headers_and_token_never_reach_the_upstream(stack: GatewayStack) -> None:
    token_id, token = stack.create_token("secure")
    stack.wait_for_snapshot(lambda s: token_id in s.tokens)
    headers = {
        "cf-aig-authorization": f"Bearer {token}",
        "cf-aig-metadata": '{"team":"pt"}',
        "cf-aig-event-id": "evt-pt-strip",
        "cf-aig-collect-log-payload": "true",
        "cf-aig-max-attempts": "2",
        "cf-aig-skip-cache": "true",
        "x-custom-header": "kept",
    }
    reply = post_json(stack.url("secure", "openai/chat/completions"), chat("gpt-pt-strip"), headers)
    assert reply.status == 200, reply.body
    (recorded,) = sent(stack, "openai", "gpt-pt-strip")
    assert not [name for name in recorded.headers if name.lower().startswith("cf-aig-")]
    assert all(token not in value and token_id not in value for value in recorded.headers.values())
    assert recorded.headers["x-custom-header"] == "kept"
    assert recorded.api_key == "sk-test"


def test_workers_ai_model_paths_reach_run_with_the_urls_account(stack: GatewayStack) -> None:
    for account, rest in (("acct-wai-1", WAI_MODEL), ("acct-wai-2", "run/" + WAI_MODEL)):
        reply = post_json(stack.url("default", f"workers-ai/{rest}?x=1", account=account), {"prompt": "hi"})
        assert reply.status == 200, reply.body
        assert reply.json()["success"] is True
        recorded = stack.ups.requests_for("workers-ai")[-1]
        assert recorded.path == f"/client/v4/accounts/{account}/ai/run/{WAI_MODEL}"
        assert recorded.query_string == "x=1"
        record = stack.log_record(reply.log_id)
        assert (record["account"], record["provider"], record["model"]) == (account, "workers-ai", WAI_MODEL)


def _anthropic(stack: GatewayStack) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.url("default", "anthropic"), api_key="sk-ant-test", max_retries=0)


def test_anthropic_sdk_through_passthrough_records_usage(stack: GatewayStack) -> None:
    with _anthropic(stack) as client:
        raw = client.messages.with_raw_response.create(
            model="claude-pt-plain", max_tokens=64, messages=[{"role": "user", "content": "hello there"}]
        )
    message = raw.parse()
    assert message.content[0].type == "text" and message.content[0].text == "echo: hello there"
    (recorded,) = sent(stack, "anthropic", "claude-pt-plain")
    assert recorded.path == "/v1/messages"
    assert "sk-ant-test" in (recorded.headers.get("x-api-key"), recorded.headers.get("authorization", "")[7:])
    assert recorded.headers["anthropic-version"]
    record = stack.log_record(raw.headers["cf-aig-log-id"])
    assert (record["provider"], record["model"], record["status_code"], record["stream"]) == (
        "anthropic",
        "claude-pt-plain",
        200,
        0,
    )
    assert (record["tokens_in"], record["tokens_out"]) == (message.usage.input_tokens, message.usage.output_tokens)
    assert record["tokens_in"] > 0 and record["tokens_out"] > 0


def test_anthropic_sdk_stream_through_passthrough_records_usage(stack: GatewayStack) -> None:
    with _anthropic(stack) as client:
        with client.messages.stream(
            model="claude-pt-stream", max_tokens=64, messages=[{"role": "user", "content": "hello there"}]
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
            log_id = stream.response.headers["cf-aig-log-id"]
    assert text == "echo: hello there"
    record = stack.log_record(log_id)
    assert record["stream"] == 1 and record["success"] == 1
    assert (record["tokens_in"], record["tokens_out"]) == (final.usage.input_tokens, final.usage.output_tokens)
    assert record["tokens_in"] > 0 and record["tokens_out"] > 0
