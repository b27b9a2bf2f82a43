"""`open_store(url)`: the one place that maps a URL (or the environment) to a backend.

    memory://                         MemoryStore (offline mode, tests)
    file:///abs/dir  or  /abs/dir     JsonlStore (the embedded default); ?fsync=always|batch|never
    redis://[:pw@]host:port/db        RedisStreamStore; rediss:// for TLS (?ssl_ca_certs=...)
    redis+cluster://host:port[,h:p]   RedisStreamStore on Redis Cluster (seed nodes)
    ?prefix=el&partitions=N           key prefix and partition count (Redis)

With no URL: EVENTLOG_OFFLINE=1 (or PAYREADY_OFFLINE_MODE=1) gives memory; else EVENTLOG_URL;
else REDIS_URL with the file store as fallback; else the file store in MEMORY_DIR or the
platform's user data directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from eventlog.errors import InvalidURL
from eventlog.store import EventStore
from eventlog.urls import redact_url

__all__ = ["default_dir", "default_url", "env_flag", "offline_mode", "open_store", "redact_url"]

TRUTHY = {"1", "true", "yes", "on"}


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in TRUTHY


def offline_mode() -> bool:
    """EVENTLOG_OFFLINE, or the original design's PAYREADY_OFFLINE_MODE."""
    return env_flag("EVENTLOG_OFFLINE") or env_flag("PAYREADY_OFFLINE_MODE")


def default_dir() -> Path:
    """MEMORY_DIR, else the platform's per-user data directory for agno-eventlog."""
    configured = os.environ.get("MEMORY_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    try:
        from platformdirs import user_data_dir

        return Path(user_data_dir("agno-eventlog", appauthor=False)) / "log"
    except ImportError:  # pragma: no cover - platformdirs is a dependency
        return Path.home() / ".local" / "share" / "agno-eventlog" / "log"


def default_url() -> tuple[str, str | None]:
    """(url, fallback) chosen from the environment."""
    if offline_mode():
        return "memory://", None
    explicit = os.environ.get("EVENTLOG_URL", "").strip()
    if explicit:
        return explicit, None
    redis_url = os.environ.get("REDIS_URL", "").strip()
    if redis_url:
        return redis_url, str(default_dir() / "fallback")
    return str(default_dir()), None


def open_store(url: str | None = None, *, fallback: str | EventStore | None = None,
               encrypt: bool | None = None, key_dir: str | None = None) -> EventStore:
    """Open the store a URL names; with no URL, the one the environment configures.

    `encrypt` (default: EVENTLOG_ENCRYPT) turns on per-user encryption of personal data for
    crypto-shredding; keys go to `key_dir` (default: EVENTLOG_KEY_DIR, else beside the log:
    `<dir>/keys` for the file store, a separate key space for Redis)."""
    if url is None:
        url, env_fallback = default_url()
        if fallback is None:
            fallback = env_fallback
    if not isinstance(url, str) or not url.strip():
        raise InvalidURL("store URL is empty (try memory://, a directory path, or redis://host:6379/0)")
    url = url.strip()
    store = _open_one(url)
    if fallback is not None:
        from eventlog.stores.fallback import FallbackStore

        secondary = fallback if isinstance(fallback, EventStore) else _open_one(fallback)
        store = FallbackStore(store, secondary)
    if encrypt is None:
        encrypt = env_flag("EVENTLOG_ENCRYPT")
    if encrypt:
        from eventlog.stores.encrypted import EncryptedStore

        store = EncryptedStore(store, _key_store(store, key_dir or os.environ.get("EVENTLOG_KEY_DIR") or None))
    return store


def _key_store(store: EventStore, key_dir: str | None) -> Any:
    """Keys apart from the log: a directory, else the store's own side (see open_store)."""
    from eventlog.crypto import FileKeyStore, MemoryKeyStore, RedisKeyStore

    if key_dir:
        return FileKeyStore(key_dir)
    primary = getattr(store, "primary", store)
    path = getattr(primary, "path", None)
    if path is not None:
        return FileKeyStore(Path(path) / "keys")
    client = getattr(primary, "client", None)
    if client is not None:
        return RedisKeyStore(client, prefix=f"{getattr(primary, 'prefix', 'el')}-keys")
    return MemoryKeyStore()


def _open_one(url: str) -> EventStore:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        from eventlog.stores.memory import MemoryStore

        return MemoryStore()
    if scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster", "unix"):
        from eventlog.stores.redis_store import RedisStreamStore

        return RedisStreamStore.from_url(url)
    if scheme == "file":
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise InvalidURL(f"file URL must be file:///absolute/path, got {url!r}")
        return _open_file(parts.path, dict(parse_qsl(parts.query)))
    if scheme:
        raise InvalidURL(
            f"unknown store URL scheme {scheme!r} in {redact_url(url)!r}: "
            "use memory://, file:///dir, a directory path, redis://, rediss:// or redis+cluster://"
        )
    path, _, query = url.partition("?")
    return _open_file(path, dict(parse_qsl(query)))


def _open_file(path: str, options: dict[str, str]) -> EventStore:
    from eventlog.stores.jsonl import JsonlStore

    if not path:
        raise InvalidURL("file store path is empty")
    if "\x00" in path:
        raise InvalidURL("file store path contains a NUL byte")
    unknown = set(options) - {"fsync", "max_event_bytes", "segment_bytes"}
    if unknown:
        raise InvalidURL(f"unknown file store option(s): {', '.join(sorted(unknown))}")
    kwargs: dict[str, object] = {}
    if "fsync" in options:
        kwargs["fsync"] = options["fsync"]
    try:
        for key in ("max_event_bytes", "segment_bytes"):
            if key in options:
                kwargs[key] = int(options[key])
    except ValueError as exc:
        raise InvalidURL(f"file store option is not a number: {exc}") from exc
    return JsonlStore(Path(path).expanduser(), **kwargs)  # type: ignore[arg-type]
