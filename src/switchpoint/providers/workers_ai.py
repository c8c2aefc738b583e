"""Cloudflare Workers AI: `@cf/...` model paths run through `run/`, and `v1/...` is OpenAI-compatible."""

from switchpoint.providers.base import Provider


def run_path(base_url: str, rest: str) -> str:
    """`@cf/x/y` and `run/@cf/x/y` both reach `run/@cf/x/y`; `v1/chat/completions` stays as it is."""
    if rest.startswith(("@cf/", "@hf/")):
        return f"run/{rest}"
    return rest


PROVIDER = Provider(
    name="workers-ai",
    base_url="https://api.cloudflare.com/client/v4/accounts/{account_id}/ai",
    compat_chat_path="v1/chat/completions",
    compat_embeddings_path="v1/embeddings",
    path_rule=run_path,
)
