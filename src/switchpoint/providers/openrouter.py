"""OpenRouter: OpenAI-format under /api/v1."""

from switchpoint.providers.base import Provider

PROVIDER = Provider(name="openrouter", base_url="https://openrouter.ai/api/v1")
