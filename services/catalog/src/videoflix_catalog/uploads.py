"""Receiving an upload: a multipart/form-data body streamed straight into the media volume.

Starlette's `request.form()` spools files to a temporary file and would make us copy them
again; here python-multipart's streaming parser feeds the file part in bounded chunks to a
temporary file next to its final place (same filesystem, so the final move is a rename).
Memory stays constant whatever the size. The size cap is enforced while reading, every
failure removes the partial file, and `probe_video` asks ffprobe whether it is a video.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header

from videoflix_shared.text import UNSTORABLE_TEXT, is_storable

FILE_FIELD = "file"
MAX_FIELD_BYTES = 64 * 1024  # title, description, category: small text fields
MAX_PARTS = 20
FLUSH_BYTES = 1024 * 1024  # write the file in chunks of about this size
INCOMING_DIR = "uploads/.incoming"


class UploadRejected(Exception):
    """The upload is unacceptable; `errors` is the JSON body, `status_code` the 4xx."""

    def __init__(self, status_code: int, errors: dict[str, object]) -> None:
        super().__init__(errors)
        self.status_code = status_code
        self.errors = errors


def rejected(status_code: int, detail: str, field_name: str | None = None) -> UploadRejected:
    return UploadRejected(status_code, {field_name: [detail]} if field_name else {"detail": detail})


@dataclass
class ReceivedUpload:
    fields: dict[str, str]
    temp_path: Path  # absolute, inside MEDIA_ROOT/uploads/.incoming
    filename: str
    size: int

    @property
    def extension(self) -> str:
        """A safe extension for `source.<ext>` from the client's file name."""
        suffix = Path(self.filename).suffix.lower().lstrip(".")
        return suffix if re.fullmatch(r"[a-z0-9]{1,8}", suffix) else "bin"

    def discard(self) -> None:
        self.temp_path.unlink(missing_ok=True)


@dataclass
class _Part:
    headers: dict[str, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)


FileStartHook = Callable[[dict[str, str]], Awaitable[None]]


