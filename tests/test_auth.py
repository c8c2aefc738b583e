"""`auth`: gateway tokens (mint, parse, check, require), stored-key resolution, the snapshot, the admin check."""

from __future__ import annotations

import hashlib
import re

import pytest

from switchpoint import auth
from switchpoint.errors import Unauthorized, UnknownKeyAlias


@pytest.fixture
def minted() -> auth.MintedToken:
    return auth.mint_token()


@pytest.fixture
def snapshot(minted: auth.MintedToken) -> auth.Snapshot:
    other = auth.mint_token()
    return auth.build_snapshot(
        3,
        [(minted.token_id, "prod", minted.secret_hash), (other.token_id, "staging", other.secret_hash)],
        [
            ("prod", "openai", "default", "sk-default"),
            ("prod", "openai", "team-b", "sk-team-b"),
            ("prod", "openai", "alpha", "sk-alpha"),
            ("prod", "anthropic", "backup", "sk-ant-backup"),
            ("staging", "openai", "default", "sk-staging"),
            ("staging", "openai", "zeta", "sk-zeta"),
        ],
    )


# -- tokens ------------------------------------------------------------------------------------------


def test_minted_token_shape(minted: auth.MintedToken) -> None:
    assert re.fullmatch(r"swp_[0-9a-f]{12}_[A-Za-z0-9_-]{32}", minted.plaintext)
    assert minted.plaintext.startswith(f"{auth.TOKEN_PREFIX}{minted.token_id}_")
    secret = minted.plaintext.split("_", 2)[2]
    assert minted.secret_hash == hashlib.sha256(secret.encode()).digest() == auth.hash_secret(secret)
    assert secret not in repr(minted.secret_hash)


def test_minted_tokens_differ() -> None:
    tokens = {auth.mint_token().plaintext for _ in range(50)}
    ids = {t.split("_")[1] for t in tokens}
    assert len(tokens) == 50 and len(ids) == 50


def test_parse_token(minted: auth.MintedToken) -> None:
    secret = minted.plaintext.split("_", 2)[2]
    assert auth.parse_token(minted.plaintext) == (minted.token_id, secret)
    assert auth.parse_token(f"Bearer {minted.plaintext}") == (minted.token_id, secret)
    assert auth.parse_token(f"bearer {minted.plaintext}") == (minted.token_id, secret)
    assert auth.parse_token(f"BEARER   {minted.plaintext}  ") == (minted.token_id, secret)


def test_secret_may_contain_underscores() -> None:
    assert auth.parse_token("swp_0123456789ab_se_cr_et") == ("0123456789ab", "se_cr_et")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Bearer ",
        "sk-proj-abc",
        "Bearer sk-ant-api03-xyz",
        "swp_",
        "swp_0123456789ab",
        "swp_0123456789ab_",
        "swp_0123456789a_secret",
        "swp_0123456789abc_secret",
        "SWP_0123456789ab_secret",
        "swp0123456789ab_secret",
        "Token swp_0123456789ab_secret",
    ],
)
def test_parse_rejects_what_is_not_ours(value: str) -> None:
    assert auth.parse_token(value) is None
    assert not auth.looks_like_token(value)


def test_looks_like_token(minted: auth.MintedToken) -> None:
    assert auth.looks_like_token(minted.plaintext)
    assert auth.looks_like_token(f"Bearer {minted.plaintext}")


def test_check_token(snapshot: auth.Snapshot, minted: auth.MintedToken) -> None:
    assert auth.check_token(snapshot, "prod", minted.plaintext)
    assert auth.check_token(snapshot, "prod", f"Bearer {minted.plaintext}")
    assert auth.check_token(snapshot, "prod", f"bEaReR {minted.plaintext}")


def test_check_token_wrong_secret(snapshot: auth.Snapshot, minted: auth.MintedToken) -> None:
    assert not auth.check_token(snapshot, "prod", minted.plaintext[:-1] + ("A" if minted.plaintext[-1] != "A" else "B"))
    assert not auth.check_token(snapshot, "prod", minted.plaintext + "x")


def test_check_token_wrong_gateway(snapshot: auth.Snapshot, minted: auth.MintedToken) -> None:
    assert not auth.check_token(snapshot, "staging", minted.plaintext)
    assert not auth.check_token(snapshot, "Prod", minted.plaintext)


def test_check_token_unknown_id(snapshot: auth.Snapshot) -> None:
    stranger = auth.mint_token()
    assert not auth.check_token(snapshot, "prod", stranger.plaintext)


def test_check_token_is_case_sensitive(snapshot: auth.Snapshot, minted: auth.MintedToken) -> None:
    assert not auth.check_token(snapshot, "prod", minted.plaintext.upper())
    secret = minted.plaintext.split("_", 2)[2]
    if secret.swapcase() != secret:
        assert not auth.check_token(snapshot, "prod", f"swp_{minted.token_id}_{secret.swapcase()}")


@pytest.mark.parametrize("value", [None, "", "garbage", "Bearer", "swp_zz_zz"])
def test_check_token_malformed(snapshot: auth.Snapshot, value: str | None) -> None:
    assert not auth.check_token(snapshot, "prod", value)


