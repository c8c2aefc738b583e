"""`/compat/chat/completions` and `/compat/embeddings`: one OpenAI-format endpoint for every provider.

`model` is `{provider}/{model}`, split on the first `/`; the body is forwarded with only `model` changed.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from switchpoint.errors import BadRequest, InvalidProvider, MethodNotAllowed, NotFound, UnsupportedRoute
from switchpoint.exchange import Exchange, Target, attempt, relay
from switchpoint.formats.anthropic_openai import AnthropicToOpenAI
from switchpoint.formats.openai_anthropic import OpenAIToAnthropic
from switchpoint.formats.translator import TranslationError, Translator
from switchpoint.providers.base import Dialect, Provider
from switchpoint.providers.registry import Registry
from switchpoint.surfaces.common import RUNTIME, json_object, serve_call

CHAT = "chat"
# Anthropic requires max_tokens; OpenAI clients often omit it.
DEFAULT_MAX_TOKENS = 4096
ANTHROPIC_VERSION = "2023-06-01"
EMBEDDINGS = "embeddings"


def resolve_model(registry: Registry, model: Any) -> tuple[Provider, str]:
    """`workers-ai/@cf/moonshotai/kimi-k2.5` → (workers-ai, `@cf/moonshotai/kimi-k2.5`)."""
    if not isinstance(model, str) or not model:
        raise BadRequest("Missing required parameter: 'model' (a string such as 'openai/gpt-4o-mini')")
    prefix, sep, upstream_model = model.partition("/")
    if prefix == "dynamic":
        raise InvalidProvider(f"Dynamic route '{upstream_model}' is not deployed on this gateway")
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
    if translator is None:
        obj["model"] = upstream_model
        if kind == CHAT and provider.dialect is Dialect.OPENAI:
            strip_usage = _ask_for_stream_usage(obj)
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
    )


def _ask_for_stream_usage(obj: dict[str, Any]) -> bool:
    """Streams must be costed even when the client did not ask for usage: ask for it, and hide it later."""
    if obj.get("stream") is not True:
        return False
    options = obj.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return False
    obj["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return True


def _planner(kind: str) -> Any:
    async def plan(ex: Exchange, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            raise MethodNotAllowed(f"{request.method} is not allowed here; use POST")
        obj = json_object(ex.body)
        ex.stream = obj.get("stream") is True
        target = compat_target(request.app[RUNTIME].registry, ex.account, obj, kind)
        ex.provider, ex.model = target.provider.name, target.model
        target, answer = await attempt(ex, request.headers, [(target, ex.options.retry)])
        try:
            return await relay(ex, request, target, answer)
        finally:
            answer.release()

    return plan


_PLAN_CHAT = _planner(CHAT)
_PLAN_EMBEDDINGS = _planner(EMBEDDINGS)


async def chat(request: web.Request) -> web.StreamResponse:
    return await serve_call(request, "compat", "openai", _PLAN_CHAT)


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await serve_call(request, "compat", "openai", _PLAN_EMBEDDINGS)


async def unknown(request: web.Request) -> web.StreamResponse:
    async def plan(ex: Exchange, request: web.Request) -> web.StreamResponse:
        raise NotFound(f"Unknown /compat path '{request.match_info['rest']}': use chat/completions or embeddings")

    return await serve_call(request, "compat", "openai", plan)
