"""Groq: OpenAI-format under /openai/v1."""

from switchpoint.providers.base import Provider

PROVIDER = Provider(name="groq", base_url="https://api.groq.com/openai/v1")
