"""One trace per upload: the trace context of an HTTP request (its `traceparent`, or its
request id) is on every log line, goes into the outbox with the event, through JetStream
as a header, and back onto the consumer's log lines; with spans on (an in-memory exporter
here, OTLP in production) the hops are spans of one trace, parent to child."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from asgi_correlation_id import CorrelationIdFilter
from fastapi import APIRouter, FastAPI
from nats.aio.msg import Msg
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import select

from videoflix_shared import tracing
from videoflix_shared.app import create_service_app
from videoflix_shared.bus import EventBus
from videoflix_shared.db import Base, create_engine, create_session_factory
from videoflix_shared.events import VideoDeleted, parse_event
from videoflix_shared.outbox import OutboxMessage, OutboxRelay, add_event
from videoflix_shared.settings import CommonSettings
from videoflix_testing.clients import asgi_client
from videoflix_testing.plugin import NATS_URL

LOGGER = "videoflix.tracetest"
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"


class Captured(logging.Handler):
    """The records of LOGGER as the services' log handler sees them (same filters)."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(CorrelationIdFilter(uuid_length=32, default_value="-"))
        self.addFilter(tracing.TraceIdFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self, message: str) -> list[tuple[str, str]]:
        """(request_id, trace_id) of each record whose message is `message`."""
        return [
            (getattr(r, "correlation_id", None), getattr(r, "trace_id", None))
            for r in self.records
            if r.getMessage() == message
        ]


@pytest.fixture
def captured() -> Iterator[Captured]:
    handler = Captured()
    logger = logging.getLogger(LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture(scope="module")
async def session_factory(make_database):
    engine = create_engine(make_database("shared_tracing"))
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield create_session_factory(engine)
    await engine.dispose()


@pytest.fixture(scope="module")
async def bus(run_id) -> AsyncIterator[EventBus]:
    bus = EventBus(url=NATS_URL, subject_prefix=f"vft{run_id}tr.", stream_prefix=f"VFT{run_id}TR_")
    await bus.connect(wait=False)
    yield bus
    await bus.delete_streams()
    await bus.close()


def traced_app(session_factory=None, bus: EventBus | None = None) -> FastAPI:
    """An app of the shared factory whose route logs, and stages or publishes an event."""
    router = APIRouter()

    @router.post("/encode/{video_id}")
    async def work(video_id: int) -> dict[str, str | None]:
        logging.getLogger(LOGGER).info("request handled")
        if session_factory is not None:
            async with session_factory() as session, session.begin():
                add_event(session, VideoDeleted(video_id=video_id))
        if bus is not None:
            await bus.publish(VideoDeleted(video_id=video_id))
        return {"traceparent": tracing.current_traceparent()}

    return create_service_app(service="tracetest", settings=CommonSettings(), routers=[router])


async def post(app: FastAPI, path: str, **kwargs: object) -> httpx.Response:
    """A request in a task of its own, as a server runs each (the in-process transport
    would otherwise leave the request's context variables set in the test)."""
    async with asgi_client(app) as client:
        return await asyncio.create_task(client.post(path, **kwargs))


async def consume_one(bus: EventBus, video_id: int, captured_by: str) -> str | None:
    """Run a consumer until it handled `video_id`'s event; the trace id it ran in."""
    seen: list[str | None] = []
    stop = asyncio.Event()

    async def handler(msg: Msg, subject: str) -> None:
        await msg.ack()
        event = parse_event(subject, msg.data)
        if isinstance(event, VideoDeleted) and event.video_id == video_id:
            logging.getLogger(LOGGER).info("event handled")
            seen.append(tracing.current_trace_id())
            stop.set()

    task = asyncio.create_task(
        bus.consume(
            stream="CATALOG",
            durable=captured_by,
            filter_subject="catalog.>",
            handler=handler,
            stop=stop,
        )
    )
    await asyncio.wait_for(stop.wait(), 15)
    await task
    return seen[0]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (CLIENT_TRACEPARENT, CLIENT_TRACE),
        (CLIENT_TRACEPARENT.upper(), CLIENT_TRACE),  # case-insensitive on the way in
        (f"01-{CLIENT_TRACE}-00f067aa0ba902b7-01-later-fields", CLIENT_TRACE),
        (f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01-extra", None),  # version 00 has 4 fields
        (f"ff-{CLIENT_TRACE}-00f067aa0ba902b7-01", None),
        (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),
        (f"00-{CLIENT_TRACE}-{'0' * 16}-01", None),
        ("00-abc-def-01", None),
        ("", None),
    ],
)
def test_traceparent_headers_are_read_as_w3c_trace_context_says(header, expected):
    context = tracing.parse_traceparent(header)
    assert (context.trace_id if context else None) == expected


