"""The media library: what streaming may serve from MEDIA_ROOT/hls/<id>/, and how it finds it.

A request names an asset by video id and a name from a closed set (`master.m3u8`,
`thumbnail.jpg`, `<res>/index.m3u8`, `<res>/seg_NNNNN.ts`); the library turns it into a
regular file strictly inside the HLS root (symlinks are resolved first, so none can lead
out) or answers None. File metadata, and the bodies of the small playlists, are cached per
process for a short time so the hot path answers without a syscall on the event loop;
misses are resolved in a worker thread.

Segment and thumbnail bytes are kept in a per-process LRU bounded in bytes (`BodyCache`),
keyed by the file's strong validator (inode, mtime in ns, size): a file replaced by a
re-transcode has a new key, so a cached body is never stale. Sending from memory is what
makes the hot path fast: no read and no worker thread per request, the bytes go to the
socket as they are. A file that is not in memory is read when its bytes are asked for
and kept (`load_body`), so the cache fills with what is watched (its hits and misses are
counted by api.py: metrics.py).

Media playlists are served with a version appended to each segment URI
(`seg_00000.ts?v=<version>`): segments are cached by browsers as immutable, and a
re-transcode writes new segments under the same names, so the URI must change with them.

The contract names three renditions and the frontend offers all three for every video,
loading `<res>/index.m3u8` directly; the transcoder never upscales, so a small source has no
1080p (and while a film is still being encoded, higher rungs may not exist yet). Such a
request (for a rendition whose directory does not exist at all) gets a stand-in: the best
rendition the video has that is not above the one asked for (or, when there is none, the lowest it has), with segment URIs pointing into that
rendition (`../480p/seg_00000.ts?v=...`), so the menu never dead-ends. The master playlist
is served as written: it lists only what exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import os
import re
import stat
import time
from collections import OrderedDict
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

RESOLUTIONS = ("480p", "720p", "1080p")
SEGMENT_NAME = re.compile(r"seg_[0-9]{5}\.ts")
SEGMENT_URI_LINE = re.compile(rb"^seg_[0-9]{5}\.ts(?=\r?$)", re.MULTILINE)
SEGMENT_URI_START = re.compile(rb"^(?=seg_[0-9]{5}\.ts)", re.MULTILINE)
# A playlist is a few KB; anything far larger is not one the transcoder wrote.
MAX_PLAYLIST_BYTES = 4 * 1024 * 1024
CACHE_MAX_ENTRIES = 4096


class AssetKind(enum.Enum):
    MASTER_PLAYLIST = "master"
    MEDIA_PLAYLIST = "playlist"
    SEGMENT = "segment"
    THUMBNAIL = "thumbnail"


@dataclass(frozen=True, slots=True)
class MediaFile:
    """One servable file: where it is and what a response about it needs to say."""

    kind: AssetKind
    path: str  # resolved path inside the HLS root
    size: int
    mtime: int  # whole seconds, for If-Modified-Since
    etag: str  # strong validator, quoted
    last_modified: str  # HTTP date
    body: bytes | None = None  # playlists are served from memory, everything else from disk


def asset_kind(asset: str) -> AssetKind | None:
    """The kind of a relative asset name, or None when it is not one streaming serves."""
    if asset == "master.m3u8":
        return AssetKind.MASTER_PLAYLIST
    if asset == "thumbnail.jpg":
        return AssetKind.THUMBNAIL
    resolution, slash, name = asset.partition("/")
    if not slash or resolution not in RESOLUTIONS:
        return None
    if name == "index.m3u8":
        return AssetKind.MEDIA_PLAYLIST
    if SEGMENT_NAME.fullmatch(name):
        return AssetKind.SEGMENT
    return None


def stand_in_order(asked: str) -> list[str]:
    """Renditions to try for a missing `asked`: lower ones best first, then higher ones."""
    index = RESOLUTIONS.index(asked)
    return [*reversed(RESOLUTIONS[:index]), *RESOLUTIONS[index + 1 :]]


def point_segments_into(playlist: bytes, resolution: str) -> bytes:
    """Segment URIs of a media playlist made relative to a sibling rendition's playlist."""
    return SEGMENT_URI_START.sub(b"../" + resolution.encode() + b"/", playlist)