async def receive_upload(
    chunks: AsyncIterator[bytes],
    *,
    content_type: str | None,
    media_root: Path,
    max_bytes: int,
    on_file_start: FileStartHook | None = None,
) -> ReceivedUpload:
    """Parse a multipart body with one `file` part and small text fields.

    `on_file_start(fields)` runs before the first byte of the file is written, with the text
    fields sent so far, so bad metadata sent ahead of the file is refused without reading it.
    """
    mime, params = parse_options_header(content_type or "")
    if mime != b"multipart/form-data":
        raise rejected(415, "Send the upload as multipart/form-data.")
    boundary = params.get(b"boundary")
    if not boundary:
        raise rejected(400, "The multipart boundary is missing from Content-Type.")

    incoming = media_root / INCOMING_DIR
    incoming.mkdir(parents=True, exist_ok=True)
    temp_path = incoming / f"{uuid.uuid4().hex}.part"

    fields: dict[str, str] = {}
    parts_seen = 0
    current = _Part()
    header_field = bytearray()
    header_value = bytearray()
    # The parser's callbacks are synchronous: they record what happened, and the loop below
    # does the awaiting (hooks, file writes) after each chunk.
    in_file_part = False
    file_seen = False
    filename = ""
    file_buffer = bytearray()
    size = 0
    ended = False
    errors: list[UploadRejected] = []
    pending_file_start = False

    def on_part_begin() -> None:
        nonlocal current, parts_seen
        parts_seen += 1
        current = _Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        current.headers[header_field.decode("latin-1").lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        nonlocal pending_file_start, in_file_part, file_seen, filename
        disposition, options = parse_options_header(current.headers.get("content-disposition"))
        current.name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        current.filename = None if raw_filename is None else raw_filename.decode("utf-8", "replace")
        if disposition != b"form-data" or not current.name:
            errors.append(rejected(400, "Every multipart part needs a form-data name."))
        elif current.name == FILE_FIELD:
            if file_seen or current.filename is None:
                errors.append(rejected(400, "Send exactly one file in the field 'file'.", "file"))
            else:
                file_seen = in_file_part = pending_file_start = True
                filename = current.filename
        elif current.name in fields:
            errors.append(rejected(400, "This field was sent twice.", current.name))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        nonlocal size
        if in_file_part:
            size += end - start
            file_buffer.extend(data[start:end])
        elif len(current.data) + end - start > MAX_FIELD_BYTES:
            errors.append(rejected(400, "This field is too long.", current.name))
        else:
            current.data.extend(data[start:end])

    def on_part_end() -> None:
        nonlocal in_file_part
        if in_file_part:
            in_file_part = False
            return
        try:
            text = current.data.decode("utf-8")
        except UnicodeDecodeError:
            errors.append(rejected(400, "Text fields must be UTF-8.", current.name))
            return
        if is_storable(text):
            fields[current.name] = text
        else:
            errors.append(rejected(400, UNSTORABLE_TEXT, current.name))

    def on_end() -> None:
        nonlocal ended
        ended = True

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_end": on_end,
        },
    )

    file_handle = None
    try:
        async for chunk in chunks:
            try:
                parser.write(chunk)
            except Exception as exc:  # python-multipart raises its own errors on bad input
                raise rejected(400, f"Malformed multipart body: {exc}") from exc
            if errors:
                raise errors[0]
            if parts_seen > MAX_PARTS:
                raise rejected(400, f"Too many form fields (at most {MAX_PARTS}).")
            if size > max_bytes:
                raise _too_large(max_bytes)
            if pending_file_start:
                pending_file_start = False
                if on_file_start is not None:
                    await on_file_start(dict(fields))
                file_handle = await asyncio.to_thread(open, temp_path, "xb")
            if file_handle is not None and (
                len(file_buffer) >= FLUSH_BYTES or (file_buffer and not in_file_part)
            ):
                await asyncio.to_thread(file_handle.write, bytes(file_buffer))
                file_buffer.clear()
            if ended:
                break
        if not ended:
            raise rejected(400, "The upload ended before the multipart body was complete.")
        if file_handle is None:
            raise rejected(400, "No file was uploaded.", "file")
        await asyncio.to_thread(file_handle.close)
        file_handle = None
        if size == 0:
            raise rejected(400, "The uploaded file is empty.", "file")
        return ReceivedUpload(fields=fields, temp_path=temp_path, filename=filename, size=size)
    except BaseException:
        if file_handle is not None:
            with contextlib.suppress(OSError):
                file_handle.close()
        temp_path.unlink(missing_ok=True)
        raise


def _too_large(max_bytes: int) -> UploadRejected:
    return rejected(413, f"The file is larger than the maximum upload size of {max_bytes} bytes.")


@dataclass(frozen=True)
class ProbeResult:
    width: int
    height: int
    duration_seconds: float | None
    format_name: str


# ffprobe reports still images as one-frame "video" streams in these formats.
_IMAGE_FORMATS = re.compile(r"(^|,)(image2|[a-z0-9]+_pipe|apng|gif|webp)(,|$)")


async def probe_video(path: Path, *, ffprobe_bin: str, timeout: float) -> ProbeResult:
    """Ask ffprobe what `path` is; UploadRejected(415) unless it holds a video stream."""
    process = await asyncio.create_subprocess_exec(
        ffprobe_bin,
        "-v",
        "error",
        "-select_streams",
        "V",
        "-show_entries",
        "stream=width,height:format=format_name,duration",
        "-of",
        "json",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LC_ALL": "C"},
    )
    try:
        stdout, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise rejected(
            415, "The file could not be read as a video (probing timed out).", "file"
        ) from None
    unreadable = rejected(
        415, "The file is not a video that can be processed (no readable video stream).", "file"
    )
    if process.returncode != 0:
        raise unreadable
    try:
        info = json.loads(stdout or b"{}")
    except ValueError:
        raise unreadable from None
    streams = [
        s for s in info.get("streams", []) if s.get("width", 0) > 0 and s.get("height", 0) > 0
    ]
    format_name = str(info.get("format", {}).get("format_name", ""))
    if not streams:
        raise unreadable
    if _IMAGE_FORMATS.search(format_name):
        raise rejected(415, "The file is a still image, not a video.", "file")
    try:
        duration = float(info["format"]["duration"])
    except (KeyError, TypeError, ValueError):
        duration = None
    return ProbeResult(
        width=int(streams[0]["width"]),
        height=int(streams[0]["height"]),
        duration_seconds=duration,
        format_name=format_name,
    )
