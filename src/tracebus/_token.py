"""The shared token of a listener reachable from other hosts, defined once.

``tracebus serve --tcp`` and ``tracebus watch`` follow the same rules: a loopback address
needs no token; any other needs one, read from a file (never from the command line, where
``ps`` shows it); a token presented is compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP address) names this machine's loopback only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_token(host: str, token: str | None) -> None:
    """Refuse to listen on ``host`` without a token unless it is loopback.

    Raises ValueError naming the host and the option that gives a token.
    """
    if not token and not is_loopback(host):
        raise ValueError(f"listening on {host} (not loopback) needs a token: use --token-file")


def read_token_file(path: str | os.PathLike[str] | None) -> str | None:
    """The token held by the file at ``path`` (surrounding whitespace stripped), or None
    when no file is given.

    Raises ValueError when the file holds only whitespace, OSError when it cannot be read.
    """
    if path is None:
        return None
    token = Path(path).read_text(encoding="utf-8").strip()
    if not token:
        raise ValueError(f"the token file {path} is empty")
    return token


def token_matches(presented: str | None, token: str) -> bool:
    """Whether ``presented`` is ``token``, compared in constant time."""
    return hmac.compare_digest((presented or "").encode(), token.encode())
