"""The universal endpoint `POST /v1/{account}/{gateway}`: steps tried in order, `cf-aig-step` names the winner."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.rawhttp import USER, assert_cf_error, call, post_json, sent
from tests.support.stack import GatewayStack

AUTH = {"Authorization": "Bearer sk-step", "Content-Type": "application/json"}


def step(model: str, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "openai",
        "endpoint": "chat/completions",
        "headers": AUTH,
        "query": {"model": model, "messages": USER},
        **extra,
    }


def universal(stack: GatewayStack, steps: Any, headers: dict[str, str] | None = None, slash: bool = False) -> Any:
    url = stack.url("default") + ("/" if slash else "")
    return post_json(url, steps, headers)


def test_first_step_fails_second_answers(stack: GatewayStack) -> None:
    reply = universal(stack, [step("error-503-univ-fallback"), step("gpt-univ-fallback")])
    assert reply.status == 200, reply.body
    assert reply.headers["cf-aig-step"] == "1"
    assert reply.json()["model"] == "gpt-univ-fallback"
    assert len(sent(stack, "openai", "error-503-univ-fallback")) == 1
    record = stack.log_record(reply.log_id)
    assert (record["step"], record["attempts"], record["model"], record["status_code"]) == (
        1,
        2,
        "gpt-univ-fallback",
        200,
    )
    assert record["surface"] == "universal"


def test_first_step_answers(stack: GatewayStack) -> None:
    reply = universal(stack, [step("gpt-univ-first"), step("gpt-univ-never")], slash=True)
    assert reply.status == 200
    assert reply.headers["cf-aig-step"] == "0"
    assert reply.json()["model"] == "gpt-univ-first"
    assert sent(stack, "openai", "gpt-univ-never") == []
    assert stack.log_record(reply.log_id)["step"] == 0


def test_a_single_step_object_is_accepted(stack: GatewayStack) -> None:
    reply = universal(stack, step("gpt-univ-single"))
    assert reply.status == 200
    assert reply.headers["cf-aig-step"] == "0"


def test_all_steps_fail_the_last_error_passes_through(stack: GatewayStack) -> None:
    reply = universal(stack, [step("error-503-univ-all-a"), step("error-429-univ-all-b")])
    direct = post_json(stack.ups.openai_base + "/chat/completions", {"model": "error-429-univ-all-b", "messages": USER})
    assert reply.status == 429
    assert reply.body == direct.body
    assert reply.headers["cf-aig-step"] == "1"
    record = stack.log_record(reply.log_id)
    assert (record["status_code"], record["success"], record["attempts"]) == (429, 0, 2)


def test_all_steps_unreachable_is_502_2005(stack: GatewayStack) -> None:
    dead = {"provider": "custom-dead", "endpoint": "v1/chat/completions", "query": {"model": "x", "messages": USER}}
    reply = universal(stack, [dead, dead])
    assert_cf_error(reply, 502, 2005)


@pytest.mark.parametrize("status", [400, 401])
def test_non_retryable_error_of_a_step_still_falls_back(stack: GatewayStack, status: int) -> None:
    reply = universal(stack, [step(f"error-{status}-univ-nonretry"), step(f"gpt-univ-nonretry-{status}")])
    assert reply.status == 200
    assert reply.headers["cf-aig-step"] == "1"


def test_step_headers_override_request_headers(stack: GatewayStack) -> None:
    second = step("gpt-univ-hdr-b")
    del second["headers"]
    steps = [
        step("error-503-univ-hdr-a", headers={"Authorization": "Bearer sk-step-a", "x-team": "step"}),
        second,
    ]
    reply = universal(stack, steps, {"authorization": "Bearer sk-request", "x-team": "request"})
    assert reply.status == 200 and reply.headers["cf-aig-step"] == "1"
    (a,) = sent(stack, "openai", "error-503-univ-hdr-a")
    (b,) = sent(stack, "openai", "gpt-univ-hdr-b")
    assert (a.headers.getall("authorization"), a.headers.getall("x-team")) == (["Bearer sk-step-a"], ["step"])
    assert (b.headers.getall("authorization"), b.headers.getall("x-team")) == (["Bearer sk-request"], ["request"])


def test_legacy_authorization_field(stack: GatewayStack) -> None:
    legacy = {"provider": "openai", "endpoint": "chat/completions", "authorization": "Bearer sk-legacy"}
    legacy["query"] = {"model": "gpt-univ-legacy", "messages": USER}
    reply = universal(stack, [legacy], {"authorization": "Bearer sk-request"})
    assert reply.status == 200
    assert sent(stack, "openai", "gpt-univ-legacy")[0].api_key == "sk-legacy"


def test_step_config_max_attempts(stack: GatewayStack) -> None:
    reply = universal(stack, [step("flaky-2-univ-config", config={"maxAttempts": 3}), step("gpt-univ-config-b")])
    assert reply.status == 200
    assert reply.headers["cf-aig-step"] == "0"
    assert stack.ups.calls("openai", "flaky-2-univ-config") == 3
    assert sent(stack, "openai", "gpt-univ-config-b") == []
    assert stack.log_record(reply.log_id)["attempts"] == 3


def test_attempts_count_every_try_across_steps(stack: GatewayStack) -> None:
    steps = [step("error-503-univ-count-a", config={"maxAttempts": 2}), step("gpt-univ-count-b")]
    reply = universal(stack, steps)
    assert reply.status == 200 and reply.headers["cf-aig-step"] == "1"
    assert len(sent(stack, "openai", "error-503-univ-count-a")) == 2
    record = stack.log_record(reply.log_id)
    assert (record["step"], record["attempts"]) == (1, 3)


def test_step_request_timeout_moves_on(stack: GatewayStack) -> None:
    steps = [step("stall-before-2000-univ", config={"requestTimeout": 150}), step("gpt-univ-after-timeout")]
    reply = universal(stack, steps)
    assert reply.status == 200 and reply.headers["cf-aig-step"] == "1"
    assert reply.elapsed < 1.2


def test_compat_step(stack: GatewayStack) -> None:
    compat = {
        "provider": "compat",
        "endpoint": "chat/completions",
        "headers": AUTH,
        "query": {"model": "openai/gpt-univ-compat", "messages": USER},
    }
    reply = universal(stack, [step("error-500-univ-compat"), compat])
    assert reply.status == 200 and reply.headers["cf-aig-step"] == "1"
    (recorded,) = sent(stack, "openai", "gpt-univ-compat")
    assert recorded.path == "/v1/chat/completions"
    assert recorded.json()["model"] == "gpt-univ-compat"


def test_workers_ai_step_uses_the_urls_account(stack: GatewayStack) -> None:
    wai = {
        "provider": "workers-ai",
        "endpoint": "@cf/meta/llama-3.1-8b-instruct",
        "headers": AUTH,
        "query": {"prompt": "hi"},
    }
    reply = post_json(stack.url("default", account="acct-univ"), [wai])
    assert reply.status == 200
    assert (
        stack.ups.requests_for("workers-ai")[-1].path
        == "/client/v4/accounts/acct-univ/ai/run/@cf/meta/llama-3.1-8b-instruct"
    )


def test_stream_from_the_winning_step(stack: GatewayStack) -> None:
    streaming = step("gpt-univ-stream")
    streaming["query"]["stream"] = True
    reply = universal(stack, [step("error-502-univ-stream"), streaming])
    assert reply.status == 200 and reply.headers["cf-aig-step"] == "1"
    assert reply.body.endswith(b"data: [DONE]\n\n")
    assert stack.log_record(reply.log_id)["stream"] == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'"not an array"', 400),
        (b"42", 400),
        (b"[]", 400),
        (b"[1]", 400),
        (b'[{"endpoint": "chat/completions", "query": {}}]', 400),
        (b'[{"provider": "openai", "query": {}}]', 400),
        (b'[{"provider": "openai", "endpoint": "x", "headers": ["a"]}]', 400),
        (b'[{"provider": "openai", "endpoint": "x", "config": {"maxAttempts": 9}}]', 400),
        (b'[{"provider": "nope", "endpoint": "chat/completions", "query": {}}]', 2008),
        (b"{not json", 400),
        (json.dumps([step(f"m{i}") for i in range(11)]).encode(), 400),
    ],
    ids=[
        "string",
        "number",
        "empty",
        "step-not-object",
        "no-provider",
        "no-endpoint",
        "headers-not-object",
        "max-attempts-9",
        "unknown-provider",
        "not-json",
        "eleven-steps",
    ],
)
def test_bad_bodies_are_400_in_the_cloudflare_envelope(stack: GatewayStack, body: bytes, code: int) -> None:
    before = len(stack.ups.requests)
    reply = call("POST", stack.url("default"), body, {"content-type": "application/json"})
    assert_cf_error(reply, 400, code)
    assert len(stack.ups.requests) == before