def test_check_token_on_an_empty_snapshot(minted: auth.MintedToken) -> None:
    assert not auth.check_token(auth.Snapshot(), "prod", minted.plaintext)


def test_require_token(snapshot: auth.Snapshot, minted: auth.MintedToken) -> None:
    auth.require_token(snapshot, "prod", minted.plaintext)
    auth.require_token(snapshot, "prod", None, "sk-provider-key", f"Bearer {minted.plaintext}")


@pytest.mark.parametrize(
    "candidates",
    [(), (None,), (None, None), ("",), ("Bearer sk-abc",), ("swp_0123456789ab_nope",)],
)
def test_require_token_raises_401_2009(snapshot: auth.Snapshot, candidates: tuple[str | None, ...]) -> None:
    with pytest.raises(Unauthorized) as info:
        auth.require_token(snapshot, "prod", *candidates)
    assert (info.value.status, info.value.cf_code, info.value.message) == (401, 2009, "Unauthorized")


def test_require_token_for_another_gateway(snapshot: auth.Snapshot, minted: auth.MintedToken) -> None:
    with pytest.raises(Unauthorized):
        auth.require_token(snapshot, "staging", minted.plaintext)


# -- stored keys -------------------------------------------------------------------------------------


def test_stored_key_default_alias(snapshot: auth.Snapshot) -> None:
    assert auth.stored_key(snapshot, "prod", "openai", None) == "sk-default"
    assert auth.stored_key(snapshot, "staging", "openai", None) == "sk-staging"


def test_stored_key_explicit_alias(snapshot: auth.Snapshot) -> None:
    assert auth.stored_key(snapshot, "prod", "openai", "team-b") == "sk-team-b"
    assert auth.stored_key(snapshot, "prod", "openai", "default") == "sk-default"
    assert auth.stored_key(snapshot, "prod", "anthropic", "backup") == "sk-ant-backup"


def test_stored_key_missing_default_is_none(snapshot: auth.Snapshot) -> None:
    assert auth.stored_key(snapshot, "prod", "anthropic", None) is None
    assert auth.stored_key(snapshot, "prod", "groq", None) is None
    assert auth.stored_key(snapshot, "unknown-gw", "openai", None) is None


def test_unknown_alias_lists_the_configured_aliases(snapshot: auth.Snapshot) -> None:
    with pytest.raises(UnknownKeyAlias) as info:
        auth.stored_key(snapshot, "prod", "openai", "nope")
    err = info.value
    assert (err.status, err.cf_code) == (400, 2040)
    assert err.message == (
        "Provider 'openai' has no BYOK credential named 'nope'. Configured aliases: 'alpha', 'default', 'team-b'"
    )
    assert "sk-" not in err.message  # never a secret in an error body
    assert "zeta" not in err.message  # another gateway's aliases are not listed


def test_unknown_alias_with_no_keys_at_all(snapshot: auth.Snapshot) -> None:
    with pytest.raises(UnknownKeyAlias) as info:
        auth.stored_key(snapshot, "prod", "groq", "x")
    assert info.value.message.endswith("Configured aliases: none")


def test_explicit_default_alias_that_is_missing_is_an_error(snapshot: auth.Snapshot) -> None:
    with pytest.raises(UnknownKeyAlias, match="'backup'"):
        auth.stored_key(snapshot, "prod", "anthropic", "default")


# -- snapshot ----------------------------------------------------------------------------------------


def test_build_snapshot(minted: auth.MintedToken) -> None:
    snap = auth.build_snapshot(
        7,
        [(minted.token_id, "gw", minted.secret_hash)],
        [("gw", "openai", "default", "sk-1"), ("gw", "openai", "b", "sk-2")],
    )
    assert snap.version == 7
    assert snap.tokens == {minted.token_id: auth.TokenEntry("gw", minted.secret_hash)}
    assert snap.keys == {("gw", "openai", "default"): "sk-1", ("gw", "openai", "b"): "sk-2"}
    assert auth.check_token(snap, "gw", minted.plaintext)


def test_empty_snapshot() -> None:
    snap = auth.build_snapshot(0, [], [])
    assert snap == auth.Snapshot()
    assert (snap.version, snap.tokens, snap.keys) == (0, {}, {})


def test_snapshots_do_not_share_state() -> None:
    a, b = auth.Snapshot(), auth.Snapshot()
    assert a.tokens is not b.tokens and a.keys is not b.keys


# -- admin -------------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(auth, "check_admin"), reason="no admin check in this tree")
def test_check_admin() -> None:
    auth.check_admin("s3cret", "Bearer s3cret")
    auth.check_admin("s3cret", "bearer s3cret")
    for header in (None, "", "s3cret", "Bearer wrong", "Bearer s3cre", "Basic s3cret"):
        with pytest.raises(Unauthorized):
            auth.check_admin("s3cret", header)
    with pytest.raises(Unauthorized):
        auth.check_admin(None, "Bearer anything")


@pytest.mark.skipif(not hasattr(auth, "check_admin"), reason="no admin check in this tree")
@pytest.mark.parametrize("header", [None, "", "Bearer "])
def test_check_admin_empty_token_never_authorizes(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        auth.check_admin("", header)
