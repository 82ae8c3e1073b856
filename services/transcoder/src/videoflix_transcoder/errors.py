"""Why a transcode did not succeed, and whether trying again can help.

Also the admin-readable gist of ffmpeg's and ffprobe's stderr, which both ffmpeg.py and
probe.py put into their failures (it lives here so neither has to import the other).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SUMMARY_MAX_CHARS = 400


class TranscodeError(Exception):
    """A transcode step failed; `reason` is written for an admin, not a developer.

    `permanent` failures (the upload itself is unusable) are never retried; the others
    (ffmpeg killed, timeout, disk full, ...) are retried with backoff.
    """

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


def invalid_source(reason: str) -> TranscodeError:
    return TranscodeError(reason, permanent=True)


def transient(reason: str) -> TranscodeError:
    return TranscodeError(reason, permanent=False)


_ADDRESS = re.compile(r"\s*@ 0x[0-9a-f]+")
_BORING = ("Conversion failed!", "Exiting normally", "Press [q]")


def summarize_ffmpeg_errors(lines: Iterable[str]) -> str:
    """The gist of ffmpeg's stderr for an admin: distinct lines, no pointers, bounded."""
    seen: list[str] = []
    for line in lines:
        cleaned = _ADDRESS.sub("", line).strip()
        if cleaned and not cleaned.startswith(_BORING) and cleaned not in seen:
            seen.append(cleaned)
    if not seen:
        return "no error message"
    summary = "; ".join(seen[-4:])
    if len(summary) > SUMMARY_MAX_CHARS:
        summary = "…" + summary[-SUMMARY_MAX_CHARS:]
    return summary
