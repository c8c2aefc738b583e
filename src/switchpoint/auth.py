"""Gateway tokens (format, hash, constant-time check) and stored provider-key resolution.

Works only on the in-memory `Snapshot` refreshed from the store, so the hot path never touches a database.
A token is `swp_<id>_<secret>`: the id finds the record, the secret is checked against its SHA-256 with
`hmac.compare_digest`; the prefix lets the gateway recognise its own token in a provider's auth header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from switchpoint.errors import Unauthorized, UnknownKeyAlias

TOKEN_PREFIX = "swp_"
_ID_LEN = 12


@dataclass(frozen=True, slots=True)
class MintedToken:
    token_id: str
    plaintext: str
    secret_hash: bytes


@dataclass(frozen=True, slots=True)
class TokenEntry:
    gateway: str
    secret_hash: bytes


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the hot path knows about credentials; replaced whole when the store changes."""

    version: int = 0
    tokens: dict[str, TokenEntry] = field(default_factory=dict)
    # (gateway, provider, alias) -> plaintext provider key, decrypted once at load time
    keys: dict[tuple[str, str, str], str] = field(default_factory=dict)


def hash_secret(secret: str) -> bytes:
    """Tokens carry 190 bits of randomness, so a fast hash is enough; a slow KDF would only cost latency."""
    return hashlib.sha256(secret.encode()).digest()


def mint_token() -> MintedToken:
    token_id = secrets.token_hex(_ID_LEN // 2)
    secret = secrets.token_urlsafe(24)
    return MintedToken(token_id, f"{TOKEN_PREFIX}{token_id}_{secret}", hash_secret(secret))


def parse_token(value: str) -> tuple[str, str] | None:
    """Split `swp_<id>_<secret>` (optionally after `Bearer `); None when it is not shaped like ours."""
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    if not value.startswith(TOKEN_PREFIX):
        return None
    token_id, sep, secret = value[len(TOKEN_PREFIX) :].partition("_")
    if not sep or len(token_id) != _ID_LEN or not secret:
        return None
    return token_id, secret


def looks_like_token(value: str) -> bool:
    return parse_token(value) is not None


def check_token(snapshot: Snapshot, gateway: str, value: str | None) -> bool:
    """True when `value` is a live token of `gateway`; constant-time in the secret."""
    if not value:
        return False
    parsed = parse_token(value)
    if parsed is None:
        return False
    entry = snapshot.tokens.get(parsed[0])
    if entry is None or entry.gateway != gateway:
        # compare anyway so a miss costs the same as a wrong secret
        hmac.compare_digest(hash_secret(parsed[1]), b"\0" * 32)
        return False
    return hmac.compare_digest(hash_secret(parsed[1]), entry.secret_hash)


def require_token(snapshot: Snapshot, gateway: str, *candidates: str | None) -> str:
    """The id of the valid token for `gateway` among the candidate header values; 401/2009 when none is."""
    for candidate in candidates:
        if candidate and check_token(snapshot, gateway, candidate):
            parsed = parse_token(candidate)
            assert parsed is not None  # check_token accepted it
            return parsed[0]
    raise Unauthorized()


def stored_key(snapshot: Snapshot, gateway: str, provider: str, alias: str | None) -> str | None:
    """The BYOK key to inject; an explicit alias that does not exist is an error, a missing default is not."""
    key = snapshot.keys.get((gateway, provider, alias or "default"))
    if key is None and alias is not None:
        known = sorted(a for (g, p, a) in snapshot.keys if g == gateway and p == provider)
        listed = ", ".join(f"'{a}'" for a in known) or "none"
        raise UnknownKeyAlias(
            f"Provider '{provider}' has no BYOK credential named '{alias}'. Configured aliases: {listed}"
        )
    return key


def build_snapshot(
    version: int,
    tokens: list[tuple[str, str, bytes]],
    keys: list[tuple[str, str, str, str]],
) -> Snapshot:
    """From the store's rows: (token_id, gateway, secret_hash) and (gateway, provider, alias, key)."""
    return Snapshot(
        version=version,
        tokens={token_id: TokenEntry(gateway, secret_hash) for token_id, gateway, secret_hash in tokens},
        keys={(gateway, provider, alias): key for gateway, provider, alias, key in keys},
    )


def check_admin(admin_token: str | None, header: str | None) -> None:
    """Raise 401 unless `header` is `Bearer <admin_token>`; with no admin token configured the API is closed."""
    presented = header[7:].strip() if header and header[:7].lower() == "bearer " else ""
    if not admin_token or not presented or not hmac.compare_digest(presented.encode(), admin_token.encode()):
        raise Unauthorized("Admin API: missing or wrong admin token")
