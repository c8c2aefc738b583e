"""xAI Grok: OpenAI-format under /v1; Cloudflare's catalog calls it xai."""

from switchpoint.providers.base import Provider

PROVIDER = Provider(name="grok", base_url="https://api.x.ai/v1", compat_aliases=("xai",))
