"""Errors, curl-style: exact status and body in the Cloudflare envelope (passthrough) or OpenAI's (/compat)."""

from __future__ import annotations

import json

import anthropic
import pytest

from tests.e2e.rawhttp import OPENAI_KEY, assert_cf_error, assert_openai_error, call, chat, post_json, sent
from tests.support.stack import MAX_BODY, GatewayStack

JSON_HEADERS = {"content-type": "application/json", **OPENAI_KEY}


def test_unknown_gateway_is_400_2001(stack: GatewayStack) -> None:
    reply = post_json(stack.url("no-such-gateway", "openai/chat/completions"), chat("gpt-err-gw"))
    message = assert_cf_error(reply, 400, 2001)
    assert "no-such-gateway" in message
    assert sent(stack, "openai", "gpt-err-gw") == []


def test_unknown_gateway_on_compat_keeps_the_code_in_openai_dialect(stack: GatewayStack) -> None:
    reply = post_json(stack.url("no-such-gateway", "compat/chat/completions"), chat("openai/gpt-err-gw2"))
    assert_openai_error(reply, 400, 2001)


def test_pinned_gateway_rejects_other_accounts(stack: GatewayStack) -> None:
    wrong = post_json(stack.url("pinned", "openai/chat/completions"), chat("gpt-err-pinned"))
    assert_cf_error(wrong, 400, 2001)
    assert sent(stack, "openai", "gpt-err-pinned") == []
    right = post_json(stack.url("pinned", "openai/chat/completions", account="acct-pinned"), chat("gpt-err-pinned"))
    assert right.status == 200
    assert len(sent(stack, "openai", "gpt-err-pinned")) == 1


def test_unknown_provider_on_passthrough_is_400_2008(stack: GatewayStack) -> None:
    reply = post_json(stack.url("default", "no-such-provider/chat/completions"), chat("gpt-err-slug"))
    message = assert_cf_error(reply, 400, 2008)
    assert "no-such-provider" in message
    assert reply.headers["cf-aig-log-id"]


def test_unknown_custom_provider_is_400_2008(stack: GatewayStack) -> None:
    reply = post_json(stack.url("default", "custom-nope/v1/chat/completions"), chat("gpt-err-custom"))
    assert_cf_error(reply, 400, 2008)


def test_malformed_json_on_compat_is_400_openai(stack: GatewayStack) -> None:
    reply = call("POST", stack.url("default", "compat/chat/completions"), b'{"model": "openai/x", ', JSON_HEADERS)
    message = assert_openai_error(reply, 400, None)
    assert "JSON" in message


def test_json_array_on_compat_is_400_openai(stack: GatewayStack) -> None:
    reply = call("POST", stack.url("default", "compat/chat/completions"), b'[{"model": "openai/x"}]', JSON_HEADERS)
    message = assert_openai_error(reply, 400, None)
    assert "object" in message


@pytest.mark.parametrize("body", [{"messages": []}, {"model": "", "messages": []}, {"model": 5, "messages": []}])
def test_missing_model_on_compat_is_400_openai(stack: GatewayStack, body: dict[str, object]) -> None:
    reply = post_json(stack.url("default", "compat/chat/completions"), body)
    message = assert_openai_error(reply, 400, None)
    assert "model" in message


def _big(size: int) -> bytes:
    filler = "x" * (size - 100)
    return json.dumps({"model": "gpt-err-big", "messages": [{"role": "user", "content": filler}]}).encode()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("surface", ["openai/chat/completions", "compat/chat/completions"])
def test_body_over_the_limit_is_413(stack: GatewayStack, surface: str, chunked: bool) -> None:
    body = _big(MAX_BODY + 4096)
    payload = iter([body[i : i + 16384] for i in range(0, len(body), 16384)]) if chunked else body
    reply = call("POST", stack.url("default", surface), payload, JSON_HEADERS)
    if surface.startswith("compat"):
        assert "limit" in assert_openai_error(reply, 413, None)
    else:
        assert "limit" in assert_cf_error(reply, 413, 413)
    assert sent(stack, "openai", "gpt-err-big") == []


def test_body_just_under_the_limit_is_accepted(stack: GatewayStack) -> None:
    body = _big(MAX_BODY - 1024).replace(b"gpt-err-big", b"gpt-err-fits")
    reply = call("POST", stack.url("default", "openai/chat/completions"), body, JSON_HEADERS)
    assert reply.status == 200
    assert sent(stack, "openai", "gpt-err-fits")[0].body == body


@pytest.mark.parametrize("path", ["/nothing/here", "/v1/acct", "/v2/acct/default/openai/chat/completions", "/"])
def test_unknown_path_outside_v1_is_404_json(stack: GatewayStack, path: str) -> None:
    reply = call("GET", stack.origin + path)
    assert_cf_error(reply, 404, 404)


def test_unknown_compat_path_is_404_openai(stack: GatewayStack) -> None:
    reply = post_json(stack.url("default", "compat/completions"), chat("openai/gpt-err-404"))
    message = assert_openai_error(reply, 404, None)
    assert "completions" in message


def test_get_on_compat_chat_is_405_openai(stack: GatewayStack) -> None:
    reply = call("GET", stack.url("default", "compat/chat/completions"), headers=OPENAI_KEY)
    message = assert_openai_error(reply, 405, None)
    assert "POST" in message


