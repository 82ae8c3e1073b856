"""The admin page's "Transcoding" panel: catalog asks the transcoder's dispatcher for its
read-only job list (`GET /jobs` on the dispatcher's internal health port,
CATALOG_TRANSCODER_JOBS_URL; the model is videoflix_shared.transcode_jobs) and passes it on
to admins. Services meet through HTTP and events only: catalog never reads the
transcoder's Redis keys. While the dispatcher cannot be reached, or answers with anything
but a job list, the panel gets a 503 that says so instead of a stale or invented list.
"""

from __future__ import annotations

import httpx
from pydantic import ValidationError

from videoflix_shared.errors import Unavailable
from videoflix_shared.transcode_jobs import TranscodeJobs

TIMEOUT_SECONDS = 3.0
RETRY_AFTER_SECONDS = 5


class TranscoderJobs:
    def __init__(self, url: str, http: httpx.AsyncClient) -> None:
        self.url = url
        self.http = http

    @classmethod
    def open(cls, url: str) -> TranscoderJobs:
        return cls(url, httpx.AsyncClient(timeout=TIMEOUT_SECONDS))

    async def close(self) -> None:
        await self.http.aclose()

    async def fetch(self) -> TranscodeJobs:
        try:
            response = await self.http.get(self.url)
        except httpx.HTTPError as exc:
            raise self._unavailable(f"cannot be reached ({type(exc).__name__})") from exc
        if response.status_code != 200:
            raise self._unavailable(f"answered {response.status_code}")
        try:
            return TranscodeJobs.model_validate_json(response.content)
        except ValidationError as exc:
            raise self._unavailable("answered with something that is not a job list") from exc

    @staticmethod
    def _unavailable(what: str) -> Unavailable:
        return Unavailable(
            f"The transcoder's job list is unavailable: the dispatcher {what}. "
            "Transcoding itself goes on; try again shortly.",
            retry_after=RETRY_AFTER_SECONDS,
        )
