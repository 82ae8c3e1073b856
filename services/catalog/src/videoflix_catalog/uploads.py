"""Receiving a single-request upload: a multipart/form-data body streamed straight into the
media volume.

Starlette's `request.form()` spools files to a temporary file and would make us copy them
again; here `MultipartUploadReader` feeds python-multipart's streaming parser chunk by chunk
and writes the file part, in bounded pieces, to a temporary file next to its final place
(same filesystem, so the final move is a rename). Memory stays constant whatever the size.
The size cap is enforced while reading and every failure removes the partial file. What
happens to a complete upload (metadata, ffprobe, the video record) is the service's
`record_upload`, shared with resumable uploads.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from io import BufferedWriter
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header

from videoflix_catalog.service import StagedSource, safe_extension
from videoflix_shared.errors import DomainError, InvalidInput, TooLarge, Unsupported
from videoflix_shared.text import UNSTORABLE_TEXT, is_storable

FILE_FIELD = "file"
MAX_FIELD_BYTES = 64 * 1024  # title, description, category: small text fields
MAX_PARTS = 20
FLUSH_BYTES = 1024 * 1024  # write the file in chunks of about this size
INCOMING_DIR = "uploads/.incoming"
# Multipart framing (boundaries, part headers, small fields) allowed beyond the file size.
FRAMING_ALLOWANCE = 1024 * 1024

FileStartHook = Callable[[dict[str, str]], Awaitable[None]]


@dataclass
class ReceivedUpload:
    fields: dict[str, str]
    source: StagedSource  # inside MEDIA_ROOT/uploads/.incoming until recorded
    filename: str

    def discard(self) -> None:
        """Remove the staged file (a no-op once it was renamed into place)."""
        self.source.path.unlink(missing_ok=True)


def too_large(max_bytes: int) -> TooLarge:
    return TooLarge(f"The file is larger than the maximum upload size of {max_bytes} bytes.")


def check_declared_length(content_length: str | None, *, max_bytes: int) -> None:
    """Refuse a body whose declared length cannot fit, before reading any of it."""
    declared = int(content_length) if content_length and content_length.isdigit() else 0
    if declared > max_bytes + FRAMING_ALLOWANCE:
        raise too_large(max_bytes)


def multipart_boundary(content_type: str | None) -> bytes:
    mime, params = parse_options_header(content_type or "")
    if mime != b"multipart/form-data":
        raise Unsupported("Send the upload as multipart/form-data.")
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidInput("The multipart boundary is missing from Content-Type.")
    return boundary


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
    boundary = multipart_boundary(content_type)
    incoming = media_root / INCOMING_DIR
    incoming.mkdir(parents=True, exist_ok=True)
    reader = MultipartUploadReader(
        boundary,
        temp_path=incoming / f"{uuid.uuid4().hex}.part",
        max_bytes=max_bytes,
        on_file_start=on_file_start,
    )
    return await reader.read(chunks)


class ReadState(enum.Enum):
    """Where the reader is in the body."""

    BETWEEN_PARTS = enum.auto()  # before the first part, or in a part's headers
    IN_FIELD = enum.auto()  # a small text field: kept in memory, capped
    IN_FILE = enum.auto()  # the file part: its bytes go to the temporary file
    COMPLETE = enum.auto()  # the closing boundary was read


class MultipartUploadReader:
    """One multipart/form-data upload body, read chunk by chunk.

    python-multipart's callbacks are synchronous: they move the state and record what
    happened (the first problem, file bytes to write); after each chunk, `read` does the
    awaiting (the file-start hook, file writes) and raises the first problem.
    """

    def __init__(
        self,
        boundary: bytes,
        *,
        temp_path: Path,
        max_bytes: int,
        on_file_start: FileStartHook | None = None,
    ) -> None:
        self.state = ReadState.BETWEEN_PARTS
        self.fields: dict[str, str] = {}
        self.filename: str | None = None  # set when the file part begins
        self.size = 0  # file bytes received
        self._temp_path = temp_path
        self._max_bytes = max_bytes
        self._on_file_start = on_file_start
        self._parts = 0
        self._problem: DomainError | None = None
        # The current part: its headers as they arrive, its name, a text field's bytes.
        self._headers: dict[str, bytes] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._part_name = ""
        self._field_bytes = bytearray()
        # File bytes parsed but not yet written, and the file they go to (opened once the
        # file part began and the file-start hook passed).
        self._pending = bytearray()
        self._file: BufferedWriter | None = None
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_name_data,
                "on_header_value": self._header_value_data,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    async def read(self, chunks: AsyncIterator[bytes]) -> ReceivedUpload:
        """Read the whole body; the partial file is removed whatever goes wrong."""
        try:
            async for chunk in chunks:
                self._parse(chunk)
                await self._write_what_was_parsed()
                if self.state is ReadState.COMPLETE:
                    break
            return await self._finish()
        except BaseException:
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
            self._temp_path.unlink(missing_ok=True)
            raise

    # -- per chunk -----------------------------------------------------------------------

    def _parse(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except Exception as exc:  # python-multipart raises its own errors on bad input
            raise InvalidInput(f"Malformed multipart body: {exc}") from exc
        if self._problem is not None:
            raise self._problem
        if self._parts > MAX_PARTS:
            raise InvalidInput(f"Too many form fields (at most {MAX_PARTS}).")
        if self.size > self._max_bytes:
            raise too_large(self._max_bytes)

    async def _write_what_was_parsed(self) -> None:
        if self.filename is not None and self._file is None:
            if self._on_file_start is not None:
                await self._on_file_start(dict(self.fields))
            self._file = await asyncio.to_thread(_create, self._temp_path)
        file_part_over = self.state is not ReadState.IN_FILE
        if self._file is not None and (
            len(self._pending) >= FLUSH_BYTES or (self._pending and file_part_over)
        ):
            await asyncio.to_thread(self._file.write, bytes(self._pending))
            self._pending.clear()

    async def _finish(self) -> ReceivedUpload:
        if self.state is not ReadState.COMPLETE:
            raise InvalidInput("The upload ended before the multipart body was complete.")
        if self._file is None or self.filename is None:
            raise InvalidInput("No file was uploaded.", field=FILE_FIELD)
        await asyncio.to_thread(self._file.close)
        self._file = None
        if self.size == 0:
            raise InvalidInput("The uploaded file is empty.", field=FILE_FIELD)
        source = StagedSource(
            path=self._temp_path, size=self.size, extension=safe_extension(self.filename)
        )
        return ReceivedUpload(fields=self.fields, source=source, filename=self.filename)

    # -- parser callbacks (synchronous) --------------------------------------------------

    def _refuse(self, problem: DomainError) -> None:
        self._problem = self._problem or problem  # the first one is reported

    def _part_begin(self) -> None:
        self._parts += 1
        self._headers = {}
        self._part_name = ""
        self._field_bytes = bytearray()

    def _header_name_data(self, data: bytes, start: int, end: int) -> None:
        self._header_name.extend(data[start:end])

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value.extend(data[start:end])

    def _header_end(self) -> None:
        self._headers[self._header_name.decode("latin-1").lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get("content-disposition"))
        self._part_name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        self.state = ReadState.IN_FIELD  # unless it is the file part (below)
        if disposition != b"form-data" or not self._part_name:
            self._refuse(InvalidInput("Every multipart part needs a form-data name."))
        elif self._part_name != FILE_FIELD:
            if raw_filename is not None:  # else read as text: "too long", or "no file"
                message = f"Send the video in the field '{FILE_FIELD}'."
                self._refuse(InvalidInput(message, field=self._part_name))
            elif self._part_name in self.fields:
                self._refuse(InvalidInput("This field was sent twice.", field=self._part_name))
        elif self.filename is not None or raw_filename is None:
            message = "Send exactly one file in the field 'file'."
            self._refuse(InvalidInput(message, field=FILE_FIELD))
        else:
            self.filename = raw_filename.decode("utf-8", "replace")
            self.state = ReadState.IN_FILE

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.state is ReadState.IN_FILE:
            self.size += end - start
            self._pending.extend(data[start:end])
        elif len(self._field_bytes) + end - start > MAX_FIELD_BYTES:
            self._refuse(InvalidInput("This field is too long.", field=self._part_name))
        else:
            self._field_bytes.extend(data[start:end])

    def _part_end(self) -> None:
        was_file = self.state is ReadState.IN_FILE
        self.state = ReadState.BETWEEN_PARTS
        if was_file:
            return
        try:
            text = self._field_bytes.decode("utf-8")
        except UnicodeDecodeError:
            self._refuse(InvalidInput("Text fields must be UTF-8.", field=self._part_name))
            return
        if is_storable(text):
            self.fields[self._part_name] = text
        else:
            self._refuse(InvalidInput(UNSTORABLE_TEXT, field=self._part_name))

    def _end(self) -> None:
        self.state = ReadState.COMPLETE


def _create(path: Path) -> BufferedWriter:
    return path.open("xb")  # never overwrites: the name is fresh
