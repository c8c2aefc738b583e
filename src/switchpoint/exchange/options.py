"""The per-request `cf-aig-*` headers, validated once into a frozen `RequestOptions`.

A bad value is a 400 naming the header, never a silent default: callers asked for something specific.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from switchpoint.config import GatewayConfig
from switchpoint.errors import BadRequest
from switchpoint.pricing import CustomCost, parse_custom_cost
from switchpoint.routing.attempts import MAX_ATTEMPTS, MAX_DELAY_MS, Backoff, RetryPolicy

MAX_METADATA_KEYS = 5
MAX_EVENT_ID = 256
_BACKOFFS: tuple[Backoff, ...] = ("constant", "linear", "exponential")
# Every header `parse_options` reads: a call with none of them gets its gateway's defaults, built once.
OPTION_HEADERS = (
    "cf-aig-event-id", "cf-aig-collect-log", "cf-aig-collect-log-payload", "cf-aig-metadata", "cf-aig-byok-alias",
    "cf-aig-custom-cost", "cf-aig-backoff", "cf-aig-max-attempts", "cf-aig-retry-delay", "cf-aig-request-timeout",
)  # fmt: skip
_DEFAULTS_LIMIT = 1024
_defaults: dict[int, tuple[GatewayConfig, RequestOptions]] = {}  # id(gateway) -> that gateway's defaults


@dataclass(frozen=True, slots=True)
class RequestOptions:
    retry: RetryPolicy
    metadata: dict[str, Any] | None
    collect_log: bool
    collect_payload: bool
    event_id: str | None
    byok_alias: str | None
    custom_cost: CustomCost | None = None


def _int_header(headers: Mapping[str, str], name: str, low: int, high: int | None) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise BadRequest(f"{name} must be {bound}, got {value}")
    return value


def _bool_header(headers: Mapping[str, str], name: str, default: bool) -> bool:
    raw = headers.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise BadRequest(f"{name} must be 'true' or 'false', got {raw!r}")
    return value == "true"


def parse_metadata(raw: str | None) -> dict[str, Any] | None:
    """`cf-aig-metadata`: a flat JSON object of at most 5 scalar values; `cf.*` keys are reserved."""
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("cf-aig-metadata must be a JSON object") from None
    if not isinstance(value, dict):
        raise BadRequest("cf-aig-metadata must be a JSON object")
    if len(value) > MAX_METADATA_KEYS:
        raise BadRequest(f"cf-aig-metadata has {len(value)} keys; at most {MAX_METADATA_KEYS} are allowed")
    for key, item in value.items():
        if isinstance(item, dict | list):
            raise BadRequest(f"cf-aig-metadata value of {key!r} must be a string, number or boolean")
    return {k: v for k, v in value.items() if not k.startswith("cf.")}


def _retry(headers: Mapping[str, str], gateway: GatewayConfig) -> RetryPolicy:
    backoff = headers.get("cf-aig-backoff", gateway.retries.backoff).strip().lower()
    if backoff not in _BACKOFFS:
        raise BadRequest(f"cf-aig-backoff must be one of {', '.join(_BACKOFFS)}, got {backoff!r}")
    attempts = _int_header(headers, "cf-aig-max-attempts", 1, MAX_ATTEMPTS)
    delay = _int_header(headers, "cf-aig-retry-delay", 0, MAX_DELAY_MS)
    timeout = _int_header(headers, "cf-aig-request-timeout", 1, None)
    return RetryPolicy(
        max_attempts=attempts if attempts is not None else gateway.retries.max_attempts,
        delay_ms=delay if delay is not None else gateway.retries.delay_ms,
        backoff=backoff,  # checked against _BACKOFFS above
        first_byte_timeout_ms=timeout if timeout is not None else gateway.request_timeout_ms,
    )


def parse_options(headers: Mapping[str, str], gateway: GatewayConfig) -> RequestOptions:
    # The usual call sets none: one pass in C (a request's CIMultiDict compares the names case-insensitively).
    if headers.keys().isdisjoint(OPTION_HEADERS):
        return default_options(gateway)
    event_id = headers.get("cf-aig-event-id")
    if event_id is not None and len(event_id) > MAX_EVENT_ID:
        raise BadRequest(f"cf-aig-event-id is longer than {MAX_EVENT_ID} characters")
    collect = _bool_header(headers, "cf-aig-collect-log", gateway.collect_logs)
    return RequestOptions(
        retry=_retry(headers, gateway),
        metadata=parse_metadata(headers.get("cf-aig-metadata")),
        collect_log=collect,
        collect_payload=_bool_header(headers, "cf-aig-collect-log-payload", True),
        event_id=event_id,
        byok_alias=headers.get("cf-aig-byok-alias"),
        custom_cost=_custom_cost(headers.get("cf-aig-custom-cost")),
    )


def _custom_cost(raw: str | None) -> CustomCost | None:
    if raw is None:
        return None
    try:
        return parse_custom_cost(raw)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def default_options(gateway: GatewayConfig) -> RequestOptions:
    """The gateway's settings alone: what a call without option headers gets, and what a call is logged
    with when its own headers are invalid. Built once per gateway config (configs are immutable)."""
    known = _defaults.get(id(gateway))
    if known is not None and known[0] is gateway:
        return known[1]
    if len(_defaults) >= _DEFAULTS_LIMIT:
        _defaults.clear()
    options = _gateway_options(gateway)
    _defaults[id(gateway)] = (gateway, options)
    return options


def _gateway_options(gateway: GatewayConfig) -> RequestOptions:
    retries = gateway.retries
    return RequestOptions(
        retry=RetryPolicy(retries.max_attempts, retries.delay_ms, retries.backoff, gateway.request_timeout_ms),
        metadata=None,
        collect_log=gateway.collect_logs,
        collect_payload=True,
        event_id=None,
        byok_alias=None,
    )
