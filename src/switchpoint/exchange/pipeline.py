"""The stages of a call after the surface has parsed it: authenticate, build upstream headers, attempt.

Surfaces call `authenticate`, then `attempt` with the targets they planned, then `relay.relay`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from multidict import CIMultiDict

from switchpoint import auth
from switchpoint.exchange.core import Exchange, Target
from switchpoint.providers.base import Provider
from switchpoint.routing.attempts import Outcome, RetryPolicy, run_steps
from switchpoint.upstream import UpstreamAnswer

# Never forwarded: hop-by-hop headers, what the HTTP client recomputes, and the gateway's own.
_DROP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
        "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding",
        "cf-cache-ttl", "cf-skip-cache", "expect",
    }
)  # fmt: skip
# Where clients put provider keys; a gateway token found here is gateway auth, not a provider key.
KEY_SLOTS = ("authorization", "x-api-key")
# Where a gateway token may come in, in `auth.require_token`'s order.
_TOKEN_HEADERS = ("cf-aig-authorization", *KEY_SLOTS)
# Checks that passed, by (gateway, candidate header values): the snapshot they passed under and the token id.
_ADMITTED_LIMIT = 1024
_admitted: dict[tuple[str, tuple[str | None, ...]], tuple[auth.Snapshot, str]] = {}


def authenticate(snapshot: auth.Snapshot, gateway_id: str, headers: Mapping[str, str]) -> str:
    """Raise 401/2009 unless a valid token for the gateway came in `cf-aig-authorization` or a key slot.

    Runs before the call gets an Exchange: unauthenticated traffic must not be able to fill the log. A
    check that passed is remembered for the same header values under the same credential snapshot (a
    revoked token changes the snapshot); a failed one is never remembered.
    """
    candidates = tuple(map(headers.get, _TOKEN_HEADERS))
    asked = (gateway_id, candidates)
    known = _admitted.get(asked)
    if known is not None and known[0] is snapshot:
        return known[1]
    token_id = auth.require_token(snapshot, gateway_id, *candidates)
    if len(_admitted) >= _ADMITTED_LIMIT:
        _admitted.clear()
    _admitted[asked] = (snapshot, token_id)
    return token_id


def _forwardable(name: str, value: str) -> bool:
    lower = name.lower()
    if lower in _DROP or lower.startswith("cf-aig-"):
        return False
    return not (lower in KEY_SLOTS and auth.looks_like_token(value))


def upstream_headers(ex: Exchange, client: Mapping[str, str], target: Target) -> CIMultiDict[str]:
    """Client headers minus ours and hop-by-hop ones, gateway tokens stripped, stored key injected.

    A universal step's own headers override the request's (Cloudflare's precedence).
    """
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in client.items():
        if _forwardable(name, value):
            out.add(name, value)
    if target.headers:
        for name, value in target.headers.items():
            out.popall(name, None)
            if _forwardable(name, value):
                out[name] = value
    provider = target.provider
    if target.translator is not None:
        _move_client_key(out, provider)
    for name, value in provider.extra_headers:
        out.setdefault(name, value)
    out["accept-encoding"] = "identity"
    alias = ex.options.byok_alias
    key_missing = not any(name in out for name in provider.key_headers)
    if key_missing or alias is not None:
        key = auth.stored_key(ex.runtime.snapshot, ex.gateway_id, provider.name, alias)
        if key is not None and key_missing:
            out[provider.auth.header] = provider.auth.value(key)
    return out


def _move_client_key(out: CIMultiDict[str], provider: Provider) -> None:
    """A translated call carries the key in the client dialect's slot; the provider wants it in its own."""
    api_key = out.popall("x-api-key", [""])[0]
    bearer = out.popall("authorization", [""])[0]
    key = api_key or (bearer[7:].strip() if bearer[:7].lower() == "bearer " else "")
    if key:
        out[provider.auth.header] = provider.auth.value(key)


async def attempt(
    ex: Exchange, client: Mapping[str, str], targets: Sequence[tuple[Target, RetryPolicy]]
) -> tuple[Target, UpstreamAnswer]:
    """Run the attempt loop over the targets; returns the target that answered and its answer."""
    upstream = ex.runtime.upstream
    tried: list[Target] = []

    async def send(target: Target, policy: RetryPolicy) -> UpstreamAnswer:
        tried.append(target)
        ex.attempts += 1
        headers = upstream_headers(ex, client, target)
        return await upstream.open(ex.method, target.url, headers, target.body, policy.first_byte_timeout_ms)

    try:
        outcome: Outcome[UpstreamAnswer] = await run_steps(targets, send)
    finally:
        if tried:
            ex.provider = tried[-1].provider.name
            ex.model = tried[-1].model
    ex.step = outcome.step
    target = targets[outcome.step][0]
    ex.provider, ex.model = target.provider.name, target.model
    return target, outcome.answer
