"""Catalog's Prometheus metrics: how long an upload takes to play, and to be complete.

- `videoflix_upload_to_playable_seconds`: from the upload (the video recorded, its
  `catalog.video.uploaded`) to the transcoder's event that first made it playable (a
  clip's `transcoder.video.completed`, a film's first `transcoder.video.rendition_ready`),
  by that event's `occurred_at`: the transcoder's clock, not when catalog applied it;
- `videoflix_upload_to_ready_seconds`: from the upload to `transcoder.video.completed`
  (every rendition there).

Observed once per video, when the event first changes it. The stuck-job sweeper's retries
are part of the same upload; an admin's re-transcode is no upload and is not measured.
"""

from __future__ import annotations

from prometheus_client import Histogram

# Seconds: a short clip plays within seconds, a two-hour film is complete within hours.
UPLOAD_BUCKETS = (5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800)

UPLOAD_TO_PLAYABLE = Histogram(
    "videoflix_upload_to_playable_seconds",
    "From an upload to the transcoder's event that first made the video playable",
    buckets=UPLOAD_BUCKETS,
)
UPLOAD_TO_READY = Histogram(
    "videoflix_upload_to_ready_seconds",
    "From an upload to the transcoder's event that completed every rendition",
    buckets=UPLOAD_BUCKETS,
)
