"""Name → Provider: the built-ins, overridden and extended by config into one immutable `Registry`."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass

from switchpoint.config import Config, CustomProviderConfig
from switchpoint.providers.base import BEARER, AuthScheme, Dialect, PathRule, Provider

BUILTIN: dict[str, str] = {
    "openai": "switchpoint.providers.openai:PROVIDER",
    "anthropic": "switchpoint.providers.anthropic:PROVIDER",
    "workers-ai": "switchpoint.providers.workers_ai:PROVIDER",
    "groq": "switchpoint.providers.groq:PROVIDER",
    "deepseek": "switchpoint.providers.deepseek:PROVIDER",
    "mistral": "switchpoint.providers.mistral:PROVIDER",
    "openrouter": "switchpoint.providers.openrouter:PROVIDER",
    "grok": "switchpoint.providers.grok:PROVIDER",
    "cerebras": "switchpoint.providers.cerebras:PROVIDER",
    "perplexity-ai": "switchpoint.providers.perplexity_ai:PROVIDER",
    "moonshot": "switchpoint.providers.moonshot:PROVIDER",
}


def _load(ref: str) -> Provider:
    module, _, attr = ref.partition(":")
    provider = getattr(importlib.import_module(module), attr)
    assert isinstance(provider, Provider), ref
    return provider


def verbatim(base_url: str, rest: str) -> str:
    """Custom providers get the path exactly as the client sent it."""
    return rest


def custom_provider(slug: str, cfg: CustomProviderConfig) -> Provider:
    header = cfg.auth_header.lower()
    auth = BEARER if header == "authorization" else AuthScheme(header, bearer=False)
    rule: PathRule = verbatim
    return Provider(
        name=f"custom-{slug}",
        base_url=cfg.base_url,
        dialect=Dialect(cfg.format),
        auth=auth,
        compat_chat_path=cfg.compat_path.lstrip("/"),
        compat_embeddings_path=cfg.embeddings_path.lstrip("/"),
        path_rule=rule,
        extra_headers=tuple(cfg.headers.items()),
        key_headers=tuple(dict.fromkeys((auth.header, "authorization"))),
    )


@dataclass(frozen=True, slots=True)
class Registry:
    """Passthrough looks providers up by slug; /compat also accepts Cloudflare's alternate prefixes."""

    by_slug: Mapping[str, Provider]
    by_compat_prefix: Mapping[str, Provider]

    def get(self, slug: str) -> Provider | None:
        return self.by_slug.get(slug)

    def for_compat(self, prefix: str) -> Provider | None:
        return self.by_compat_prefix.get(prefix)


def build_registry(config: Config) -> Registry:
    slugs: dict[str, Provider] = {}
    for name, ref in BUILTIN.items():
        provider = _load(ref)
        override = config.providers.get(name)
        if override is not None:
            provider = provider.with_overrides(override.base_url, override.headers)
        slugs[name] = provider
    for slug, cfg in config.custom_providers.items():
        slugs[f"custom-{slug}"] = custom_provider(slug, cfg)
    prefixes = dict(slugs)
    for provider in slugs.values():
        for alias in provider.compat_aliases:
            prefixes.setdefault(alias, provider)
    return Registry(slugs, prefixes)
