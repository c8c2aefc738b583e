"""The master key and the AES-256-GCM sealing of provider keys at rest.

The key comes from `SWITCHPOINT_SECRET` or a private `master.key` file in the data directory; each sealed
value is bound to its slot (`gateway/provider/alias`) through the AEAD associated data.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ENV_VAR = "SWITCHPOINT_SECRET"
KEY_FILENAME = "master.key"
KEY_LEN = 32
NONCE_LEN = 12
_B64_KEY = re.compile(r"[A-Za-z0-9_-]{43}=?")
_HKDF_INFO = b"switchpoint master key v1"


class SecretError(Exception):
    """A problem with the master key or a sealed value; the message is meant for the operator."""


class MasterKeyError(SecretError):
    pass


class SealError(SecretError):
    pass


def slot_aad(gateway: str, provider: str, alias: str) -> bytes:
    """Associated data binding a sealed key to its slot, so it cannot be moved to another one."""
    return f"{gateway}/{provider}/{alias}".encode()


def load_master_key(data_dir: Path) -> bytes:
    """32 bytes from `SWITCHPOINT_SECRET` when set, else from (or newly into) `{data_dir}/master.key`."""
    env = os.environ.get(ENV_VAR)
    if env:
        return key_from_secret(env)
    path = Path(data_dir).expanduser() / KEY_FILENAME
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        return _create_key_file(path)


def key_from_secret(secret: str) -> bytes:
    """Use urlsafe base64 of exactly 32 bytes as is; stretch any other string with HKDF-SHA256."""
    value = secret.strip()
    if _B64_KEY.fullmatch(value):
        return base64.urlsafe_b64decode(value.rstrip("=") + "=")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_LEN, salt=None, info=_HKDF_INFO)
    return hkdf.derive(value.encode())


def _read_key_file(path: Path) -> bytes:
    with path.open("rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise MasterKeyError(
                f"{path} is readable by other users (mode {stat.filemode(mode)}); "
                f"refusing to use it. Run: chmod 600 {path}"
            )
        text = f.read().strip()
    try:
        key = base64.urlsafe_b64decode(text)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_LEN:
        raise MasterKeyError(f"{path} does not hold a base64-encoded {KEY_LEN}-byte key")
    return key


def _create_key_file(path: Path) -> bytes:
    """Write a fresh key to a private temp file, then link it into place; a concurrent creator wins cleanly."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = os.urandom(KEY_LEN)
    tmp = path.with_name(f".{KEY_FILENAME}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(base64.urlsafe_b64encode(key) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    except FileExistsError:
        return _read_key_file(path)
    finally:
        tmp.unlink(missing_ok=True)
    return key


class Sealer:
    """Seals and opens provider keys with AES-256-GCM: output is a random 12-byte nonce + ciphertext."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_LEN:
            raise MasterKeyError(f"master key must be {KEY_LEN} bytes, got {len(key)}")
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_LEN)
        return nonce + self._aead.encrypt(nonce, plaintext.encode(), aad)

    def open(self, sealed: bytes, aad: bytes) -> str:
        try:
            data = self._aead.decrypt(sealed[:NONCE_LEN], sealed[NONCE_LEN:], aad)
        except (InvalidTag, ValueError):  # ValueError: too short to hold a nonce
            raise SealError(
                f"cannot decrypt the stored key for '{aad.decode(errors='replace')}': the master key "
                f"differs from the one that sealed it ({ENV_VAR} or master.key changed), or the row was "
                "moved to another slot"
            ) from None
        return data.decode()
