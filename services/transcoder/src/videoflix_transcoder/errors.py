"""Why a transcode did not succeed, and whether trying again can help."""

from __future__ import annotations


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
