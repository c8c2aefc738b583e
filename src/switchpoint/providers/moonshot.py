"""Moonshot (Kimi): OpenAI-format under /v1."""

from switchpoint.providers.base import Provider

PROVIDER = Provider(name="moonshot", base_url="https://api.moonshot.ai/v1", compat_aliases=("moonshotai", "kimi"))
