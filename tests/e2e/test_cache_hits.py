"""What a cache hit leaves behind: a log record with the tokens of the call it replays (as Cloudflare logs
cached calls) and no cost, and a key that still follows the credential, through the real openai SDK."""

from __future__ import annotations

import json

import anthropic
import openai

from tests.e2e.rawhttp import call
from tests.support.stack import GatewayStack

USER = [{"role": "user", "content": "hello from the cache-hit tests"}]


def client(stack: GatewayStack, gateway: str = "cached", api_key: str = "sk-hits", **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url(gateway, "compat"), api_key=api_key, max_retries=0, default_headers=headers)


def test_a_hit_is_logged_with_the_tokens_of_the_call_it_replays(stack: GatewayStack) -> None:
    c = client(stack)
    first = c.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=USER)
    second = c.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=USER)
    assert second.headers["cf-aig-cache-status"] == "HIT"
    miss, hit = (stack.log_record(r.headers["cf-aig-log-id"]) for r in (first, second))
    assert miss["tokens_in"] and miss["tokens_out"] and miss["cost"]
    assert (hit["tokens_in"], hit["tokens_out"]) == (miss["tokens_in"], miss["tokens_out"])
    assert (hit["cached"], hit["cost"], hit["status_code"]) == (1, 0.0, 200)


def test_a_stream_hit_keeps_the_tokens_the_client_never_saw(stack: GatewayStack) -> None:
    """The gateway asks for stream usage the client did not and hides it; the replay has none to read."""
    c = client(stack)
    first = c.chat.completions.with_raw_response.create(model="openai/gpt-hits-s", messages=USER, stream=True)
    first_bytes = b"".join(first.http_response.iter_bytes())
    second = c.chat.completions.with_raw_response.create(model="openai/gpt-hits-s", messages=USER, stream=True)
    assert b"".join(second.http_response.iter_bytes()) == first_bytes and b'"usage":{' not in first_bytes
    miss, hit = (stack.log_record(r.headers["cf-aig-log-id"]) for r in (first, second))
    assert miss["tokens_out"] and (hit["tokens_in"], hit["tokens_out"]) == (miss["tokens_in"], miss["tokens_out"])
    assert (hit["cached"], hit["stream"], hit["cost"]) == (1, 1, 0.0)


def test_gateway_tokens_never_share_entries(stack: GatewayStack) -> None:
    (id_one, one), (id_two, two) = stack.create_token("secure"), stack.create_token("secure")
    stack.wait_for_snapshot(lambda snap: id_one in snap.tokens and id_two in snap.tokens)
    ttl = {"cf-aig-cache-ttl": "300"}
    a = client(stack, "secure", **ttl, **{"cf-aig-authorization": f"Bearer {one}"})
    b = client(stack, "secure", **ttl, **{"cf-aig-authorization": f"Bearer {two}"})
    statuses = [
        x.chat.completions.with_raw_response.create(model="openai/gpt-hits-t", messages=USER).headers[
            "cf-aig-cache-status"
        ]
        for x in (a, a, b, b)
    ]
    assert statuses == ["MISS", "HIT", "MISS", "HIT"]


def test_a_changed_stored_key_is_a_new_tenant(stack: GatewayStack) -> None:
    """The key follows the credential the provider receives, also when the gateway injects it."""
    body = {"model": "openai/gpt-hits-k", "messages": USER}

    def status() -> str:
        url = stack.url("cached", "compat/chat/completions")
        reply = call("POST", url, json.dumps(body).encode(), {"content-type": "application/json"})
        assert reply.status == 200, reply.body
        return str(reply.headers["cf-aig-cache-status"])

    stack.set_key("openai", "sk-stored-one", gateway="cached")
    stack.wait_for_snapshot(lambda snap: snap.keys.get(("cached", "openai", "default")) == "sk-stored-one")
    assert [status(), status()] == ["MISS", "HIT"]
    stack.set_key("openai", "sk-stored-two", gateway="cached")
    stack.wait_for_snapshot(lambda snap: snap.keys.get(("cached", "openai", "default")) == "sk-stored-two")
    assert [status(), status()] == ["MISS", "HIT"]
    sent = [r.headers.get("authorization") for r in stack.ups.requests_for("openai") if b"gpt-hits-k" in r.body]
    assert sent == ["Bearer sk-stored-one", "Bearer sk-stored-two"]


def _anthropic_statuses(stack: GatewayStack, base: str, model: str, keys: list[str]) -> list[str]:
    """`cf-aig-cache-status` of one identical Messages call per key, each key sent as a bearer token (the
    Anthropic SDK's `auth_token`), which the gateway passes on in `authorization`, not `x-api-key`."""
    statuses = []
    for key in keys:
        with anthropic.Anthropic(base_url=stack.url("cached", base), auth_token=key, max_retries=0) as c:
            reply = c.messages.with_raw_response.create(
                model=model, max_tokens=32, messages=[{"role": "user", "content": "whose answer is this"}]
            )
            statuses.append(reply.headers["cf-aig-cache-status"])
    return statuses


def test_anthropic_bearer_keys_never_share_entries_on_passthrough(stack: GatewayStack) -> None:
    statuses = _anthropic_statuses(stack, "anthropic", "claude-hits-bearer", ["sk-ant-a", "sk-ant-a", "sk-ant-b"])
    assert statuses == ["MISS", "HIT", "MISS"]
    sent = [r.headers.get("authorization") for r in stack.ups.requests_for("anthropic") if b"hits-bearer" in r.body]
    assert sent == ["Bearer sk-ant-a", "Bearer sk-ant-b"]


def test_anthropic_bearer_keys_never_share_entries_on_compat(stack: GatewayStack) -> None:
    model = "anthropic/claude-hits-compat-bearer"
    assert _anthropic_statuses(stack, "compat", model, ["sk-ant-c", "sk-ant-c", "sk-ant-d"]) == ["MISS", "HIT", "MISS"]


def test_paths_that_reach_one_url_share_an_entry(stack: GatewayStack) -> None:
    """`openai/v1/chat/completions` and `openai/chat/completions` are one upstream URL, so one entry."""
    body = json.dumps({"model": "gpt-hits-path", "messages": USER}).encode()
    headers = {"content-type": "application/json", "authorization": "Bearer sk-hits"}
    statuses = []
    for path in ("openai/chat/completions", "openai/v1/chat/completions", "openai/v1/chat/completions"):
        reply = call("POST", stack.url("cached", path), body, headers)
        assert reply.status == 200, reply.body
        statuses.append(reply.headers["cf-aig-cache-status"])
    assert statuses == ["MISS", "HIT", "HIT"]
