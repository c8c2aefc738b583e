"""`exchange.options`: every `cf-aig-*` request header, valid and invalid, over the gateway's defaults."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from switchpoint.cache.policy import cache_directive
from switchpoint.config import GatewayConfig
from switchpoint.errors import BadRequest
from switchpoint.exchange.options import (
    OPTION_HEADERS,
    RequestOptions,
    default_options,
    parse_metadata,
    parse_options,
)
from switchpoint.routing.attempts import RetryPolicy
from tests.support.headers import Reading

DEFAULT = GatewayConfig()
TUNED = GatewayConfig.model_validate(
    {
        "collect_logs": False,
        "retries": {"max_attempts": 3, "delay_ms": 250, "backoff": "linear"},
        "request_timeout_ms": 9000,
    }
)


def bad(headers: dict[str, str], gateway: GatewayConfig = DEFAULT) -> str:
    with pytest.raises(BadRequest) as info:
        parse_options(headers, gateway)
    assert (info.value.status, info.value.cf_code) == (400, None)
    return info.value.message


def test_no_headers_default_gateway() -> None:
    assert parse_options({}, DEFAULT) == RequestOptions(
        retry=RetryPolicy(max_attempts=1, delay_ms=0, backoff="constant", first_byte_timeout_ms=None),
        metadata=None,
        collect_log=True,
        collect_payload=True,
        event_id=None,
        byok_alias=None,
    )


def test_no_headers_uses_the_gateway_settings() -> None:
    options = parse_options({}, TUNED)
    assert options.retry == RetryPolicy(max_attempts=3, delay_ms=250, backoff="linear", first_byte_timeout_ms=9000)
    assert options.collect_log is False
    assert options.collect_payload is True


def test_unrelated_headers_are_ignored() -> None:
    assert parse_options({"authorization": "Bearer x", "content-type": "application/json"}, TUNED) == parse_options(
        {}, TUNED
    )


def test_headers_override_the_gateway() -> None:
    options = parse_options(
        {
            "cf-aig-max-attempts": "5",
            "cf-aig-retry-delay": "5000",
            "cf-aig-backoff": "exponential",
            "cf-aig-request-timeout": "1500",
            "cf-aig-collect-log": "true",
            "cf-aig-collect-log-payload": "false",
            "cf-aig-event-id": "evt-123",
            "cf-aig-byok-alias": "team-b",
        },
        TUNED,
    )
    assert options.retry == RetryPolicy(
        max_attempts=5, delay_ms=5000, backoff="exponential", first_byte_timeout_ms=1500
    )
    assert (options.collect_log, options.collect_payload) == (True, False)
    assert (options.event_id, options.byok_alias) == ("evt-123", "team-b")


def test_header_names_are_case_insensitive_with_real_headers() -> None:
    headers = CIMultiDict({"CF-AIG-Max-Attempts": "2", "Cf-Aig-Backoff": "Linear"})
    options = parse_options(headers, DEFAULT)
    assert (options.retry.max_attempts, options.retry.backoff) == (2, "linear")


# -- retries -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "value"), [("1", 1), ("3", 3), ("5", 5), (" 4 ", 4)])
def test_max_attempts_valid(raw: str, value: int) -> None:
    assert parse_options({"cf-aig-max-attempts": raw}, DEFAULT).retry.max_attempts == value


@pytest.mark.parametrize("raw", ["0", "6", "-1", "100"])
def test_max_attempts_out_of_range(raw: str) -> None:
    message = bad({"cf-aig-max-attempts": raw})
    assert "cf-aig-max-attempts" in message and "between 1 and 5" in message


@pytest.mark.parametrize("raw", ["", "three", "2.5", "0x2", "1e1"])
def test_max_attempts_not_an_integer(raw: str) -> None:
    message = bad({"cf-aig-max-attempts": raw})
    assert "cf-aig-max-attempts" in message and "integer" in message


@pytest.mark.parametrize(("raw", "value"), [("0", 0), ("100", 100), ("5000", 5000)])
def test_retry_delay_valid(raw: str, value: int) -> None:
    assert parse_options({"cf-aig-retry-delay": raw}, DEFAULT).retry.delay_ms == value


@pytest.mark.parametrize("raw", ["-1", "5001", "60000", "1s", "abc"])
def test_retry_delay_invalid(raw: str) -> None:
    assert "cf-aig-retry-delay" in bad({"cf-aig-retry-delay": raw})


@pytest.mark.parametrize(
    ("raw", "value"), [("constant", "constant"), ("LINEAR", "linear"), (" exponential ", "exponential")]
)
def test_backoff_valid(raw: str, value: str) -> None:
    assert parse_options({"cf-aig-backoff": raw}, TUNED).retry.backoff == value


@pytest.mark.parametrize("raw", ["", "fibonacci", "exp", "constant,linear"])
def test_backoff_invalid(raw: str) -> None:
    message = bad({"cf-aig-backoff": raw})
    assert "cf-aig-backoff" in message and "constant, linear, exponential" in message


@pytest.mark.parametrize(("raw", "value"), [("1", 1), ("150", 150), ("600000", 600000)])
def test_request_timeout_valid(raw: str, value: int) -> None:
    assert parse_options({"cf-aig-request-timeout": raw}, TUNED).retry.first_byte_timeout_ms == value


@pytest.mark.parametrize("raw", ["0", "-5", "soon", "1.5"])
def test_request_timeout_invalid(raw: str) -> None:
    message = bad({"cf-aig-request-timeout": raw})
    assert "cf-aig-request-timeout" in message


def test_request_timeout_message_for_too_small() -> None:
    assert bad({"cf-aig-request-timeout": "0"}) == "cf-aig-request-timeout must be at least 1, got 0"


def test_each_retry_header_alone_keeps_the_other_defaults() -> None:
    assert parse_options({"cf-aig-max-attempts": "2"}, TUNED).retry == RetryPolicy(2, 250, "linear", 9000)
    assert parse_options({"cf-aig-retry-delay": "10"}, TUNED).retry == RetryPolicy(3, 10, "linear", 9000)
    assert parse_options({"cf-aig-backoff": "constant"}, TUNED).retry == RetryPolicy(3, 250, "constant", 9000)


# -- logging, event id, alias ------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "value"), [("true", True), ("false", False), ("TRUE", True), (" False ", False)])
@pytest.mark.parametrize("header", ["cf-aig-collect-log", "cf-aig-collect-log-payload"])
def test_bool_headers_valid(header: str, raw: str, value: bool) -> None:
    options = parse_options({header: raw}, DEFAULT)
    assert (options.collect_log if header == "cf-aig-collect-log" else options.collect_payload) is value


@pytest.mark.parametrize("raw", ["1", "0", "yes", "no", "", "on"])
@pytest.mark.parametrize("header", ["cf-aig-collect-log", "cf-aig-collect-log-payload"])
def test_bool_headers_invalid(header: str, raw: str) -> None:
    message = bad({header: raw})
    assert message.startswith(f"{header} must be 'true' or 'false'")


def test_collect_log_default_follows_the_gateway() -> None:
    assert parse_options({}, DEFAULT).collect_log is True
    assert parse_options({}, TUNED).collect_log is False
    assert parse_options({"cf-aig-collect-log": "true"}, TUNED).collect_log is True


def test_event_id_length() -> None:
    assert parse_options({"cf-aig-event-id": "e" * 256}, DEFAULT).event_id == "e" * 256
    assert "cf-aig-event-id" in bad({"cf-aig-event-id": "e" * 257})


def test_byok_alias_is_passed_through() -> None:
    assert parse_options({"cf-aig-byok-alias": "backup"}, DEFAULT).byok_alias == "backup"


# -- metadata ----------------------------------------------------------------------------------------


def test_metadata_absent() -> None:
    assert parse_metadata(None) is None
    assert parse_options({}, DEFAULT).metadata is None


def test_metadata_scalars() -> None:
    raw = '{"user": "u-1", "n": 3, "ratio": 0.5, "paid": true, "note": null}'
    assert parse_metadata(raw) == {"user": "u-1", "n": 3, "ratio": 0.5, "paid": True, "note": None}
    assert parse_options({"cf-aig-metadata": raw}, DEFAULT).metadata == parse_metadata(raw)


def test_metadata_empty_object() -> None:
    assert parse_metadata("{}") == {}


def test_metadata_five_keys_is_the_limit() -> None:
    five = {f"k{i}": i for i in range(5)}
    assert parse_metadata(str(five).replace("'", '"')) == five
    message = bad({"cf-aig-metadata": '{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6}'})
    assert "cf-aig-metadata" in message and "5" in message


@pytest.mark.parametrize("raw", ['{"a": {"b": 1}}', '{"a": [1, 2]}', '{"a": []}', '{"a": {}}'])
def test_metadata_nested_values_are_rejected(raw: str) -> None:
    message = bad({"cf-aig-metadata": raw})
    assert "cf-aig-metadata" in message and "'a'" in message


@pytest.mark.parametrize("raw", ["", "not json", "[1,2]", '"a string"', "42", "null", "{'a': 1}", '{"a": 1'])
def test_metadata_must_be_a_json_object(raw: str) -> None:
    assert bad({"cf-aig-metadata": raw}) == "cf-aig-metadata must be a JSON object"


def test_metadata_reserved_cf_keys_are_dropped() -> None:
    assert parse_metadata('{"cf.user_id": "spoofed", "user": "u", "cfx": 1, "cf": 2}') == {
        "user": "u",
        "cfx": 1,
        "cf": 2,
    }


def test_metadata_unicode() -> None:
    assert parse_metadata('{"名前": "値 ✓"}') == {"名前": "値 ✓"}


def test_options_are_frozen() -> None:
    options = parse_options({}, DEFAULT)
    with pytest.raises(AttributeError):
        options.event_id = "x"  # type: ignore[misc]


def _headers(**values: Any) -> dict[str, str]:
    return {f"cf-aig-{k.replace('_', '-')}": str(v) for k, v in values.items()}


def test_all_errors_name_their_header() -> None:
    cases = _headers(max_attempts="x", retry_delay="x", backoff="x", request_timeout="x", collect_log="x")
    cases.update({"cf-aig-collect-log-payload": "x", "cf-aig-metadata": "x", "cf-aig-event-id": "x" * 300})
    for name, value in cases.items():
        assert name in bad({name: value}), name


EVERY_OPTION = {
    "cf-aig-event-id": "e-1",
    "cf-aig-collect-log": "false",
    "cf-aig-collect-log-payload": "false",
    "cf-aig-metadata": '{"user": "u"}',
    "cf-aig-byok-alias": "prod",
    "cf-aig-custom-cost": '{"total_cost": 0.5}',
    "cf-aig-backoff": "linear",
    "cf-aig-max-attempts": "3",
    "cf-aig-retry-delay": "100",
    "cf-aig-request-timeout": "5000",
}


def test_option_headers_lists_every_header_parse_options_reads() -> None:
    headers = Reading(EVERY_OPTION)
    parse_options(headers, DEFAULT)
    assert headers.read <= set(OPTION_HEADERS) == set(EVERY_OPTION)


@pytest.mark.parametrize("name", OPTION_HEADERS)
def test_any_one_option_header_is_parsed(name: str) -> None:
    assert parse_options({name: EVERY_OPTION[name]}, DEFAULT) != default_options(DEFAULT)


@pytest.mark.parametrize("gateway", [DEFAULT, TUNED])
def test_without_option_headers_a_call_gets_its_gateways_defaults(gateway: GatewayConfig) -> None:
    other = {"authorization": "Bearer sk-x", "cf-aig-authorization": "Bearer t", "cf-aig-cache-ttl": "60"}
    assert parse_options(other, gateway) == default_options(gateway)
    assert parse_options(other, gateway) == parse_options({"cf-aig-collect-log-payload": "true"}, gateway)
    assert default_options(gateway) is default_options(gateway)  # built once


def test_option_and_cache_headers_are_found_in_any_case() -> None:
    headers = CIMultiDictProxy(CIMultiDict({"CF-AIG-Max-Attempts": "2", "CF-AIG-SKIP-CACHE": "true"}))
    assert parse_options(headers, DEFAULT).retry.max_attempts == 2
    directive = cache_directive(GatewayConfig(cache_ttl=60), "POST", headers)
    assert directive is not None and directive.skip_lookup
