"""Output hashes compatible with the traces the seed observer wrote."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def hash_output(data: Any) -> str:
    """First 16 hex characters of SHA-256 over sort-keyed JSON (a dict) or ``str(data)``.

    A dict that JSON cannot encode (where the seed raised TypeError) is hashed by ``str``;
    text holding a lone surrogate (where the seed raised UnicodeEncodeError) by its code
    points as they are (``surrogatepass``), so every value has a hash.
    """
    text = str(data)
    if isinstance(data, dict):
        try:
            text = json.dumps(data, sort_keys=True)
        except (TypeError, ValueError):
            pass
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
