"""Providers: every built-in's upstream URL, the path rules, config overrides, custom providers, aliases."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchpoint.config import Config, load_config
from switchpoint.providers.base import BEARER, X_API_KEY, AuthScheme, Dialect, Provider, v1_tolerant
from switchpoint.providers.registry import BUILTIN, Registry, build_registry
from switchpoint.providers.workers_ai import run_path

ACCOUNT = "0123456789abcdef0123456789abcdef"


def config(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "switchpoint.yaml"
    path.write_text(text)
    return load_config(path, data_dir=tmp_path / "data")


@pytest.fixture(scope="module")
def registry() -> Registry:
    return build_registry(load_config(None, data_dir=Path("/nonexistent-switchpoint-test")))


def url(registry: Registry, slug: str, rest: str, query: str = "") -> str:
    provider = registry.get(slug)
    assert provider is not None, slug
    return provider.upstream_url(ACCOUNT, rest, query)


CHAT_URLS = {
    "openai": "https://api.openai.com/v1/chat/completions",
    "anthropic": "https://api.anthropic.com/v1/chat/completions",
    "groq": "https://api.groq.com/openai/v1/chat/completions",
    "mistral": "https://api.mistral.ai/v1/chat/completions",
    "openrouter": "https://openrouter.ai/api/v1/chat/completions",
    "grok": "https://api.x.ai/v1/chat/completions",
    "cerebras": "https://api.cerebras.ai/v1/chat/completions",
    "moonshot": "https://api.moonshot.ai/v1/chat/completions",
}


def test_every_builtin_is_registered(registry: Registry) -> None:
    assert set(registry.by_slug) == set(BUILTIN)
    for slug, provider in registry.by_slug.items():
        assert provider.name == slug


@pytest.mark.parametrize(("slug", "expected"), sorted(CHAT_URLS.items()))
def test_both_spellings_reach_the_same_url_for_v1_bases(registry: Registry, slug: str, expected: str) -> None:
    assert url(registry, slug, "chat/completions") == expected
    assert url(registry, slug, "v1/chat/completions") == expected
    assert url(registry, slug, "/v1/chat/completions") == expected


@pytest.mark.parametrize(
    ("slug", "bare", "with_v1"),
    [
        ("deepseek", "https://api.deepseek.com/chat/completions", "https://api.deepseek.com/v1/chat/completions"),
        (
            "perplexity-ai",
            "https://api.perplexity.ai/chat/completions",
            "https://api.perplexity.ai/v1/chat/completions",
        ),
    ],
)
def test_bases_without_v1_keep_the_path(registry: Registry, slug: str, bare: str, with_v1: str) -> None:
    assert url(registry, slug, "chat/completions") == bare
    assert url(registry, slug, "v1/chat/completions") == with_v1


def test_anthropic_messages(registry: Registry) -> None:
    assert url(registry, "anthropic", "v1/messages") == "https://api.anthropic.com/v1/messages"
    assert url(registry, "anthropic", "messages") == "https://api.anthropic.com/v1/messages"


def test_other_paths_under_v1(registry: Registry) -> None:
    assert url(registry, "openai", "v1/embeddings") == "https://api.openai.com/v1/embeddings"
    assert url(registry, "openai", "responses") == "https://api.openai.com/v1/responses"
    assert url(registry, "openai", "v1/models/gpt-4o") == "https://api.openai.com/v1/models/gpt-4o"


WAI = f"https://api.cloudflare.com/client/v4/accounts/{ACCOUNT}/ai"


@pytest.mark.parametrize(
    ("rest", "expected"),
    [
        ("@cf/meta/llama-3.1-8b-instruct", f"{WAI}/run/@cf/meta/llama-3.1-8b-instruct"),
        ("run/@cf/meta/llama-3.1-8b-instruct", f"{WAI}/run/@cf/meta/llama-3.1-8b-instruct"),
        ("@hf/thebloke/mistral-7b", f"{WAI}/run/@hf/thebloke/mistral-7b"),
        ("@cf/moonshotai/kimi-k2.5", f"{WAI}/run/@cf/moonshotai/kimi-k2.5"),
        ("v1/chat/completions", f"{WAI}/v1/chat/completions"),
        ("v1/embeddings", f"{WAI}/v1/embeddings"),
        ("/@cf/meta/m3", f"{WAI}/run/@cf/meta/m3"),
    ],
)
def test_workers_ai_paths(registry: Registry, rest: str, expected: str) -> None:
    assert url(registry, "workers-ai", rest) == expected


def test_workers_ai_account_comes_from_the_call(registry: Registry) -> None:
    provider = registry.get("workers-ai")
    assert provider is not None and "{account_id}" in provider.base_url
    assert (
        provider.upstream_url("acct-2", "@cf/x/y")
        == "https://api.cloudflare.com/client/v4/accounts/acct-2/ai/run/@cf/x/y"
    )
    assert (provider.compat_chat_path, provider.compat_embeddings_path) == ("v1/chat/completions", "v1/embeddings")


def test_run_path_rule() -> None:
    assert run_path("ignored", "@cf/a/b") == "run/@cf/a/b"
    assert run_path("ignored", "run/@cf/a/b") == "run/@cf/a/b"
    assert run_path("ignored", "v1/chat/completions") == "v1/chat/completions"


def test_v1_tolerant_rule() -> None:
    assert v1_tolerant("https://x.example/v1", "v1/chat") == "chat"
    assert v1_tolerant("https://x.example/v1/", "v1/chat") == "chat"
    assert v1_tolerant("https://x.example", "v1/chat") == "v1/chat"
    assert v1_tolerant("https://x.example/v1", "v10/chat") == "v10/chat"
    assert v1_tolerant("https://x.example/api/v1", "chat") == "chat"


def test_query_string_is_appended(registry: Registry) -> None:
    assert url(registry, "openai", "v1/chat/completions", "a=1&b=x%20y") == CHAT_URLS["openai"] + "?a=1&b=x%20y"
    assert url(registry, "workers-ai", "@cf/a/b", "stream=true") == f"{WAI}/run/@cf/a/b?stream=true"
    assert url(registry, "openai", "chat/completions", "") == CHAT_URLS["openai"]


def test_builtin_auth_and_dialects(registry: Registry) -> None:
    anthropic = registry.get("anthropic")
    assert anthropic is not None
    assert (anthropic.dialect, anthropic.auth, anthropic.compat_chat_path) == (Dialect.ANTHROPIC, X_API_KEY, "messages")
    assert anthropic.auth.value("sk-ant") == "sk-ant"
    for slug in set(BUILTIN) - {"anthropic"}:
        provider = registry.get(slug)
        assert provider is not None
        assert (provider.dialect, provider.auth) == (Dialect.OPENAI, BEARER), slug
    assert BEARER.value("sk-1") == "Bearer sk-1"


# -- config --------------------------------------------------------------------------------------------


def test_override_base_url_and_headers(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        "providers:\n"
        "  openai:\n"
        "    base_url: http://127.0.0.1:9999/v1/\n"
        "    headers: {X-Org: acme, OpenAI-Beta: assistants=v2}\n"
        "  deepseek:\n"
        "    headers: {x-trace: '1'}\n",
    )
    reg = build_registry(cfg)
    openai = reg.get("openai")
    assert openai is not None
    assert openai.upstream_url(ACCOUNT, "chat/completions") == "http://127.0.0.1:9999/v1/chat/completions"
    assert openai.upstream_url(ACCOUNT, "v1/chat/completions") == "http://127.0.0.1:9999/v1/chat/completions"
    assert openai.extra_headers == (("x-org", "acme"), ("openai-beta", "assistants=v2"))
    deepseek = reg.get("deepseek")
    assert deepseek is not None
    assert deepseek.upstream_url(ACCOUNT, "chat/completions") == "https://api.deepseek.com/chat/completions"
    assert deepseek.extra_headers == (("x-trace", "1"),)
    assert reg.for_compat("openai") is openai


def test_override_keeps_the_builtin_record(tmp_path: Path) -> None:
    reg = build_registry(config(tmp_path, "providers:\n  anthropic: {base_url: 'http://localhost:8080'}\n"))
    anthropic = reg.get("anthropic")
    assert anthropic is not None
    assert (anthropic.dialect, anthropic.auth, anthropic.compat_chat_path) == (Dialect.ANTHROPIC, X_API_KEY, "messages")
    assert anthropic.upstream_url(ACCOUNT, "v1/messages") == "http://localhost:8080/v1/messages"


def test_override_workers_ai_base_keeps_the_account_placeholder(tmp_path: Path) -> None:
    text = "providers:\n  workers-ai: {base_url: 'http://127.0.0.1:7000/accounts/{account_id}/ai'}\n"
    wai = build_registry(config(tmp_path, text)).get("workers-ai")
    assert wai is not None
    assert wai.upstream_url("a1", "@cf/x/y") == "http://127.0.0.1:7000/accounts/a1/ai/run/@cf/x/y"


def test_custom_providers(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        "custom_providers:\n"
        "  acme:\n"
        "    base_url: https://llm.acme.example/v1\n"
        "  claude-proxy:\n"
        "    base_url: https://proxy.example\n"
        "    format: anthropic\n"
        "    compat_path: /v1/messages\n"
        "    embeddings_path: /embed\n"
        "    auth_header: X-Api-Key\n"
        "    headers: {anthropic-version: 2023-06-01}\n"
        "  bearer-caps:\n"
        "    base_url: https://caps.example\n"
        "    auth_header: Authorization\n",
    )
    reg = build_registry(cfg)
    acme = reg.get("custom-acme")
    assert acme is not None and acme.name == "custom-acme"
    # verbatim: no v1 tolerance, path and query exactly as sent
    assert acme.upstream_url(ACCOUNT, "v1/chat/completions") == "https://llm.acme.example/v1/v1/chat/completions"
    assert acme.upstream_url(ACCOUNT, "chat/completions", "x=1") == "https://llm.acme.example/v1/chat/completions?x=1"
    assert acme.upstream_url(ACCOUNT, "a/b/@c/d") == "https://llm.acme.example/v1/a/b/@c/d"
    assert (acme.dialect, acme.auth) == (Dialect.OPENAI, BEARER)
    assert (acme.compat_chat_path, acme.compat_embeddings_path) == ("v1/chat/completions", "v1/embeddings")
    assert acme.extra_headers == ()

    proxy = reg.get("custom-claude-proxy")
    assert proxy is not None
    assert proxy.dialect == Dialect.ANTHROPIC
    assert proxy.auth == AuthScheme("x-api-key", bearer=False)
    assert proxy.auth.value("k") == "k"
    assert (proxy.compat_chat_path, proxy.compat_embeddings_path) == ("v1/messages", "embed")
    assert proxy.extra_headers == (("anthropic-version", "2023-06-01"),)
    assert proxy.upstream_url(ACCOUNT, proxy.compat_chat_path or "") == "https://proxy.example/v1/messages"

    caps = reg.get("custom-bearer-caps")
    assert caps is not None and caps.auth == BEARER

    assert reg.get("acme") is None
    assert reg.for_compat("custom-acme") is acme


def test_compat_aliases(registry: Registry) -> None:
    assert registry.for_compat("perplexity") is registry.get("perplexity-ai")
    assert registry.for_compat("perplexity-ai") is registry.get("perplexity-ai")
    assert registry.for_compat("xai") is registry.get("grok")
    assert registry.for_compat("grok") is registry.get("grok")
    assert registry.for_compat("moonshotai") is registry.get("moonshot")
    assert registry.get("perplexity") is None  # aliases are /compat prefixes, not passthrough slugs
    assert registry.get("xai") is None
    assert registry.for_compat("nope") is None and registry.get("nope") is None


def test_compat_aliases_follow_overrides(tmp_path: Path) -> None:
    reg = build_registry(config(tmp_path, "providers:\n  grok: {base_url: 'http://127.0.0.1:1/v1'}\n"))
    xai = reg.for_compat("xai")
    assert xai is not None and xai is reg.get("grok")
    assert xai.upstream_url(ACCOUNT, "chat/completions") == "http://127.0.0.1:1/v1/chat/completions"


def test_provider_records_are_immutable(registry: Registry) -> None:
    provider = registry.get("openai")
    assert isinstance(provider, Provider)
    with pytest.raises(AttributeError):
        provider.base_url = "http://evil"  # type: ignore[misc]
