"""Resumable uploads on disk, and the loop that removes abandoned upload bytes.

Each unfinished upload (tus, see tus.py) is two files in `MEDIA_ROOT/uploads/.tus/`: the
bytes received so far (`<id>.bin`) and a small JSON record (`<id>.json`: declared length,
the offset confirmed to the client, the validated metadata, expiry). The record is replaced
atomically and written only after the bytes it confirms are on disk, so a catalog killed at
any moment restarts with a record that never claims more than the data file holds; bytes
past the recorded offset (a chunk cut short by a crash) are cut off before the next chunk.

A chunk is written by one request at a time across all catalog processes: the writer holds
an exclusive `flock` on the data file (released by the kernel when a process dies), and a
second writer is refused at once (423, which tus clients retry).

The data file lives on the same filesystem as `uploads/<video_id>/`, so completing an upload
is a rename, never a copy. `sweep_abandoned_uploads` deletes what nobody will finish:
expired uploads, leftovers of a crash, and the `.incoming/*.part` files of single-request
uploads whose catalog died mid-upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from videoflix_catalog.uploads import INCOMING_DIR  # single-request uploads' temporary files
from videoflix_shared.events import utcnow

logger = logging.getLogger(__name__)

TUS_DIR = "uploads/.tus"
WRITE_BYTES = 1024 * 1024  # write a chunk to disk in pieces of about this size
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
CHECKSUM_ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "md5": hashlib.md5}


class UploadBusy(Exception):
    """Another request is writing to this upload right now."""


class ClientGone(Exception):
    """Raised by a chunk's body iterator when the client disconnected mid-body."""


