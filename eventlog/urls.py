"""Store URLs made safe to show: the password hidden wherever a URL is printed or logged.

Its own module because every backend needs it for its messages and `open_store` for its
errors: kept here, none of them imports another for it.
"""

from __future__ import annotations

import re


def redact_url(url: str) -> str:
    """The URL with any password replaced by `***` (safe to log or print).

    Also safe on text that merely contains a URL (an error message) and on passwords whose
    `/`, `?`, `#` or `@` were not percent-encoded: when an `@` follows the first of those
    characters, everything from `://` to the last `@` is hidden, host included if need be."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    tail = rest[len(netloc):]
    if "@" in netloc and "@" not in tail:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        shown = f"{user}:***@{hostport}" if has_password else f"***@{hostport}"
        return f"{scheme}://{shown}{tail}"
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
