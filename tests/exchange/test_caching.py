"""`exchange.caching.call_key`: the memo of keys by raw question never changes a key, never lets two
questions share one, and follows a change of stored provider keys."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from switchpoint.auth import Snapshot, mint_token
from switchpoint.cache import CacheDirective, ResponseCache
from switchpoint.config import Config, GatewayConfig
from switchpoint.exchange import Exchange, Runtime, Target, default_options
from switchpoint.exchange.caching import call_key
from switchpoint.limits import Limits, RouteLimiter
from switchpoint.observability import Metrics
from switchpoint.pricing import PriceBook
from switchpoint.providers.registry import build_registry
from switchpoint.state import MemoryState
from switchpoint.upstream import Upstream

GATEWAY = GatewayConfig(cache_ttl=60)
BODY: dict[str, Any] = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2}
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-tenant-a"}


def runtime() -> Runtime:
    config = Config()
    limits = Limits(MemoryState())
    return Runtime(
        config, build_registry(config), Upstream(4, 1000, 1000), lambda record: None, PriceBook(config.prices),
        Metrics(), RouteLimiter(limits), limits, ResponseCache(MemoryState()),
    )  # fmt: skip


def key(rt: Runtime, **change: Any) -> str:
    """The key of one passthrough question, the base one unless `change` says otherwise."""
    body = change.get("body", orjson.dumps(BODY))
    headers = CIMultiDictProxy(CIMultiDict(change.get("headers", HEADERS)))
    ex = Exchange(
        runtime=rt, gateway_id=change.get("gateway", "g"), gateway=GATEWAY, account="acct",
        surface="passthrough", method="POST", path="/v1/acct/g/openai/chat/completions",
        options=default_options(GATEWAY), client_dialect="cloudflare", body=body,
    )  # fmt: skip
    ex.token_id = change.get("token_id")
    ex.cache_directive = CacheDirective(60, custom_key=change.get("custom_key"))
    provider = rt.registry.get(change.get("provider", "openai"))
    assert provider is not None
    path = change.get("path", "chat/completions")
    target = Target(provider=provider, url="http://upstream/" + path, body=body, model="gpt-4o", path=path)
    return call_key(ex, headers, target, change.get("surface", "passthrough"), change.get("query", ""))


VARIANTS: list[dict[str, Any]] = [
    {"headers": {**HEADERS, "authorization": "Bearer sk-tenant-b"}},
    {"headers": {"content-type": "application/json"}},
    {"headers": {**HEADERS, "openai-beta": "assistants=v2"}},
    {"headers": {**HEADERS, "content-type": "text/plain"}},
    {"body": orjson.dumps({**BODY, "temperature": 0.3})},
    {"body": orjson.dumps({**BODY, "tools": [{"type": "function", "function": {"name": "f"}}]})},
    {"path": "embeddings"},
    {"query": "api-version=2"},
    {"token_id": "token-1"},
    {"custom_key": "faq"},
    {"gateway": "other"},
    {"surface": "compat/openai"},
    {"provider": "groq"},
]


def test_memoised_keys_are_the_keys_computed_afresh() -> None:
    warm = runtime()
    for change in [{}, *VARIANTS, {}, *VARIANTS]:  # the second pass is answered by the memo
        assert key(warm, **change) == key(runtime(), **change)
    assert len(warm.cache.keys._entries) == len(VARIANTS) + 1


def test_a_warm_memo_never_lets_two_questions_share_a_key() -> None:
    warm = runtime()
    keys = [key(warm, **change) for change in [{}, *VARIANTS]]
    assert len(set(keys)) == len(keys)
    assert len({key(warm, **change) for change in [{}, *VARIANTS]}) == len(keys)


def test_key_order_still_does_not_matter_and_whitespace_neither() -> None:
    warm = runtime()
    base = key(warm)
    reordered = orjson.dumps(dict(reversed(list(BODY.items()))))
    spaced = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2}'
    assert key(warm, body=reordered) == key(warm, body=spaced) == base


def test_a_gateway_token_in_the_key_slot_is_not_a_provider_credential() -> None:
    warm = runtime()
    first, second = mint_token(), mint_token()
    keys = []
    for minted in (first, second):
        headers = {"content-type": "application/json", "authorization": f"Bearer {minted.plaintext}"}
        keys.append(key(warm, headers=headers, token_id=minted.token_id))
        assert keys[-1] == key(runtime(), headers=headers, token_id=minted.token_id)
    assert keys[0] != keys[1]
    no_key = {"content-type": "application/json"}
    assert keys[0] == key(warm, headers=no_key, token_id=first.token_id)  # the token is not sent upstream


@pytest.mark.parametrize("client_key", [None, "Bearer sk-own"])
def test_a_new_stored_key_gives_a_new_key_when_it_is_the_credential(client_key: str | None) -> None:
    warm = runtime()
    headers = {"content-type": "application/json"}
    if client_key is not None:
        headers["authorization"] = client_key
    before = key(warm, headers=headers)
    warm.snapshot = Snapshot(version=1, keys={("g", "openai", "default"): "sk-stored"})
    after = key(warm, headers=headers)
    assert after == key(_with_snapshot(warm.snapshot), headers=headers)
    assert (after != before) is (client_key is None)  # a client's own key is never replaced by a stored one


def _with_snapshot(snapshot: Snapshot) -> Runtime:
    rt = runtime()
    rt.snapshot = snapshot
    return rt
