"""The HTTP rules streaming applies to a request's headers (RFC 9110): byte ranges,
validators (If-None-Match, If-Modified-Since, If-Range) and cookies.

Pure functions of header values: no ASGI, no I/O, no knowledge of media files, so each rule
is tested on its own and the endpoint (api.py) only decides what to do with the answers.
"""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime

# One range-spec of a Range header (RFC 9110 14.1.1): ASCII digits only ([0-9], not \d,
# which also matches other scripts' digits); spaces and tabs around the dash are tolerated.
RANGE_SPEC = re.compile(r"([0-9]*)[ \t]*-[ \t]*([0-9]*)")
OWS = " \t"


class RangeNotSatisfiable(Exception):
    pass


def parse_byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte of a single `bytes=` range, or None to ignore it.

    RFC 9110 14.2 lets a server ignore any Range it does not want to serve, so anything
    but one well-formed byte range (other units, several ranges, first > last, non-ASCII
    digits, stray characters) is ignored and the whole file goes out with 200. A
    well-formed range that cannot be satisfied (it starts at or beyond the end, or asks
    for an empty suffix) raises RangeNotSatisfiable (416). Numbers are compared by their
    digits before any int() conversion, so a position of thousands of digits is just
    "beyond any file" and never reaches Python's 4300-digit conversion limit.
    """
    spec = _single_byte_range_spec(header)
    if spec is None:
        return None
    # Leading zeros count towards int()'s digit limit too: drop them (an empty part
    # stays empty, "000" becomes "0").
    first, last = _significant(spec[0]), _significant(spec[1])
    if not first:
        return _suffix_range(last, size)
    if last and _compare(first, last) > 0:
        return None  # invalid (first > last): ignored, not unsatisfiable
    if _compare(first, str(size)) >= 0:
        raise RangeNotSatisfiable
    start = int(first)  # now smaller than `size`: a short number
    if not last or _compare(last, str(size)) >= 0:
        return start, size - 1
    return start, int(last)


def _single_byte_range_spec(header: str) -> tuple[str, str] | None:
    """The (first, last) digit strings of a `bytes=` header naming exactly one range, at
    least one of them non-empty; None for anything else."""
    unit, equals, range_set = header.partition("=")
    if not equals or unit.strip(OWS).lower() != "bytes":
        return None
    # A list: empty elements are allowed and ignored (RFC 9110 5.6.1.2).
    specs = [spec for spec in (part.strip(OWS) for part in range_set.split(",")) if spec]
    if len(specs) != 1:
        return None
    match = RANGE_SPEC.fullmatch(specs[0])
    if match is None or not (match[1] or match[2]):
        return None
    return match[1], match[2]


def _suffix_range(digits: str, size: int) -> tuple[int, int]:
    """`bytes=-N`: the last N bytes (all of them when N is larger than the file)."""
    if digits == "0" or size == 0:
        raise RangeNotSatisfiable
    if _compare(digits, str(size)) >= 0:
        return 0, size - 1
    return size - int(digits), size - 1


def _significant(digits: str) -> str:
    return digits and (digits.lstrip("0") or "0")


def _compare(a: str, b: str) -> int:
    """Compare two ASCII digit strings without leading zeros as numbers (-1, 0 or 1)."""
    key_a, key_b = (len(a), a), (len(b), b)
    return (key_a > key_b) - (key_a < key_b)


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Weak comparison of an If-None-Match list with our ETag (RFC 9110 13.1.2)."""
    if if_none_match.strip() == "*":
        return True
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False


def not_modified(
    *, if_none_match: str | None, if_modified_since: str | None, etag: str, mtime: int
) -> bool:
    """Whether the client's copy is current (304). If-None-Match wins over
    If-Modified-Since (RFC 9110 13.1.3); an unreadable date counts as no condition."""
    if if_none_match is not None:
        return etag_matches(if_none_match, etag)
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return False
    return mtime <= since


def range_applies(if_range: str | None, *, etag: str, last_modified: str) -> bool:
    """If-Range: serve the range only if the client's copy is still the current one."""
    if if_range is None:
        return True
    if_range = if_range.strip()
    return if_range in (etag, last_modified)


def cookie_value(cookie_header: str, name: str) -> str | None:
    """The value of cookie `name` in a Cookie header (the first one), or None."""
    for chunk in cookie_header.split(";"):
        key, equals, value = chunk.partition("=")
        if equals and key.strip() == name:
            return value.strip() or None
    return None
