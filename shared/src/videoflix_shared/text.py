"""Which client text can be stored: the one rule every service applies to every text input.

PostgreSQL's text type cannot hold NUL, and a lone UTF-16 surrogate (`"\\ud800"` in JSON)
cannot be encoded as UTF-8 at all: either reaches the database driver as an exception, i.e. a
500. JSON bodies, query strings, paths and form fields are checked once, at the edge (the app
factory's `UnstorableTextMiddleware`, the upload parser), so no field can forget it.
"""

from __future__ import annotations

import re
from typing import Any

UNSTORABLE_TEXT = "Text must not contain NUL characters or unpaired UTF-16 surrogates."

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def is_storable(text: str) -> bool:
    """True when `text` has no NUL and no lone surrogate (paired ones never reach a str)."""
    return _UNSTORABLE.search(text) is None


def contains_unstorable(value: Any) -> bool:
    """True when any string in decoded JSON (keys included, at any depth) cannot be stored."""
    if isinstance(value, str):
        return not is_storable(value)
    if isinstance(value, dict):
        return any(contains_unstorable(k) or contains_unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_unstorable(item) for item in value)
    return False


def unstorable_text_errors(body: Any) -> dict[str, Any] | None:
    """Field errors naming the top-level field that holds unstorable text, or None."""
    if not contains_unstorable(body):
        return None
    if isinstance(body, dict):
        for key, item in body.items():
            if is_storable(key) and contains_unstorable(item):
                return {key: [UNSTORABLE_TEXT]}
    return {"detail": UNSTORABLE_TEXT}