class ChunkRefused(Exception):
    """A chunk that cannot be stored; the upload keeps the offset it had before it."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


@dataclass
class TusUpload:
    id: str
    length: int  # Upload-Length: the file's size, declared at creation
    offset: int  # bytes received and confirmed to the client
    fields: dict[str, str]  # title, description, category, publish_when_ready as sent
    filename: str
    owner_id: int
    created_at: datetime
    expires_at: datetime
    video_id: int | None = None  # set once the file became a video
    extra: dict[str, str] = field(default_factory=dict)  # other metadata (filetype, ...)

    @property
    def complete(self) -> bool:
        return self.offset == self.length

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at <= (now or utcnow())

    def to_json(self) -> str:
        data: dict[str, Any] = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["expires_at"] = self.expires_at.isoformat()
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> TusUpload:
        data = json.loads(text)
        data["created_at"] = datetime.fromisoformat(data["created_at"])
        data["expires_at"] = datetime.fromisoformat(data["expires_at"])
        return cls(**data)


@dataclass
class Checksum:
    """Upload-Checksum of one chunk: the algorithm and the digest the client computed."""

    algorithm: str
    digest: bytes

    def hasher(self) -> Any:
        return CHECKSUM_ALGORITHMS[self.algorithm]()


class TusStore:
    def __init__(self, media_root: Path) -> None:
        self.media_root = media_root
        self.root = media_root / TUS_DIR

    def data_path(self, upload_id: str) -> Path:
        return self.root / f"{upload_id}.bin"

    def record_path(self, upload_id: str) -> Path:
        return self.root / f"{upload_id}.json"

    def completion_path(self, upload_id: str) -> Path:
        """Where a complete upload's bytes are linked for `create_video` to rename into
        place; in `.incoming`, so the sweep removes it if catalog dies right then."""
        return self.media_root / INCOMING_DIR / f"tus-{upload_id}.part"

    # -- records -----------------------------------------------------------------------

    def create(
        self,
        *,
        length: int,
        fields: dict[str, str],
        filename: str,
        owner_id: int,
        expires_in: timedelta,
        extra: dict[str, str],
    ) -> TusUpload:
        self.root.mkdir(parents=True, exist_ok=True)
        now = utcnow()
        upload = TusUpload(
            id=uuid.uuid4().hex,
            length=length,
            offset=0,
            fields=fields,
            filename=filename,
            owner_id=owner_id,
            created_at=now,
            expires_at=now + expires_in,
            extra=extra,
        )
        self.data_path(upload.id).touch(exist_ok=False)
        self.save(upload)
        return upload

    def load(self, upload_id: str) -> TusUpload | None:
        if not _UPLOAD_ID.fullmatch(upload_id):
            return None
        try:
            return TusUpload.from_json(self.record_path(upload_id).read_text())
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError):
            logger.warning("unreadable tus record %s: treated as absent", upload_id)
            return None

    def save(self, upload: TusUpload) -> None:
        """Replace the record atomically (a crash leaves the old or the new one)."""
        path = self.record_path(upload.id)
        temp = path.with_suffix(f".json.{uuid.uuid4().hex[:8]}.tmp")
        temp.write_text(upload.to_json())
        os.replace(temp, path)

    def delete(self, upload_id: str) -> None:
        for path in (
            self.data_path(upload_id),
            self.record_path(upload_id),
            self.completion_path(upload_id),
        ):
            path.unlink(missing_ok=True)

    def uploads(self) -> list[TusUpload]:
        """Every readable record, oldest first."""
        if not self.root.is_dir():
            return []
        found = [self.load(p.stem) for p in self.root.glob("*.json")]
        return sorted((u for u in found if u is not None), key=lambda u: u.created_at)

    # -- writing -----------------------------------------------------------------------

    @contextlib.contextmanager
    def writer(self, upload_id: str) -> Iterator[int]:
        """The data file opened for writing under an exclusive lock (UploadBusy if another
        request holds it; FileNotFoundError if the upload is gone)."""
        fd = os.open(self.data_path(upload_id), os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UploadBusy(upload_id) from None
            yield fd
        finally:
            os.close(fd)  # releases the lock

    async def receive_chunk(
        self,
        upload: TusUpload,
        fd: int,
        chunks: AsyncIterator[bytes],
        *,
        checksum: Checksum | None,
    ) -> bool:
        """Append a request body at `upload.offset` and record the new offset.

        Returns False when the client went away mid-chunk (`chunks` raised ClientGone):
        what arrived is kept, unless a checksum was promised, which a partial chunk cannot
        meet. ChunkRefused for a chunk past the declared length or failing its checksum.
        On any failure the record keeps the old offset; bytes written past it are cut off
        before the next chunk.
        """
        start = upload.offset
        await asyncio.to_thread(os.ftruncate, fd, start)  # a crashed chunk's tail
        sink = _ChunkSink(fd, start, checksum)
        try:
            async for piece in chunks:
                if start + sink.received + len(piece) > upload.length:
                    raise ChunkRefused(413, "The chunk goes past the declared Upload-Length.")
                await sink.add(piece)
        except ClientGone:
            finished = False
        else:
            finished = True
        await sink.flush_durably()
        if checksum is not None and not (finished and sink.matches()):
            await asyncio.to_thread(os.ftruncate, fd, start)
            if finished:
                raise ChunkRefused(
                    460, f"The chunk does not match its {checksum.algorithm} checksum."
                )
            return False
        upload.offset = start + sink.received
        self.save(upload)
        return finished


class _ChunkSink:
    """Buffers a chunk's pieces into writes of about WRITE_BYTES at the right offset,
    hashing them when a checksum is to be checked (in the writer thread, off the loop)."""

    def __init__(self, fd: int, start: int, checksum: Checksum | None) -> None:
        self.fd = fd
        self.position = start
        self.received = 0
        self.buffer = bytearray()
        self.checksum = checksum
        self.hash = checksum.hasher() if checksum else None

    async def add(self, piece: bytes) -> None:
        self.buffer.extend(piece)
        self.received += len(piece)
        if len(self.buffer) >= WRITE_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        data = bytes(self.buffer)
        self.buffer.clear()
        await asyncio.to_thread(self._write, data)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, self.position)
            self.position += written
            view = view[written:]
        if self.hash is not None:
            self.hash.update(data)

    async def flush_durably(self) -> None:
        """Write what is buffered and wait until it is on disk: the offset confirmed to
        the client must survive a crash of the machine, not only of catalog."""
        if self.buffer:
            await self._flush()
        await asyncio.to_thread(os.fdatasync, self.fd)

    def matches(self) -> bool:
        assert self.checksum is not None
        assert self.hash is not None
        return bool(self.hash.digest() == self.checksum.digest)


# -- the cleanup loop ------------------------------------------------------------------


@dataclass
class SweepResult:
    expired: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)


def sweep_abandoned_uploads(
    store: TusStore, *, grace: timedelta, now: datetime | None = None
) -> SweepResult:
    """Delete expired unfinished uploads (and the records of finished ones past their
    expiry), data files without a record, and temporary upload files not written to for
    `grace` (a single-request upload or a completion whose catalog died)."""
    now = now or utcnow()
    result = SweepResult()
    for upload in store.uploads():
        if upload.expired(now) and _remove_unless_busy(store, upload.id):
            result.expired.append(upload.id)
    stale_before = time.time() - grace.total_seconds()
    candidates = [
        *(store.root.glob("*.bin") if store.root.is_dir() else ()),
        *(store.root.glob("*.tmp") if store.root.is_dir() else ()),
        *(
            (store.media_root / INCOMING_DIR).glob("*.part")
            if (store.media_root / INCOMING_DIR).is_dir()
            else ()
        ),
    ]
    for path in candidates:
        if path.suffix == ".bin" and store.record_path(path.stem).exists():
            continue
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < stale_before:
                path.unlink()
                result.leftovers.append(str(path.relative_to(store.media_root)))
    if result.expired or result.leftovers:
        logger.info(
            "upload sweep: expired %s, leftovers removed %s", result.expired, result.leftovers
        )
    return result


def _remove_unless_busy(store: TusStore, upload_id: str) -> bool:
    try:
        with store.writer(upload_id):
            upload = store.load(upload_id)  # re-read under the lock: a chunk may have landed
            if upload is not None and not upload.expired():
                return False
            store.delete(upload_id)
            return True
    except UploadBusy:
        return False
    except FileNotFoundError:  # a finished upload: only its record is left
        store.record_path(upload_id).unlink(missing_ok=True)
        return True


async def run_upload_sweeper(
    store: TusStore, *, interval_seconds: float, grace: timedelta, stop: asyncio.Event
) -> None:
    """The cleanup loop of the lifespan: a sweep every `interval_seconds` until `stop`."""
    while not stop.is_set():
        try:
            await asyncio.to_thread(sweep_abandoned_uploads, store, grace=grace)
        except Exception:  # a failing sweep must not end the loop; the next one retries
            logger.exception("upload sweep failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_seconds)
