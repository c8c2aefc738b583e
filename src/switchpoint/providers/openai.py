"""OpenAI: the reference dialect; its base ends in /v1 so both path spellings work."""

from switchpoint.providers.base import Provider

PROVIDER = Provider(name="openai", base_url="https://api.openai.com/v1")
