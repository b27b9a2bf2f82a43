"""The backends of the EventStore port: memory, file (JSONL), Redis, fallback, encryption.

Each module is one backend (or one part of the Redis one); `eventlog.open_store` picks one
from a URL. They import the core (`eventlog.store`, `codec`, `events`, ...) and never
`eventlog.open` or each other's package-level names, so the package has no import circle.
"""
