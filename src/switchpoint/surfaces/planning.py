"""Turning a /compat request into a planned upstream target: provider, model, path, translation.

Shared by the OpenAI-format surface, the Anthropic-format ingress, universal `compat` steps and the model
steps of dynamic routes, so every way in plans a model call the same way.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson
from multidict import CIMultiDict

from switchpoint.errors import BadRequest, InvalidProvider, UnsupportedRoute
from switchpoint.exchange import Target
from switchpoint.formats.anthropic_openai import AnthropicToOpenAI
from switchpoint.formats.openai_anthropic import OpenAIToAnthropic
from switchpoint.formats.translator import TranslationError, Translator
from switchpoint.providers.base import Dialect, Provider
from switchpoint.providers.registry import Registry

CHAT = "chat"
EMBEDDINGS = "embeddings"
# Bodies up to this size have their plans remembered (`PlanMemo`), at most this many, holding this many bytes.
PLAN_MEMO_BODY, PLAN_MEMO_ENTRIES, PLAN_MEMO_BYTES = 64 * 1024, 4096, 32 * 1024 * 1024
# Anthropic requires max_tokens; OpenAI clients often omit it.
DEFAULT_MAX_TOKENS = 4096
ANTHROPIC_VERSION = "2023-06-01"


def resolve_model(registry: Registry, model: Any) -> tuple[Provider, str]:
    """`workers-ai/@cf/moonshotai/kimi-k2.5` → (workers-ai, `@cf/moonshotai/kimi-k2.5`)."""
    if not isinstance(model, str) or not model:
        raise BadRequest("Missing required parameter: 'model' (a string such as 'openai/gpt-4o-mini')")
    prefix, sep, upstream_model = model.partition("/")
    provider = registry.for_compat(prefix)
    if provider is None or not sep or not upstream_model:
        raise InvalidProvider(
            f"Invalid provider in model '{model}': expected '{{provider}}/{{model}}' with a known provider"
        )
    return provider, upstream_model


def translator_for(client: Dialect, provider: Provider, model: str) -> Translator | None:
    """None when the client and the provider speak the same dialect: then the body is only re-modelled."""
    if client is provider.dialect:
        return None
    if client is Dialect.OPENAI:
        return OpenAIToAnthropic(model, default_max_tokens=DEFAULT_MAX_TOKENS)
    return AnthropicToOpenAI(model)


def compat_target(
    registry: Registry, account: str, obj: dict[str, Any], kind: str, client: Dialect = Dialect.OPENAI
) -> Target:
    """Plan one /compat request: pick the provider, translate or rewrite `model`, choose the provider's path."""
    provider, upstream_model = resolve_model(registry, obj.get("model"))
    path = provider.compat_chat_path if kind == CHAT else provider.compat_embeddings_path
    if path is None:
        raise UnsupportedRoute(f"'{provider.name}' has no {kind} endpoint")
    translator = translator_for(client, provider, upstream_model) if kind == CHAT else None
    headers: CIMultiDict[str] | None = None
    strip_usage = False
    max_tokens = output_cap(obj)  # before translation: the client's own field
    if translator is None:
        obj["model"] = upstream_model
        if kind == CHAT and provider.dialect is Dialect.OPENAI:
            strip_usage = ask_for_stream_usage(obj)
        body = orjson.dumps(obj)
    else:
        try:
            body = orjson.dumps(translator.request(obj))
        except TranslationError as err:
            raise BadRequest(err.message) from None
        if provider.dialect is Dialect.ANTHROPIC:
            headers = CIMultiDict({"anthropic-version": ANTHROPIC_VERSION})
    return Target(
        provider=provider,
        url=provider.upstream_url(account, path),
        body=body,
        model=upstream_model,
        path=path,
        headers=headers,
        translator=translator,
        strip_usage=strip_usage,
        max_tokens=max_tokens,
    )


def output_cap(obj: dict[str, Any]) -> int | None:
    """The request's own limit on output tokens (`max_completion_tokens`, else `max_tokens`), if it set one."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = obj.get(name)
        if type(value) is int and value > 0:
            return value
    return None


def ask_for_stream_usage(obj: dict[str, Any]) -> bool:
    """Streams must be costed even when the client did not ask for usage: ask for it, and hide it later."""
    if obj.get("stream") is not True:
        return False
    options = obj.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return False
    obj["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return True


class Plan(NamedTuple):
    target: Target
    stream: bool


class PlanMemo:
    """Plans already made, by the raw body they were made from: a repeated /compat request (the common case
    of a cache hit) is neither parsed nor re-serialised again. `compat_target` is a pure function of the
    registry, account, body, kind and client dialect, and its target immutable unless it carries a
    translator (which owns per-call stream state): those are never kept. Cleared whole when full."""

    __slots__ = ("_bytes", "_plans")

    def __init__(self) -> None:
        self._plans: dict[tuple[str, str, Dialect, bytes], tuple[Registry, Plan]] = {}
        self._bytes = 0

    def get(self, registry: Registry, account: str, kind: str, client: Dialect, body: bytes) -> Plan | None:
        known = self._plans.get((account, kind, client, body))
        return known[1] if known is not None and known[0] is registry else None

    def put(self, registry: Registry, account: str, kind: str, client: Dialect, body: bytes, plan: Plan) -> None:
        if plan.target.translator is not None or len(body) > PLAN_MEMO_BODY:
            return
        size = len(body) + len(plan.target.body)
        if len(self._plans) >= PLAN_MEMO_ENTRIES or self._bytes + size > PLAN_MEMO_BYTES:
            self._plans.clear()
            self._bytes = 0
        self._plans[(account, kind, client, body)] = (registry, plan)
        self._bytes += size


PLANS = PlanMemo()