def test_a_context_writes_a_valid_traceparent_for_the_next_hop():
    context = tracing.TraceContext(trace_id=CLIENT_TRACE)  # a trace beginning here
    again = tracing.parse_traceparent(context.traceparent())
    assert again is not None
    assert again.trace_id == CLIENT_TRACE
    assert again.sampled


async def test_a_request_without_traceparent_is_traced_by_its_request_id(captured):
    response = await post(traced_app(), "/encode/1")
    request_id = response.headers["x-request-id"]
    assert captured.lines("request handled") == [(request_id, request_id)]
    traceparent = tracing.parse_traceparent(response.json()["traceparent"])
    assert traceparent is not None
    assert traceparent.trace_id == request_id


async def test_a_request_with_traceparent_continues_the_callers_trace(captured):
    response = await post(traced_app(), "/encode/1", headers={"traceparent": CLIENT_TRACEPARENT})
    request_id = response.headers["x-request-id"]
    assert request_id != CLIENT_TRACE
    assert captured.lines("request handled") == [(request_id, CLIENT_TRACE)]
    assert response.json()["traceparent"] == CLIENT_TRACEPARENT  # spans off: passed on as is


def test_log_lines_outside_any_trace_say_so(captured):
    logging.getLogger(LOGGER).info("background work")
    assert captured.lines("background work") == [("-", "-")]


async def test_an_event_staged_by_a_request_is_consumed_in_the_requests_trace(
    captured, session_factory, bus
):
    video_id = 3001
    response = await post(traced_app(session_factory), f"/encode/{video_id}")
    request_id = response.headers["x-request-id"]
    async with session_factory() as session:
        rows = (await session.scalars(select(OutboxMessage))).all()
    [row] = [r for r in rows if r.payload["video_id"] == video_id]
    stored = tracing.parse_traceparent((row.headers or {}).get("traceparent"))
    assert stored is not None, "the row keeps the trace context"
    assert stored.trace_id == request_id

    assert await OutboxRelay(session_factory, bus).publish_pending() >= 1
    consumed_in = await consume_one(bus, video_id, f"trace-{uuid.uuid4().hex[:6]}")

    assert consumed_in == request_id
    assert captured.lines("event handled") == [("-", request_id)]


async def test_spans_of_one_request_and_its_event_form_one_trace(bus):
    exporter = InMemorySpanExporter()
    tracing.shutdown_tracing()
    assert tracing.configure_tracing("tracetest", exporter=exporter)
    try:
        video_id = 3002
        response = await post(traced_app(bus=bus), f"/encode/{video_id}")
        request_id = response.headers["x-request-id"]
        assert await consume_one(bus, video_id, f"spans-{uuid.uuid4().hex[:6]}") == request_id
    finally:
        tracing.shutdown_tracing()

    spans = {span.name: span for span in exporter.get_finished_spans()}
    server = spans["POST /encode/{video_id}"]
    publish = spans["catalog.video.deleted publish"]
    process = spans["catalog.video.deleted process"]
    assert server.kind == SpanKind.SERVER
    assert server.parent is None, "no traceparent came in: the request's span is the root"
    assert {format(s.context.trace_id, "032x") for s in (server, publish, process)} == {request_id}
    assert publish.parent is not None
    assert publish.parent.span_id == server.context.span_id
    assert process.parent is not None
    assert process.parent.span_id == publish.context.span_id
    assert process.kind == SpanKind.CONSUMER


def test_without_an_endpoint_no_spans_are_made():
    tracing.shutdown_tracing()
    assert not tracing.configure_tracing("tracetest", endpoint="")
    assert not tracing.spans_enabled()
    with tracing.span("nothing") as handle:
        handle.set_attribute("ignored", 1)  # a no-op without spans
    assert not tracing.spans_enabled()


class OtlpReceiver:
    """A stand-in OTLP/HTTP collector: keeps the spans POSTed to /v1/traces."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        received = self.spans = []  # (service name, span name, trace id hex)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                if self.path != "/v1/traces":
                    request = ExportTraceServiceRequest()  # not where OTLP/HTTP sends spans
                for resource_spans in request.resource_spans:
                    service = next(
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    )
                    for scope_spans in resource_spans.scope_spans:
                        received.extend(
                            (service, span.name, span.trace_id.hex()) for span in scope_spans.spans
                        )
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_with_an_endpoint_spans_are_exported_over_otlp_http():
    receiver = OtlpReceiver()
    tracing.shutdown_tracing()
    try:
        assert tracing.configure_tracing("tracetest", endpoint=receiver.url)
        response = await post(traced_app(), "/encode/7")
        tracing.shutdown_tracing()  # flushes the batch
    finally:
        tracing.shutdown_tracing()
        receiver.close()
    request_id = response.headers["x-request-id"]
    assert ("videoflix-tracetest", "POST /encode/{video_id}", request_id) in receiver.spans
