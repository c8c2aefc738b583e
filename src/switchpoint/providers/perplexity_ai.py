"""Perplexity: OpenAI-format chat at its root; /compat calls it perplexity."""

from switchpoint.providers.base import Provider

PROVIDER = Provider(
    name="perplexity-ai",
    base_url="https://api.perplexity.ai",
    compat_aliases=("perplexity",),
    compat_embeddings_path=None,
)
