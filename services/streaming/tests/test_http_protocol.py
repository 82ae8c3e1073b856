"""The coalescing transport under `videoflix-streaming serve`: what is written during one
pass of the event loop reaches the socket's transport together, in order, and nothing is
lost or sent after a close (test_serve_command runs it end to end)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from videoflix_streaming.http_protocol import CoalescingTransport


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[bytes]]] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.calls.append(("write", [bytes(data)]))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.calls.append(("writelines", [bytes(data) for data in list_of_data]))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.calls.append(("close", []))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort", []))
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0


async def next_pass() -> None:
    await asyncio.sleep(0)


async def test_headers_and_body_written_in_one_pass_go_out_in_one_call():
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"")  # nothing to send is not a write
    transport.write(b"body")
    assert inner.calls == []
    assert transport.get_write_buffer_size() == len(b"HTTP/1.1 200 OK\r\n\r\nbody")
    await next_pass()
    assert inner.calls == [("writelines", [b"HTTP/1.1 200 OK\r\n\r\n", b"body"])]


async def test_writes_of_later_passes_follow_in_order():
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"headers")
    await next_pass()
    transport.writelines([b"chunk-1", b"chunk-2"])
    await next_pass()
    assert inner.calls == [("write", [b"headers"]), ("writelines", [b"chunk-1", b"chunk-2"])]


async def test_close_sends_what_is_pending_first():
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"last response")
    transport.close()
    await next_pass()  # the scheduled pass finds nothing left to send
    assert inner.calls == [("write", [b"last response"]), ("close", [])]


async def test_nothing_is_sent_on_a_closing_or_aborted_connection():
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"for a client that went away")
    inner.closing = True
    await next_pass()
    transport.write(b"dropped")
    transport.abort()
    await next_pass()
    assert inner.calls == [("abort", [])]