@pytest.mark.parametrize(
    "value",
    ["not json", '{"a": {"b": 1}}', '{"a": [1]}', '["a"]', json.dumps({f"k{i}": i for i in range(6)})],
    ids=["not-json", "nested-object", "nested-list", "array", "six-keys"],
)
def test_bad_metadata_header_is_400(stack: GatewayStack, value: str) -> None:
    reply = post_json(stack.url("default", "openai/chat/completions"), chat("gpt-err-meta"), {"cf-aig-metadata": value})
    assert "cf-aig-metadata" in assert_cf_error(reply, 400, 400)
    assert sent(stack, "openai", "gpt-err-meta") == []


def test_five_metadata_keys_are_fine(stack: GatewayStack) -> None:
    value = json.dumps({f"k{i}": i for i in range(5)})
    reply = post_json(
        stack.url("default", "openai/chat/completions"), chat("gpt-err-meta5"), {"cf-aig-metadata": value}
    )
    assert reply.status == 200


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("cf-aig-max-attempts", "0"),
        ("cf-aig-max-attempts", "6"),
        ("cf-aig-max-attempts", "x"),
        ("cf-aig-retry-delay", "6000"),
        ("cf-aig-retry-delay", "-1"),
        ("cf-aig-backoff", "wild"),
        ("cf-aig-request-timeout", "0"),
        ("cf-aig-collect-log", "yes"),
        ("cf-aig-collect-log-payload", "0"),
        ("cf-aig-event-id", "e" * 257),
    ],
)
def test_bad_retry_headers_are_400_naming_the_header(stack: GatewayStack, name: str, value: str) -> None:
    model = f"gpt-err-hdr-{name}-{value[:8]}"
    reply = post_json(stack.url("default", "openai/chat/completions"), chat(model), {name: value})
    assert name in assert_cf_error(reply, 400, 400)
    assert sent(stack, "openai", model) == []
    compat = post_json(stack.url("default", "compat/chat/completions"), chat("openai/" + model), {name: value})
    assert name in assert_openai_error(compat, 400, None)


@pytest.mark.parametrize("status", [400, 404, 503])
def test_upstream_errors_pass_through_unchanged_on_passthrough(stack: GatewayStack, status: int) -> None:
    model = f"error-{status}-pt"
    reply = post_json(stack.url("default", "openai/chat/completions"), chat(model))
    direct = post_json(stack.ups.openai_base + "/chat/completions", chat(model))
    assert reply.status == direct.status == status
    assert reply.body == direct.body
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["openai-version"] == "2020-10-01"
    assert len(sent(stack, "openai", model)) == 2  # one through the gateway, one direct: no retry


@pytest.mark.parametrize("status", [400, 503])
def test_upstream_errors_pass_through_unchanged_on_compat(stack: GatewayStack, status: int) -> None:
    model = f"error-{status}-compat"
    reply = post_json(stack.url("default", "compat/chat/completions"), chat("openai/" + model))
    direct = post_json(stack.ups.openai_base + "/chat/completions", chat(model))
    assert reply.status == direct.status == status
    assert reply.body == direct.body


def test_workers_ai_upstream_error_keeps_its_envelope(stack: GatewayStack) -> None:
    reply = post_json(stack.url("default", "workers-ai/@cf/meta/error-429-wai"), {"prompt": "hi"})
    assert reply.status == 429
    body = reply.json()
    assert body["success"] is False and body["errors"][0]["code"] == 3040  # Workers AI's own, not ours


def test_connection_refused_is_502_2005_on_passthrough(stack: GatewayStack) -> None:
    reply = post_json(stack.url("default", "custom-dead/v1/chat/completions"), chat("dead-model"))
    assert_cf_error(reply, 502, 2005)
    assert reply.headers["cf-aig-log-id"]


def test_connection_refused_is_502_2005_on_compat(stack: GatewayStack) -> None:
    reply = post_json(stack.url("default", "compat/chat/completions"), chat("custom-dead/dead-model"))
    assert_openai_error(reply, 502, 2005, "api_error")


def _anthropic_client(stack: GatewayStack, gateway: str, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=stack.url(gateway, "compat"), api_key="sk-ant-err", max_retries=0, default_headers=headers
    )


def test_gateway_errors_on_the_anthropic_ingress_keep_the_code_in_anthropic_dialect(stack: GatewayStack) -> None:
    """`/compat/v1/messages` answers the gateway's own errors in Anthropic's envelope, the SDK's error class
    for the status, and the Cloudflare code inside `error`, as the OpenAI body on /compat carries it."""
    ask = {"model": "openai/gpt-err-anth", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(anthropic.BadRequestError) as unknown:
        _anthropic_client(stack, "no-such-gateway").messages.create(**ask)
    assert unknown.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "Gateway 'no-such-gateway' is not configured",
            "code": 2001,
        },
    }
    limited = _anthropic_client(stack, "per_user", **{"cf-aig-metadata": json.dumps({"user": "anthropic-ingress"})})
    for _ in range(2):
        limited.messages.create(**ask)
    with pytest.raises(anthropic.RateLimitError) as refused:
        limited.messages.create(**ask)
    assert refused.value.body["type"] == "error"
    assert refused.value.body["error"]["type"] == "rate_limit_error"
    assert refused.value.body["error"]["code"] == 2003
    assert refused.value.response.headers["retry-after"]
