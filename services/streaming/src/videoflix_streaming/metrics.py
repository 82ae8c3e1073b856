"""Streaming's Prometheus metrics (beside the shared HTTP ones, which inline_middleware.py
records for the HLS routes).

- `videoflix_streaming_sent_bytes_total{kind}`: body bytes of media responses (200 and 206)
  sent, by what they are: `playlist` (master and media playlists), `segment`, `thumbnail`.
  HEAD, 304 and error answers send none.
- `videoflix_streaming_body_cache_lookups_total{kind, result}`: the body cache (service.py's
  `BodyCache`, per process): for every GET that sends bytes of a segment or a thumbnail, a
  `hit` when they were in memory, a `miss` when they were read from the file for it.
  Playlists are left out: their bytes always come with their metadata. The hit ratio is
  `hit / (hit + miss)` over a window (the recording rule
  `videoflix:streaming_body_cache_hit:ratio_rate5m`). It is not the browsers' cache:
  conditional requests answered 304 count in `http_requests_total{status="304"}`.
- `videoflix_streaming_body_cache_bytes`: bytes the body caches hold, all running worker
  processes together.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from videoflix_streaming.service import AssetKind

SENT_BYTES = Counter(
    "videoflix_streaming_sent_bytes_total", "Body bytes of media responses sent", ["kind"]
)
BODY_CACHE_LOOKUPS = Counter(
    "videoflix_streaming_body_cache_lookups_total",
    "Segment and thumbnail bodies sent, by whether the body cache had them",
    ["kind", "result"],
)
BODY_CACHE_BYTES = Gauge(
    "videoflix_streaming_body_cache_bytes",
    "Bytes held by the body caches of the running worker processes",
    multiprocess_mode="livesum",  # each process has its own cache
)

KIND_LABELS = {
    AssetKind.MASTER_PLAYLIST: "playlist",
    AssetKind.MEDIA_PLAYLIST: "playlist",
    AssetKind.SEGMENT: "segment",
    AssetKind.THUMBNAIL: "thumbnail",
}
CACHED_KINDS = (AssetKind.SEGMENT, AssetKind.THUMBNAIL)

# The children, made once (the hot path only increments), and every series from the start.
SENT_BYTES_BY_KIND = {kind: SENT_BYTES.labels(label) for kind, label in KIND_LABELS.items()}
CACHE_HITS = {kind: BODY_CACHE_LOOKUPS.labels(KIND_LABELS[kind], "hit") for kind in CACHED_KINDS}
CACHE_MISSES = {kind: BODY_CACHE_LOOKUPS.labels(KIND_LABELS[kind], "miss") for kind in CACHED_KINDS}
