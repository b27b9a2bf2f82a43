"""Per-user keys and field encryption for crypto-shredding.

Personal data in payloads is encrypted with AES-256-GCM under a key that belongs to one user;
the key lives in a `KeyStore` apart from the log. Destroying the key erases that user's data
everywhere it was written — the log itself is never edited, so its hash chain (which covers
the ciphertext) still verifies.

An encrypted value is stored in place of the plain one as
`{"$enc": "v1", "n": <base64 nonce>, "c": <base64 ciphertext>}`; the event id and the field
path are the AES-GCM associated data, so a ciphertext cannot be moved to another event or field.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from pathlib import Path
from typing import Any, Protocol

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ERASED = "[erased]"
ENC = "$enc"


class KeyStore(Protocol):
    """Where per-user keys live. Implementations must make `destroy` final."""

    def get(self, user_id: str) -> bytes | None: ...

    def get_or_create(self, user_id: str) -> bytes: ...

    def destroy(self, user_id: str) -> bool: ...


class MemoryKeyStore:
    """Keys in this process only (tests, offline mode)."""

    def __init__(self) -> None:
        self._keys: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def get(self, user_id: str) -> bytes | None:
        return self._keys.get(user_id)

    def get_or_create(self, user_id: str) -> bytes:
        with self._lock:
            return self._keys.setdefault(user_id, AESGCM.generate_key(bit_length=256))

    def destroy(self, user_id: str) -> bool:
        with self._lock:
            return self._keys.pop(user_id, None) is not None


class FileKeyStore:
    """One 0600 file per user in a 0700 directory; file names are hashes of the user id."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        self._lock = threading.Lock()

    def _file(self, user_id: str) -> Path:
        return self.path / (hashlib.sha256(user_id.encode()).hexdigest() + ".key")

    def get(self, user_id: str) -> bytes | None:
        try:
            data = self._file(user_id).read_bytes()
        except FileNotFoundError:
            return None
        return data if len(data) == 32 else None

    def get_or_create(self, user_id: str) -> bytes:
        with self._lock:
            key = self.get(user_id)
            if key is not None:
                return key
            key = AESGCM.generate_key(bit_length=256)
            target = self._file(user_id)
            tmp = target.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, target)  # first writer wins if two processes race
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
            existing = self.get(user_id)
            assert existing is not None
            return existing

    def destroy(self, user_id: str) -> bool:
        target = self._file(user_id)
        with self._lock:
            try:
                fd = os.open(target, os.O_WRONLY)
            except FileNotFoundError:
                return False
            with os.fdopen(fd, "wb") as f:  # overwrite before unlinking: best effort on the disk
                f.write(b"\0" * 32)
                f.flush()
                os.fsync(f.fileno())
            target.unlink()
            return True


class RedisKeyStore:
    """Keys in their own Redis key space (`<prefix>:key:<sha256(user)>`)."""

    def __init__(self, client: Any, prefix: str = "el-keys") -> None:
        self.client = client
        self.prefix = prefix

    def _key(self, user_id: str) -> str:
        return f"{self.prefix}:key:{hashlib.sha256(user_id.encode()).hexdigest()}"

    def get(self, user_id: str) -> bytes | None:
        value = self.client.get(self._key(user_id))
        return bytes(value) if value is not None else None

    def get_or_create(self, user_id: str) -> bytes:
        self.client.set(self._key(user_id), AESGCM.generate_key(bit_length=256), nx=True)
        key = self.get(user_id)
        assert key is not None
        return key

    def destroy(self, user_id: str) -> bool:
        return bool(self.client.delete(self._key(user_id)))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encrypt_value(key: bytes, value: Any, aad: bytes) -> dict[str, str]:
    nonce = os.urandom(12)
    plain = msgspec.json.encode(value)
    return {ENC: "v1", "n": _b64(nonce), "c": _b64(AESGCM(key).encrypt(nonce, plain, aad))}


def is_encrypted(value: Any) -> bool:
    return isinstance(value, dict) and value.get(ENC) == "v1" and "n" in value and "c" in value


def decrypt_value(key: bytes | None, value: dict[str, str], aad: bytes) -> Any:
    """The plain value, or `ERASED` when the key is gone (or the ciphertext is not ours)."""
    if key is None:
        return ERASED
    try:
        plain = AESGCM(key).decrypt(base64.b64decode(value["n"]), base64.b64decode(value["c"]), aad)
    except (InvalidTag, ValueError, KeyError):
        return ERASED
    return msgspec.json.decode(plain)
