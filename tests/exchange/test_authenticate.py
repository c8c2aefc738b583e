"""`exchange.authenticate`: a check that passed is remembered only under the snapshot it passed under."""

from __future__ import annotations

import pytest

from switchpoint.auth import Snapshot, TokenEntry, mint_token
from switchpoint.errors import Unauthorized
from switchpoint.exchange import authenticate

MINTED = mint_token()
SNAPSHOT = Snapshot(1, {MINTED.token_id: TokenEntry("g", MINTED.secret_hash)})
GOOD = {"cf-aig-authorization": f"Bearer {MINTED.plaintext}"}


def test_a_valid_token_passes_again_and_again() -> None:
    for headers in (GOOD, GOOD, {"authorization": f"Bearer {MINTED.plaintext}"}, {"x-api-key": MINTED.plaintext}):
        assert authenticate(SNAPSHOT, "g", headers) == MINTED.token_id


def test_a_remembered_token_is_refused_once_revoked_and_on_another_gateway() -> None:
    assert authenticate(SNAPSHOT, "g", GOOD) == MINTED.token_id
    with pytest.raises(Unauthorized):
        authenticate(Snapshot(2), "g", GOOD)  # the snapshot without it
    with pytest.raises(Unauthorized):
        authenticate(SNAPSHOT, "other", GOOD)
    again = Snapshot(3, dict(SNAPSHOT.tokens))
    assert authenticate(again, "g", GOOD) == MINTED.token_id


def test_a_wrong_secret_is_refused_every_time() -> None:
    wrong = {"cf-aig-authorization": f"Bearer {MINTED.plaintext[:-1]}x"}
    for _ in range(3):
        with pytest.raises(Unauthorized):
            authenticate(SNAPSHOT, "g", wrong)
    with pytest.raises(Unauthorized):
        authenticate(SNAPSHOT, "g", {})
