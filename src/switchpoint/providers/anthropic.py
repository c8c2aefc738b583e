"""Anthropic: its own Messages dialect, `x-api-key` auth and a required `anthropic-version` header."""

from switchpoint.providers.base import X_API_KEY, Dialect, Provider

PROVIDER = Provider(
    name="anthropic",
    base_url="https://api.anthropic.com/v1",
    dialect=Dialect.ANTHROPIC,
    auth=X_API_KEY,
    compat_chat_path="messages",
    compat_embeddings_path=None,
    key_headers=("x-api-key", "authorization"),  # the SDK may send its key as a bearer token
)
