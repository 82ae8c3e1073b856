"""Streaming service settings (shared ones come from CommonSettings)."""

from __future__ import annotations

from pydantic import Field

from videoflix_shared.settings import CommonSettings


class StreamingSettings(CommonSettings):
    http_port: int = Field(8003, alias="HTTP_PORT")
    # Server processes of `videoflix-streaming serve` (Granian workers).
    workers: int = Field(2, ge=1, alias="STREAMING_WORKERS")
    # How long file metadata (and playlist bodies) stay cached in each process. The hot path
    # answers from this cache without touching the disk on the event loop; a re-transcoded or
    # deleted video is noticed at most this many seconds later. 0 disables the cache.
    file_cache_seconds: float = Field(1.0, ge=0, alias="STREAMING_FILE_CACHE_SECONDS")
    # max-age of the public thumbnail (revalidated with its ETag afterwards).
    thumbnail_max_age: int = Field(300, ge=0, alias="STREAMING_THUMBNAIL_MAX_AGE")
