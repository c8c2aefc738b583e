"""The `Provider` record and the path rules shared by providers; data, not behaviour.

A provider module is a few lines that build one `Provider`; only a provider whose paths differ (Workers AI)
carries a path function of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum


class Dialect(StrEnum):
    """The wire format of a provider's chat endpoint, which decides translation and error bodies."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"


@dataclass(frozen=True, slots=True)
class AuthScheme:
    """The header that carries the provider's own key; `bearer` adds the `Bearer ` prefix."""

    header: str = "authorization"
    bearer: bool = True

    def value(self, key: str) -> str:
        return f"Bearer {key}" if self.bearer else key


BEARER = AuthScheme()
X_API_KEY = AuthScheme("x-api-key", bearer=False)


def v1_tolerant(base_url: str, rest: str) -> str:
    """Accept both `chat/completions` and `v1/chat/completions` when the base already ends in `/v1`."""
    if rest.startswith("v1/") and base_url.rstrip("/").endswith("/v1"):
        return rest[3:]
    return rest


PathRule = Callable[[str, str], str]


@dataclass(frozen=True, slots=True)
class Provider:
    """One upstream. `base_url` may hold `{account_id}`, filled from the gateway URL's account segment."""

    name: str
    base_url: str
    dialect: Dialect = Dialect.OPENAI
    auth: AuthScheme = BEARER
    compat_chat_path: str | None = "chat/completions"
    compat_embeddings_path: str | None = "embeddings"
    path_rule: PathRule = v1_tolerant
    extra_headers: tuple[tuple[str, str], ...] = ()
    # other model prefixes accepted on /compat (Cloudflare's own names differ from some slugs)
    compat_aliases: tuple[str, ...] = ()
    # headers in which a client may send its own key (a key there means: do not inject a stored one)
    key_headers: tuple[str, ...] = ("authorization",)

    def upstream_url(self, account: str, rest: str, query: str = "") -> str:
        base = self.base_url.replace("{account_id}", account) if "{" in self.base_url else self.base_url
        url = f"{base.rstrip('/')}/{self.path_rule(self.base_url, rest.lstrip('/'))}"
        return f"{url}?{query}" if query else url

    def with_overrides(self, base_url: str | None, headers: dict[str, str]) -> Provider:
        return replace(
            self,
            base_url=base_url or self.base_url,
            extra_headers=self.extra_headers + tuple(headers.items()),
        )
