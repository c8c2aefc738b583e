"""DeepSeek: OpenAI-format; serves chat/completions at its root and under /v1."""

from switchpoint.providers.base import Provider

PROVIDER = Provider(name="deepseek", base_url="https://api.deepseek.com")
