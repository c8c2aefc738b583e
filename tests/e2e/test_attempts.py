"""The attempt loop end to end: retries from headers and gateway defaults, Retry-After, timeouts, resets."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.e2e.rawhttp import USER, assert_cf_error, assert_openai_error, chat, post_json, sent
from tests.support.stack import GatewayStack

CHAT = "openai/chat/completions"


def test_max_attempts_header_retries_a_flaky_upstream(stack: GatewayStack) -> None:
    model = "flaky-2-attempts-header"
    reply = post_json(stack.url("default", CHAT), chat(model), {"cf-aig-max-attempts": "3"})
    assert reply.status == 200, reply.body
    assert reply.json()["choices"][0]["message"]["content"] == "echo: hello there"
    assert stack.ups.calls("openai", model) == 3
    record = stack.log_record(reply.log_id)
    assert (record["attempts"], record["status_code"], record["success"]) == (3, 200, 1)


def test_without_retries_a_flaky_upstream_error_passes_through(stack: GatewayStack) -> None:
    model = "flaky-2-no-retries"
    reply = post_json(stack.url("default", CHAT), chat(model))
    assert reply.status == 503
    assert stack.ups.calls("openai", model) == 1
    assert stack.log_record(reply.log_id)["attempts"] == 1


def test_gateway_retry_defaults_apply_without_headers(stack: GatewayStack) -> None:
    model = "flaky-2-gateway-defaults"
    with openai.OpenAI(base_url=stack.url("retrying", "compat"), api_key="sk-test", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(model="openai/" + model, messages=USER)
    assert raw.parse().choices[0].message.content == "echo: hello there"
    assert stack.ups.calls("openai", model) == 3
    assert stack.log_record(raw.headers["cf-aig-log-id"])["attempts"] == 3


def test_header_overrides_the_gateway_default(stack: GatewayStack) -> None:
    model = "flaky-2-header-overrides"
    reply = post_json(stack.url("retrying", CHAT), chat(model), {"cf-aig-max-attempts": "1"})
    assert reply.status == 503
    assert stack.ups.calls("openai", model) == 1


def test_429_is_retried(stack: GatewayStack) -> None:
    model = "flaky-429-2-retried"
    reply = post_json(stack.url("retrying", CHAT), chat(model))
    assert reply.status == 200
    assert stack.ups.calls("openai", model) == 3


def test_retry_after_is_honoured(stack: GatewayStack) -> None:
    model = "error-429-retry-after-1-honoured"
    reply = post_json(stack.url("default", CHAT), chat(model), {"cf-aig-max-attempts": "2"})
    assert reply.status == 429  # still limited after the second try: the provider's answer passes through
    assert reply.headers["retry-after"] == "1"
    assert reply.json()["error"]["code"] == "rate_limit_exceeded"
    assert len(sent(stack, "openai", model)) == 2
    assert reply.elapsed >= 0.9  # the one-second Retry-After was waited out before the second attempt


def test_retry_after_beyond_the_cap_is_not_waited_for(stack: GatewayStack) -> None:
    model = "error-429-retry-after-120-capped"
    reply = post_json(stack.url("default", CHAT), chat(model), {"cf-aig-max-attempts": "3"})
    assert reply.status == 429 and reply.headers["retry-after"] == "120"
    assert len(sent(stack, "openai", model)) == 1
    assert reply.elapsed < 1.0


def test_non_retryable_status_is_not_retried(stack: GatewayStack) -> None:
    model = "error-400-not-retried"
    reply = post_json(stack.url("default", CHAT), chat(model), {"cf-aig-max-attempts": "3"})
    assert reply.status == 400
    assert len(sent(stack, "openai", model)) == 1
    assert stack.log_record(reply.log_id)["attempts"] == 1


def test_exhausted_attempts_pass_the_last_upstream_error_through(stack: GatewayStack) -> None:
    model = "flaky-5-exhausted"
    reply = post_json(stack.url("default", CHAT), chat(model), {"cf-aig-max-attempts": "3"})
    assert reply.status == 503
    assert reply.json() == {
        "error": {
            "message": f"Simulated upstream failure (503) for model {model}",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    assert stack.ups.calls("openai", model) == 3
    record = stack.log_record(reply.log_id)
    assert (record["attempts"], record["status_code"], record["success"]) == (3, 503, 0)


def test_request_timeout_header_gives_504_quickly(stack: GatewayStack) -> None:
    reply = post_json(
        stack.url("default", CHAT), chat("stall-before-2000-timeout-hdr"), {"cf-aig-request-timeout": "200"}
    )
    assert_cf_error(reply, 504, 2005)
    assert reply.elapsed < 1.2
    record = stack.log_record(reply.log_id)
    assert (record["status_code"], record["success"]) == (504, 0)
    assert record["error"]


def test_request_timeout_on_compat_is_an_openai_timeout_error(stack: GatewayStack) -> None:
    reply = post_json(
        stack.url("default", "compat/chat/completions"),
        chat("openai/stall-before-2000-timeout-compat"),
        {"cf-aig-request-timeout": "200"},
    )
    assert_openai_error(reply, 504, 2005, "timeout_error")
    assert reply.elapsed < 1.2


def test_gateway_request_timeout_default(stack: GatewayStack) -> None:
    reply = post_json(stack.url("hasty", CHAT), chat("stall-before-2000-hasty"))
    assert_cf_error(reply, 504, 2005)
    assert reply.elapsed < 1.2


def test_idle_timeout_also_bounds_the_wait_for_the_response_head(stack: GatewayStack) -> None:
    reply = post_json(stack.url("default", CHAT), chat("stall-before-2200-idle-head"))
    assert_cf_error(reply, 504, 2005)
    assert reply.elapsed < 2.0


def test_slow_but_in_time_is_not_a_timeout(stack: GatewayStack) -> None:
    reply = post_json(stack.url("hasty", CHAT), chat("stall-before-50-in-time"))
    assert reply.status == 200


def _warm_pool(stack: GatewayStack, name: str) -> None:
    """One good call first, so the gateway holds an idle keep-alive connection to the fake (as in production)."""
    assert post_json(stack.url("default", CHAT), chat(f"gpt-warm-pool-{name}")).status == 200


def test_reset_before_headers_is_502_2005(stack: GatewayStack) -> None:
    model = "reset-before-headers-once"
    reply = post_json(stack.url("default", CHAT), chat(model))
    assert "reset" in assert_cf_error(reply, 502, 2005)
    assert sent(stack, "openai", model)
    record = stack.log_record(reply.log_id)
    assert (record["status_code"], record["attempts"], record["success"]) == (502, 1, 0)


def test_reset_on_a_reused_connection_is_not_sent_twice(stack: GatewayStack) -> None:
    model = "reset-before-headers-not-twice"
    _warm_pool(stack, "not-twice")
    reply = post_json(stack.url("default", CHAT), chat(model))
    assert_cf_error(reply, 502, 2005)
    assert stack.log_record(reply.log_id)["attempts"] == 1
    assert len(sent(stack, "openai", model)) == 1  # max_attempts 1: the provider must see exactly one POST


def test_reset_before_headers_is_retried(stack: GatewayStack) -> None:
    model = "reset-before-headers-retried"
    reply = post_json(stack.url("default", CHAT), chat(model), {"cf-aig-max-attempts": "3"})
    assert_cf_error(reply, 502, 2005)
    assert len(sent(stack, "openai", model)) == 3
    assert stack.log_record(reply.log_id)["attempts"] == 3


def test_reset_before_headers_on_compat_is_openai_502(stack: GatewayStack) -> None:
    reply = post_json(stack.url("default", "compat/chat/completions"), chat("openai/reset-before-headers-compat"))
    assert_openai_error(reply, 502, 2005, "api_error")


@pytest.mark.parametrize("backoff", ["constant", "exponential"])
def test_backoff_header_is_validated_and_accepted(stack: GatewayStack, backoff: str) -> None:
    model = f"flaky-1-backoff-{backoff}"
    headers = {"cf-aig-max-attempts": "2", "cf-aig-retry-delay": "10", "cf-aig-backoff": backoff}
    assert post_json(stack.url("default", CHAT), chat(model), headers).status == 200
    assert stack.ups.calls("openai", model) == 2


def test_backoff_timing_constant_vs_exponential(stack: GatewayStack) -> None:
    """Three retries 200 ms apart take ~0.6 s; doubling from 200 ms takes ~1.4 s. Coarse bounds only."""

    def timed(backoff: str) -> float:
        model = f"flaky-3-timing-{backoff}"
        headers = {"cf-aig-max-attempts": "4", "cf-aig-retry-delay": "200", "cf-aig-backoff": backoff}
        reply = post_json(stack.url("default", CHAT), chat(model), headers)
        assert reply.status == 200
        assert stack.ups.calls("openai", model) == 4
        return reply.elapsed

    with ThreadPoolExecutor(2) as pool:
        constant, exponential = pool.map(timed, ["constant", "exponential"])
    assert 0.55 <= constant < 1.0
    assert 1.35 <= exponential < 1.9
