"""`POST /v1/{account}/{gateway}`: a JSON array of steps tried in order; `cf-aig-step` names the winner.

Each step is `{provider, endpoint, headers, query, config}`: `query` is the request body, `headers`
override the request's, `config` overrides the retry settings for that step. The gateway's cache keys the
whole array (a hit answers without trying any step); spend rules reserve for the first step and settle
with the cost of the step that answered.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from switchpoint.errors import BadRequest, InvalidProvider
from switchpoint.exchange import Exchange, Target, attempt, governance, relay
from switchpoint.exchange.caching import run_cached, whole_call_key
from switchpoint.providers.registry import Registry
from switchpoint.routing.attempts import MAX_ATTEMPTS, MAX_DELAY_MS, RetryPolicy
from switchpoint.surfaces.common import RUNTIME, serve_call
from switchpoint.surfaces.planning import CHAT, EMBEDDINGS, compat_target

MAX_STEPS = 10


def _steps(body: bytes) -> list[dict[str, Any]]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Request body is not valid JSON: {exc.args[0]}") from None
    steps = [value] if isinstance(value, dict) else value
    if not isinstance(steps, list) or not steps:
        raise BadRequest("Universal endpoint expects a non-empty JSON array of steps")
    if len(steps) > MAX_STEPS:
        raise BadRequest(f"At most {MAX_STEPS} steps are allowed, got {len(steps)}")
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            raise BadRequest(f"Step {index} must be an object")
        for name in ("provider", "endpoint"):
            if not isinstance(step.get(name), str) or not step[name]:
                raise BadRequest(f"Step {index} needs a string '{name}'")
    return steps


def _headers(index: int, raw: Any) -> CIMultiDict[str]:
    if raw is None:
        return CIMultiDict()
    if not isinstance(raw, dict):
        raise BadRequest(f"Step {index} 'headers' must be an object")
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in raw.items():
        out[str(name)] = value if isinstance(value, str) else orjson.dumps(value).decode()
    return out


def _bounded(index: int, config: dict[str, Any], name: str, low: int, high: int | None) -> int | None:
    value = config.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high and value > high):
        upper = f" and <= {high}" if high else ""
        raise BadRequest(f"Step {index} config.{name} must be an integer >= {low}{upper}")
    return value


def _policy(index: int, raw: Any, default: RetryPolicy) -> RetryPolicy:
    if raw is None:
        return default
    if not isinstance(raw, dict):
        raise BadRequest(f"Step {index} 'config' must be an object")
    backoff = raw.get("backoff", default.backoff)
    if backoff not in ("constant", "linear", "exponential"):
        raise BadRequest(f"Step {index} config.backoff must be constant, linear or exponential")
    attempts = _bounded(index, raw, "maxAttempts", 1, MAX_ATTEMPTS)
    delay = _bounded(index, raw, "retryDelay", 0, MAX_DELAY_MS)
    timeout = _bounded(index, raw, "requestTimeout", 1, None)
    return RetryPolicy(
        max_attempts=attempts if attempts is not None else default.max_attempts,
        delay_ms=delay if delay is not None else default.delay_ms,
        backoff=backoff,
        first_byte_timeout_ms=timeout if timeout is not None else default.first_byte_timeout_ms,
    )


def _target(registry: Registry, account: str, index: int, step: dict[str, Any]) -> Target:
    query = step.get("query")
    headers = _headers(index, step.get("headers"))
    if isinstance(step.get("authorization"), str) and "authorization" not in headers:
        headers["authorization"] = step["authorization"]  # the documented legacy spelling
    endpoint: str = step["endpoint"].lstrip("/")
    if step["provider"] == "compat":
        if not isinstance(query, dict):
            raise BadRequest(f"Step {index} 'query' must be an object for the compat provider")
        kind = EMBEDDINGS if endpoint.endswith("embeddings") else CHAT
        target = compat_target(registry, account, dict(query), kind)
        return Target(target.provider, target.url, target.body, target.model, target.path, headers)
    provider = registry.get(step["provider"])
    if provider is None:
        raise InvalidProvider(f"Step {index}: invalid provider '{step['provider']}'")
    path, _, query_string = endpoint.partition("?")
    body = orjson.dumps(query) if query is not None else b""
    model = query.get("model") if isinstance(query, dict) else None
    if not isinstance(model, str):
        model = path[path.index("@") :] if "@" in path else None
    url = provider.upstream_url(account, path, query_string)
    return Target(provider, url, body, model, path, headers)


async def _plan(ex: Exchange, request: web.Request) -> web.StreamResponse:
    registry = request.app[RUNTIME].registry
    steps = _steps(ex.body)
    planned = [
        (_target(registry, ex.account, i, step), _policy(i, step.get("config"), ex.options.retry))
        for i, step in enumerate(steps)
    ]
    first = steps[0].get("query")
    ex.stream = isinstance(first, dict) and first.get("stream") is True

    async def run() -> web.StreamResponse:
        reserving = governance.reserve_budget(ex, planned[0][0])  # settled with whichever step answered
        if reserving is not None:
            await reserving
        target, answer = await attempt(ex, request.headers, planned)
        try:
            return await relay(ex, request, target, answer)
        finally:
            answer.release()

    return await run_cached(ex, request, lambda: whole_call_key(ex, request.headers, "universal", "steps"), run)


async def handle(request: web.Request) -> web.StreamResponse:
    return await serve_call(request, "universal", "cloudflare", _plan)
