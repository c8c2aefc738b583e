"""Cerebras: OpenAI-format under /v1."""

from switchpoint.providers.base import Provider

PROVIDER = Provider(name="cerebras", base_url="https://api.cerebras.ai/v1")
