"""Streaming service settings (shared ones come from CommonSettings)."""

from __future__ import annotations

from pydantic import Field

from videoflix_shared.settings import CommonSettings


class StreamingSettings(CommonSettings):
    http_port: int = Field(8003, alias="HTTP_PORT")
    # Server processes of `videoflix-streaming serve` (uvicorn workers).
    workers: int = Field(2, ge=1, alias="STREAMING_WORKERS")
    # How long file metadata (and playlist bodies) stay cached in each process. The hot path
    # answers from this cache without touching the disk on the event loop; a re-transcoded or
    # deleted video is noticed at most this many seconds later. 0 disables the cache.
    file_cache_seconds: float = Field(1.0, ge=0, alias="STREAMING_FILE_CACHE_SECONDS")
    # Segment and thumbnail bytes kept in memory by each process (least recently used go
    # first), so popular segments are sent without reading the disk; 0 sends every one
    # from disk. Files larger than the per-file limit are always sent from disk.
    body_cache_mb: int = Field(128, ge=0, alias="STREAMING_BODY_CACHE_MB")
    body_cache_max_file_mb: int = Field(16, ge=1, alias="STREAMING_BODY_CACHE_MAX_FILE_MB")
    # max-age of the public thumbnail (revalidated with its ETag afterwards).
    thumbnail_max_age: int = Field(300, ge=0, alias="STREAMING_THUMBNAIL_MAX_AGE")
