"""Mistral: OpenAI-format chat under /v1."""

from switchpoint.providers.base import Provider

PROVIDER = Provider(name="mistral", base_url="https://api.mistral.ai/v1")
