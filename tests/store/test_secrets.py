"""The master key (env or private file) and AES-GCM sealing bound to a key slot."""

from __future__ import annotations

import base64
import os
import stat
import threading
from pathlib import Path

import pytest

from switchpoint.store.secrets import MasterKeyError, Sealer, SealError, load_master_key, slot_aad


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    key = load_master_key(tmp_path / "d")
    path = tmp_path / "d" / "master.key"
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert base64.urlsafe_b64decode(path.read_bytes().strip()) == key
    assert load_master_key(tmp_path / "d") == key
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["master.key"]  # no temp files left


def test_concurrent_creators_agree_on_one_key(tmp_path: Path) -> None:
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(load_master_key(tmp_path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_readable_key_file_is_refused(tmp_path: Path, mode: int) -> None:
    load_master_key(tmp_path)
    os.chmod(tmp_path / "master.key", mode)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        load_master_key(tmp_path)


def test_malformed_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"too short\n")
    os.close(fd)
    with pytest.raises(MasterKeyError, match="32-byte key"):
        load_master_key(tmp_path)


def test_env_secret_base64_is_used_as_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = bytes(range(100, 132))
    monkeypatch.setenv("SWITCHPOINT_SECRET", base64.urlsafe_b64encode(raw).decode())
    assert load_master_key(tmp_path) == raw
    monkeypatch.setenv("SWITCHPOINT_SECRET", base64.urlsafe_b64encode(raw).decode().rstrip("="))
    assert load_master_key(tmp_path) == raw
    assert not (tmp_path / "master.key").exists()


def test_env_passphrase_is_stretched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHPOINT_SECRET", "correct horse battery staple")
    first = load_master_key(tmp_path)
    assert len(first) == 32 and load_master_key(tmp_path) == first
    monkeypatch.setenv("SWITCHPOINT_SECRET", "correct horse battery stapler")
    assert load_master_key(tmp_path) != first


def test_seal_round_trip_hides_plaintext() -> None:
    sealer = Sealer(os.urandom(32))
    aad = slot_aad("default", "openai", "default")
    sealed = sealer.seal("sk-live-abcdef123456", aad)
    assert b"sk-live" not in sealed and len(sealed) > 12
    assert sealer.seal("sk-live-abcdef123456", aad) != sealed  # fresh nonce every time
    assert sealer.open(sealed, aad) == "sk-live-abcdef123456"


def test_wrong_master_key_fails_clearly() -> None:
    aad = slot_aad("default", "openai", "default")
    sealed = Sealer(os.urandom(32)).seal("sk-1", aad)
    with pytest.raises(SealError, match="master key differs"):
        Sealer(os.urandom(32)).open(sealed, aad)


def test_sealed_key_cannot_move_to_another_slot() -> None:
    sealer = Sealer(os.urandom(32))
    sealed = sealer.seal("sk-1", slot_aad("default", "openai", "default"))
    for other in (("default", "openai", "backup"), ("default", "anthropic", "default"), ("prod", "openai", "default")):
        with pytest.raises(SealError, match="/".join(other)):
            sealer.open(sealed, slot_aad(*other))


def test_truncated_blob_is_a_seal_error() -> None:
    with pytest.raises(SealError):
        Sealer(os.urandom(32)).open(b"short", b"a/b/c")


def test_sealer_needs_32_bytes() -> None:
    with pytest.raises(MasterKeyError):
        Sealer(b"x" * 16)
