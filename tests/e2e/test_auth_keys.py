"""Gateway tokens on an authenticated gateway, and stored provider keys (BYOK) injected for the caller."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.e2e.rawhttp import USER, assert_cf_error, assert_openai_error, call, chat, post_json, sent
from tests.support.stack import GatewayStack

CHAT = "openai/chat/completions"
STORED = "sk-stored-123"
TEAM = "sk-team-456"
ANT_STORED = "sk-ant-stored-789"
SECURE_STORED = "sk-secure-stored-000"


@pytest.fixture(scope="module")
def secure_token(stack: GatewayStack) -> tuple[str, str]:
    token_id, token = stack.create_token("secure")
    took = stack.wait_for_snapshot(lambda s: token_id in s.tokens)
    assert took < 1.0
    return token_id, token


@pytest.fixture(scope="module")
def stored_keys(stack: GatewayStack) -> Iterator[None]:
    stack.set_key("openai", STORED)
    stack.set_key("openai", TEAM, alias="team")
    stack.set_key("anthropic", ANT_STORED)
    stack.set_key("openai", SECURE_STORED, gateway="secure")
    wanted = {
        ("default", "openai", "default"),
        ("default", "openai", "team"),
        ("default", "anthropic", "default"),
        ("secure", "openai", "default"),
    }
    assert stack.wait_for_snapshot(lambda s: wanted <= set(s.keys)) < 1.0
    yield


# -- gateway tokens ----------------------------------------------------------------------------------


def test_missing_token_is_401_2009_envelope_on_passthrough(stack: GatewayStack) -> None:
    reply = post_json(stack.url("secure", CHAT), chat("gpt-auth-none"))
    assert assert_cf_error(reply, 401, 2009) == "Unauthorized"
    assert "cf-aig-log-id" not in reply.headers
    assert sent(stack, "openai", "gpt-auth-none") == []


def test_missing_token_is_401_openai_body_on_compat(stack: GatewayStack) -> None:
    reply = post_json(stack.url("secure", "compat/chat/completions"), chat("openai/gpt-auth-none-compat"))
    assert_openai_error(reply, 401, 2009, "authentication_error")
    with openai.OpenAI(base_url=stack.url("secure", "compat"), api_key="sk-test", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            client.chat.completions.create(model="openai/gpt-auth-none-sdk", messages=USER)
    assert caught.value.status_code == 401


def test_valid_token_in_cf_aig_authorization_is_accepted(stack: GatewayStack, secure_token: tuple[str, str]) -> None:
    token_id, token = secure_token
    reply = post_json(stack.url("secure", CHAT), chat("gpt-auth-ok"), {"cf-aig-authorization": f"Bearer {token}"})
    assert reply.status == 200, reply.body
    (recorded,) = sent(stack, "openai", "gpt-auth-ok")
    assert recorded.api_key == "sk-test"
    assert all(token not in v for v in recorded.headers.values())
    assert stack.log_record(reply.log_id)["gateway"] == "secure"


def test_token_as_the_sdk_api_key_is_accepted_and_stripped(
    stack: GatewayStack, secure_token: tuple[str, str], stored_keys: None
) -> None:
    _, token = secure_token
    with openai.OpenAI(base_url=stack.url("secure", "compat"), api_key=token, max_retries=0) as client:
        answer = client.chat.completions.create(model="openai/gpt-auth-slot", messages=USER)
    assert answer.choices[0].message.content == "echo: hello there"
    (recorded,) = sent(stack, "openai", "gpt-auth-slot")
    assert all(token not in v for v in recorded.headers.values())
    assert recorded.api_key == SECURE_STORED  # the slot was emptied, so the stored key filled it


def test_token_in_x_api_key_slot_is_accepted_and_stripped(
    stack: GatewayStack, secure_token: tuple[str, str], stored_keys: None
) -> None:
    _, token = secure_token
    reply = post_json(stack.url("secure", CHAT), chat("gpt-auth-xapikey"), {"x-api-key": token})
    assert reply.status == 200
    (recorded,) = sent(stack, "openai", "gpt-auth-xapikey")
    assert "x-api-key" not in recorded.headers
    assert recorded.api_key == "sk-test"


def test_token_of_another_gateway_is_401(stack: GatewayStack) -> None:
    token_id, token = stack.create_token("default")
    stack.wait_for_snapshot(lambda s: token_id in s.tokens)
    reply = post_json(stack.url("secure", CHAT), chat("gpt-auth-other"), {"cf-aig-authorization": f"Bearer {token}"})
    assert_cf_error(reply, 401, 2009)


def test_revoked_token_stops_working_within_a_second(stack: GatewayStack) -> None:
    token_id, token = stack.create_token("secure")
    stack.wait_for_snapshot(lambda s: token_id in s.tokens)
    headers = {"cf-aig-authorization": f"Bearer {token}"}
    assert post_json(stack.url("secure", CHAT), chat("gpt-auth-revoke"), headers).status == 200
    stack.revoke_token(token_id)
    assert stack.wait_for_snapshot(lambda s: token_id not in s.tokens) < 1.0
    assert_cf_error(post_json(stack.url("secure", CHAT), chat("gpt-auth-revoke"), headers), 401, 2009)
    assert len(sent(stack, "openai", "gpt-auth-revoke")) == 1


@pytest.mark.parametrize(
    "value",
    ["Bearer swp_garbage", "Bearer swp_0123456789ab_wrongsecret", "Bearer not-a-token", "swp_", "Bearer "],
)
def test_malformed_or_wrong_token_is_401(stack: GatewayStack, value: str) -> None:
    reply = post_json(stack.url("secure", CHAT), chat("gpt-auth-bad"), {"cf-aig-authorization": value})
    assert_cf_error(reply, 401, 2009)


def test_wrong_secret_for_a_real_token_id_is_401(stack: GatewayStack, secure_token: tuple[str, str]) -> None:
    token_id, _ = secure_token
    forged = f"swp_{token_id}_{'A' * 32}"
    reply = post_json(stack.url("secure", CHAT), chat("gpt-auth-forged"), {"cf-aig-authorization": f"Bearer {forged}"})
    assert_cf_error(reply, 401, 2009)


def test_unauthenticated_calls_leave_no_log_record(stack: GatewayStack) -> None:
    for model in ("gpt-auth-nolog-1", "gpt-auth-nolog-2"):
        post_json(stack.url("secure", CHAT), chat(model), {"cf-aig-authorization": "Bearer swp_garbage"})
    # a later logged call on the same gateway flushes behind them: if they had records, they are written
    marker = post_json(stack.url("default", CHAT), chat("gpt-auth-nolog-marker"))
    stack.log_record(marker.log_id)
    time.sleep(0.3)
    assert stack.log_rows("gateway = ? AND status_code = 401", ("secure",)) == []
    assert stack.log_rows("model LIKE ?", ("gpt-auth-nolog-_",)) == []


def test_authentication_off_ignores_tokens(stack: GatewayStack) -> None:
    reply = post_json(stack.url("default", CHAT), chat("gpt-auth-off"), {"cf-aig-authorization": "Bearer swp_garbage"})
    assert reply.status == 200


# -- stored provider keys (BYOK) ----------------------------------------------------------------------


def _no_key(headers: dict[str, str] | None = None) -> dict[str, str]:
    return {"content-type": "application/json", **(headers or {})}


def test_stored_key_is_injected_when_the_client_sends_none(stack: GatewayStack, stored_keys: None) -> None:
    body = json.dumps(chat("gpt-byok-stored")).encode()
    reply = call("POST", stack.url("default", CHAT), body, _no_key())
    assert reply.status == 200, reply.body
    (recorded,) = sent(stack, "openai", "gpt-byok-stored")
    assert recorded.headers["authorization"] == f"Bearer {STORED}"


def test_stored_key_is_injected_on_compat(stack: GatewayStack, stored_keys: None) -> None:
    body = json.dumps(chat("openai/gpt-byok-compat")).encode()
    reply = call("POST", stack.url("default", "compat/chat/completions"), body, _no_key())
    assert reply.status == 200, reply.body
    assert sent(stack, "openai", "gpt-byok-compat")[0].api_key == STORED


def test_stored_keys_belong_to_their_gateway(stack: GatewayStack, stored_keys: None) -> None:
    body = json.dumps(chat("gpt-byok-other-gateway")).encode()
    reply = call("POST", stack.url("retrying", CHAT), body, _no_key())
    assert reply.status == 401  # the fake's own 401: no key of gateway 'default' was lent to 'retrying'
    assert "authorization" not in sent(stack, "openai", "gpt-byok-other-gateway")[0].headers


def test_stored_key_is_injected_into_universal_steps(stack: GatewayStack, stored_keys: None) -> None:
    steps = [{"provider": "openai", "endpoint": "chat/completions", "query": chat("gpt-byok-universal")}]
    reply = call("POST", stack.url("default"), json.dumps(steps).encode(), _no_key())
    assert reply.status == 200
    assert sent(stack, "openai", "gpt-byok-universal")[0].api_key == STORED


def test_client_key_wins_over_the_stored_one(stack: GatewayStack, stored_keys: None) -> None:
    reply = post_json(stack.url("default", CHAT), chat("gpt-byok-client"), {"authorization": "Bearer sk-client-1"})
    assert reply.status == 200
    (recorded,) = sent(stack, "openai", "gpt-byok-client")
    assert recorded.headers.getall("authorization") == ["Bearer sk-client-1"]


def test_alias_header_picks_that_key(stack: GatewayStack, stored_keys: None) -> None:
    body = json.dumps(chat("gpt-byok-alias")).encode()
    reply = call("POST", stack.url("default", CHAT), body, _no_key({"cf-aig-byok-alias": "team"}))
    assert reply.status == 200
    assert sent(stack, "openai", "gpt-byok-alias")[0].api_key == TEAM


def test_unknown_alias_is_400_2040_naming_the_provider(stack: GatewayStack, stored_keys: None) -> None:
    body = json.dumps(chat("gpt-byok-unknown")).encode()
    reply = call("POST", stack.url("default", CHAT), body, _no_key({"cf-aig-byok-alias": "nope"}))
    message = assert_cf_error(reply, 400, 2040)
    assert "'openai'" in message and "'nope'" in message and "'team'" in message
    assert STORED not in reply.body.decode() and TEAM not in reply.body.decode()
    assert sent(stack, "openai", "gpt-byok-unknown") == []
    compat = call(
        "POST",
        stack.url("default", "compat/chat/completions"),
        json.dumps(chat("openai/gpt-byok-unknown")).encode(),
        _no_key({"cf-aig-byok-alias": "nope"}),
    )
    assert "'openai'" in assert_openai_error(compat, 400, 2040)
    assert stack.log_record(reply.log_id)["status_code"] == 400


def test_anthropic_stored_key_goes_in_x_api_key(stack: GatewayStack, stored_keys: None) -> None:
    body = {"model": "claude-byok-stored", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}
    reply = call(
        "POST",
        stack.url("default", "anthropic/v1/messages"),
        json.dumps(body).encode(),
        _no_key({"anthropic-version": "2023-06-01"}),
    )
    assert reply.status == 200, reply.body
    (recorded,) = sent(stack, "anthropic", "claude-byok-stored")
    assert recorded.headers["x-api-key"] == ANT_STORED
    assert "authorization" not in recorded.headers


def test_anthropic_client_x_api_key_wins_over_the_stored_one(stack: GatewayStack, stored_keys: None) -> None:
    body = {"model": "claude-byok-client-x", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}
    headers = _no_key({"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-client-x"})
    reply = call("POST", stack.url("default", "anthropic/v1/messages"), json.dumps(body).encode(), headers)
    assert reply.status == 200
    (recorded,) = sent(stack, "anthropic", "claude-byok-client-x")
    assert recorded.headers.getall("x-api-key") == ["sk-ant-client-x"]


def test_anthropic_sdk_key_wins_over_the_stored_one(stack: GatewayStack, stored_keys: None) -> None:
    with anthropic.Anthropic(
        base_url=stack.url("default", "anthropic"), api_key="sk-ant-client", max_retries=0
    ) as client:
        client.messages.create(
            model="claude-byok-client-sdk", max_tokens=32, messages=[{"role": "user", "content": "hi"}]
        )
    (recorded,) = sent(stack, "anthropic", "claude-byok-client-sdk")
    assert ANT_STORED not in recorded.headers.values()
    assert recorded.api_key == "sk-ant-client"


def test_stored_keys_never_reach_a_log_row_or_error_body(stack: GatewayStack, stored_keys: None) -> None:
    body = json.dumps(chat("error-401-byok-leak")).encode()
    reply = call("POST", stack.url("default", CHAT), body, _no_key())
    assert reply.status == 401
    assert STORED not in reply.body.decode()
    stack.log_record(reply.log_id)
    secrets = [STORED, TEAM, ANT_STORED, SECURE_STORED]
    for row in stack.log_rows():
        for column, value in row.items():
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"log {row['id']} column {column} holds a stored key"
