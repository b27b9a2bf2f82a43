"""Per-user keys and field encryption for crypto-shredding.

Personal data in payloads is encrypted with AES-256-GCM under a key that belongs to one user;
the key lives in a `KeyStore` apart from the log. Destroying the key erases that user's data
everywhere it was written — the log itself is never edited, so its hash chain (which covers
the ciphertext) still verifies.

An encrypted value is stored in place of the plain one as a JSON object

    {"$enc": "v1", "kid": <key id>, "t": <s|l|d|o>, "n": <base64 nonce>, "c": <base64 ciphertext>}

The event id and the field path are the AES-GCM associated data, so a ciphertext cannot be
moved to another event or field. `kid` names the key generation (a user forgotten and later
seen again gets a new key, and the old ciphertexts stay erased). `t` is the JSON kind of the
plain value (string, list, dict, other), so an erased value keeps a shape readers can load:
an erased string reads as `ERASED` ("[erased]"), an erased list as `[]`, an erased object as
`{}`, anything else as `None`. (The kind is the only thing the envelope says about the value;
field names are in clear anyway.)
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
KEY_BYTES = 32
_DESTROYED = b"\0" * KEY_BYTES  # what `FileKeyStore.destroy` overwrites a key with


class KeyStore(Protocol):
    """Where per-user keys live. Implementations must make `destroy` final: after it returns,
    no copy of the key may be readable through this store."""

    def get(self, user_id: str) -> bytes | None: ...

    def get_or_create(self, user_id: str) -> bytes: ...

    def destroy(self, user_id: str) -> bool: ...


def _usable(data: bytes | None) -> bytes | None:
    """A stored key only if it is a whole, live key (not torn, not a destroyed one)."""
    if data is None or len(data) != KEY_BYTES or data == _DESTROYED:
        return None
    return data


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
    """One 0600 file per user in a 0700 directory; file names are hashes of the user id, so
    the directory listing does not name the users.

    Creation is atomic and race-free across processes (a private temporary file hard-linked
    into place: the first writer wins, everyone reads the winner's key) and durable (file and
    directory fsynced: a key lost in a crash would silently erase what was written under it).
    Destruction overwrites the key with zeros, fsyncs, then unlinks; a crash in between leaves
    a zeroed file, which reads as no key and is replaced on the next write."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        self._lock = threading.Lock()

    def _file(self, user_id: str) -> Path:
        return self.path / (hashlib.sha256(user_id.encode()).hexdigest() + ".key")

    def _read(self, target: Path) -> bytes | None:
        try:
            return target.read_bytes()
        except FileNotFoundError:
            return None

    def get(self, user_id: str) -> bytes | None:
        return _usable(self._read(self._file(user_id)))

    def get_or_create(self, user_id: str) -> bytes:
        target = self._file(user_id)
        with self._lock:
            for _ in range(3):
                data = self._read(target)
                key = _usable(data)
                if key is not None:
                    return key
                if data is not None:  # a torn or half-destroyed file: finish destroying it
                    target.unlink(missing_ok=True)
                self._create(target)
        raise OSError(f"could not create a key file in {self.path}")

    def _create(self, target: Path) -> None:
        tmp = self.path / f".{target.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(AESGCM.generate_key(bit_length=256))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, target)  # first writer wins if two processes race
            except FileExistsError:
                return
            _fsync_dir(self.path)
        finally:
            tmp.unlink(missing_ok=True)

    def destroy(self, user_id: str) -> bool:
        target = self._file(user_id)
        with self._lock:
            try:
                fd = os.open(target, os.O_WRONLY)
            except FileNotFoundError:
                return False
            with os.fdopen(fd, "wb") as f:  # overwrite before unlinking: best effort on the disk
                f.write(_DESTROYED)
                f.flush()
                os.fsync(f.fileno())
            target.unlink(missing_ok=True)
            _fsync_dir(self.path)
            return True


class RedisKeyStore:
    """Keys in their own Redis key space (`<prefix>:key:<sha256(user)>`), apart from the log's
    keys so they can have their own ACL, persistence and backups."""

    def __init__(self, client: Any, prefix: str = "el-keys") -> None:
        self.client = client
        self.prefix = prefix

    def _key(self, user_id: str) -> str:
        return f"{self.prefix}:key:{hashlib.sha256(user_id.encode()).hexdigest()}"

    def get(self, user_id: str) -> bytes | None:
        value = self.client.get(self._key(user_id))
        return _usable(bytes(value)) if value is not None else None

    def get_or_create(self, user_id: str) -> bytes:
        self.client.set(self._key(user_id), AESGCM.generate_key(bit_length=256), nx=True)
        key = self.get(user_id)
        if key is None:  # destroyed between the SET and the GET, or a foreign value
            raise OSError(f"no usable key for this user under {self.prefix}:key:*")
        return key

    def destroy(self, user_id: str) -> bool:
        return bool(self.client.delete(self._key(user_id)))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def key_id(key: bytes) -> str:
    """A short public name for a key (not the key: a hash of it under a fixed label)."""
    return hashlib.sha256(b"agno-eventlog key id\0" + key).hexdigest()[:16]


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "s"
    if isinstance(value, (list, tuple)):
        return "l"
    if isinstance(value, dict):
        return "d"
    return "o"


_ERASED_AS: dict[str, Any] = {"s": ERASED, "l": [], "d": {}, "o": None}


def encrypt_value(key: bytes, value: Any, aad: bytes) -> dict[str, str]:
    nonce = os.urandom(12)
    plain = msgspec.json.encode(value)
    return {ENC: "v1", "kid": key_id(key), "t": _kind(value), "n": _b64(nonce),
            "c": _b64(AESGCM(key).encrypt(nonce, plain, aad))}


def is_encrypted(value: Any) -> bool:
    return isinstance(value, dict) and value.get(ENC) == "v1" and "n" in value and "c" in value


def erased(value: dict[str, Any]) -> Any:
    """What an encrypted value reads as once its key is gone (see the module docstring)."""
    kind = value.get("t")
    return _ERASED_AS.get(kind, ERASED) if isinstance(kind, str) else ERASED


def decrypt_value(key: bytes | None, value: dict[str, Any], aad: bytes) -> Any:
    """The plain value, or its erased form when the key is gone (or is another generation's,
    or the ciphertext was not made for this event and field)."""
    if key is None:
        return erased(value)
    kid = value.get("kid")
    if kid is not None and kid != key_id(key):
        return erased(value)
    try:
        plain = AESGCM(key).decrypt(base64.b64decode(value["n"]), base64.b64decode(value["c"]), aad)
        return msgspec.json.decode(plain)
    except (InvalidTag, ValueError, TypeError, KeyError, msgspec.DecodeError):
        return erased(value)