def version_segment_uris(playlist: bytes, version: str) -> bytes:
    """Append `?v=<version>` to every segment URI line of a media playlist."""
    return SEGMENT_URI_LINE.sub(rb"\g<0>?v=" + version.encode(), playlist)


class BodyCache:
    """File bodies by strong validator, least recently used evicted first, bounded in bytes."""

    def __init__(self, *, max_bytes: int, max_file_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.max_file_bytes = min(max_file_bytes, max_bytes)
        self.size = 0
        self._bodies: OrderedDict[str, bytes] = OrderedDict()

    def get(self, etag: str) -> bytes | None:
        body = self._bodies.get(etag)
        if body is not None:
            self._bodies.move_to_end(etag)
        return body

    def admits(self, size: int) -> bool:
        return 0 < size <= self.max_file_bytes

    def put(self, etag: str, body: bytes) -> None:
        if not self.admits(len(body)) or etag in self._bodies:
            return
        while self.size + len(body) > self.max_bytes:
            _, evicted = self._bodies.popitem(last=False)
            self.size -= len(evicted)
        self._bodies[etag] = body
        self.size += len(body)

    def __len__(self) -> int:
        return len(self._bodies)


class MediaLibrary:
    def __init__(
        self,
        *,
        media_root: Path,
        cache_seconds: float,
        body_cache_bytes: int = 0,
        body_cache_max_file_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.hls_root = Path(media_root) / "hls"
        self.cache_seconds = cache_seconds
        self.bodies = BodyCache(
            max_bytes=body_cache_bytes, max_file_bytes=body_cache_max_file_bytes
        )
        self._cache: dict[tuple[int, str], tuple[float, MediaFile]] = {}

    def cached(self, *, video_id: int, asset: str) -> MediaFile | None:
        """The file found for this asset less than `cache_seconds` ago (no I/O: hot path)."""
        hit = self._cache.get((video_id, asset))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    async def find(self, *, video_id: int, asset: str) -> MediaFile | None:
        """The servable file of an asset of a video, or None if there is none (its bytes
        are read by whoever sends them: `body`, else `load_body`)."""
        found = self.cached(video_id=video_id, asset=asset)
        if found is not None:
            return found
        kind = asset_kind(asset)
        if kind is None or video_id < 1:
            return None
        found = await asyncio.to_thread(self._load, video_id, asset, kind)
        if found is None and kind is AssetKind.MEDIA_PLAYLIST:
            found = await asyncio.to_thread(self._load_stand_in, video_id, asset)
        if found is not None and self.cache_seconds > 0:
            self._cache.pop((video_id, asset), None)  # re-inserted last: order = age
            if len(self._cache) >= CACHE_MAX_ENTRIES:
                self._cache.pop(next(iter(self._cache)))  # oldest insertion first
            self._cache[(video_id, asset)] = (time.monotonic() + self.cache_seconds, found)
        return found

    def body(self, media: MediaFile) -> bytes | None:
        """The bytes of `media` if they are in memory (no I/O: hot path)."""
        return media.body if media.body is not None else self.bodies.get(media.etag)

    async def load_body(self, media: MediaFile) -> bytes | None:
        """The bytes of `media` read now in a worker thread, kept in the body cache when
        they fit; None if the file is no longer the one `media` describes."""
        body = await asyncio.to_thread(_read_if_unchanged, media)
        if body is not None:
            self.bodies.put(media.etag, body)
        return body

    async def prepare(self) -> None:
        """Create the HLS root if it is missing and we may (a fresh install has no video yet);
        on a read-only media volume this is the transcoder's job, so failure is fine."""

        def make_root() -> None:
            with contextlib.suppress(OSError):
                self.hls_root.mkdir(parents=True, exist_ok=True)

        await asyncio.to_thread(make_root)

    async def check(self) -> None:
        """Readiness: the media root is a readable directory."""
        root = self.hls_root.parent
        if not await asyncio.to_thread(os.access, root, os.R_OK | os.X_OK):
            raise RuntimeError(f"media root {root} is not a readable directory")

    def _load(self, video_id: int, asset: str, kind: AssetKind) -> MediaFile | None:
        """Blocking part of `find`: runs in a worker thread."""
        root = os.path.realpath(self.hls_root)
        path = os.path.realpath(os.path.join(root, str(video_id), asset))
        # Resolved first, then compared: a symlink anywhere on the way cannot lead outside.
        if os.path.commonpath([root, path]) != root or path == root:
            return None
        if kind in (AssetKind.MASTER_PLAYLIST, AssetKind.MEDIA_PLAYLIST):
            return self._load_playlist(path, kind)
        try:
            info = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return _media_file(kind, path, info)

    def _load_stand_in(self, video_id: int, asset: str) -> MediaFile | None:
        """The playlist of the rendition serving for a missing one (see the module doc)."""
        asked = asset.partition("/")[0]
        if os.path.lexists(os.path.join(self.hls_root, str(video_id), asked)):
            return None  # it exists but is not servable (planted, broken): no substitute
        for resolution in stand_in_order(asked):
            found = self._load(video_id, f"{resolution}/index.m3u8", AssetKind.MEDIA_PLAYLIST)
            if found is not None and found.body is not None:
                body = point_segments_into(found.body, resolution)
                return MediaFile(
                    kind=found.kind,
                    path=found.path,
                    size=len(body),
                    mtime=found.mtime,
                    # its own validator: the same file stands in with another body
                    etag=f'{found.etag[:-1]}-for-{asked}"',
                    last_modified=found.last_modified,
                    body=body,
                )
        return None

    def _load_playlist(self, path: str, kind: AssetKind) -> MediaFile | None:
        try:
            # O_NONBLOCK: opening a FIFO planted under a playlist name must not hang.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_PLAYLIST_BYTES:
                return None
            body = file.read(MAX_PLAYLIST_BYTES + 1)
        if kind is AssetKind.MEDIA_PLAYLIST:
            version = hashlib.blake2s(
                f"{info.st_ino}:{info.st_mtime_ns}:{info.st_size}".encode(), digest_size=6
            ).hexdigest()
            body = version_segment_uris(body, version)
        media = _media_file(kind, path, info)
        return MediaFile(
            kind=kind,
            path=path,
            size=len(body),
            mtime=media.mtime,
            etag=media.etag,
            last_modified=media.last_modified,
            body=body,
        )


def _read_if_unchanged(media: MediaFile) -> bytes | None:
    """The file's bytes if it is still the file `media` describes, else None (replaced or
    truncated meanwhile: the caller then sends from disk, or answers 404)."""
    # Plain os calls, no file object: this also runs for every segment request that
    # misses the body cache.
    try:
        fd = os.open(media.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or _etag(info) != media.etag:
            return None
        body = os.read(fd, media.size + 1)  # one byte more: a file that grew is not it
    finally:
        os.close(fd)
    return body if len(body) == media.size else None


def _etag(info: os.stat_result) -> str:
    # Inode and nanosecond mtime: a file renamed into place by a re-transcode always gets a
    # new validator, even with the same size within the same second.
    return f'"{info.st_ino:x}-{info.st_mtime_ns:x}-{info.st_size:x}"'


def _media_file(kind: AssetKind, path: str, info: os.stat_result) -> MediaFile:
    mtime = int(info.st_mtime)
    return MediaFile(
        kind=kind,
        path=path,
        size=info.st_size,
        mtime=mtime,
        etag=_etag(info),
        last_modified=formatdate(mtime, usegmt=True),
    )
