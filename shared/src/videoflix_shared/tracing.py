"""One trace per upload: the W3C trace context of the work being done, carried across every
hop (HTTP request, outbox row, JetStream message, arq job) and written on every log line;
OpenTelemetry spans exported over OTLP when an endpoint is configured.

The trace context lives in a context variable. Where it comes from:
- an HTTP request: its `traceparent` header; without one the trace id is the request id
  (`X-Request-ID`, 32 hex digits: a valid W3C trace id), so the id a client sees in the
  response leads to every log line of what the request set off, in every service;
- an outbox row or a JetStream message: the `traceparent` stored with it (`continue_trace`);
- an arq job: the `traceparent` keyword the enqueuer added (videoflix_transcoder.queue).
What carries it on: `current_traceparent()` for the next hop's header, and `TraceIdFilter`
puts `trace_id` on every log record ("-" outside any trace).

Spans: off by default, and then `span()` costs one global lookup, nothing is exported and
no collector is needed. `configure_tracing` turns them on (OTEL_EXPORTER_OTLP_ENDPOINT:
spans batched to `<endpoint>/v1/traces` over OTLP/HTTP; tests pass an exporter of their
own). A request without a `traceparent` then gets a root span whose trace id is still the
request id (`_RequestTraceIds`). The OpenTelemetry SDK is imported only when turned on.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgi_correlation_id import correlation_id
from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

TRACEPARENT = "traceparent"
# version 00: "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>"; a later version may
# append fields after another "-" (W3C Trace Context, "versioning of traceparent").
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceContext:
    """Where the current work sits in its trace."""

    trace_id: str  # 32 lowercase hex digits, not all zero
    span_id: str | None = None  # the parent span (16 hex); None: the trace begins here
    sampled: bool = True

    def traceparent(self) -> str:
        """The W3C header for the next hop; a trace beginning here gets a parent id made
        up for it (the header requires one)."""
        span_id = self.span_id or os.urandom(8).hex()
        return f"00-{self.trace_id}-{span_id}-{'01' if self.sampled else '00'}"


_current: ContextVar[TraceContext | None] = ContextVar("videoflix_trace", default=None)


def parse_traceparent(value: str | None) -> TraceContext | None:
    """The context in a `traceparent` header, or None when it is absent or invalid (the
    spec says to start a new trace then)."""
    if not value:
        return None
    match = _TRACEPARENT.fullmatch(value.strip().lower())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE:
        return None
    if span_id == _ZERO_SPAN:
        return None
    return TraceContext(trace_id=trace_id, span_id=span_id, sampled=bool(int(flags, 16) & 1))


def trace_id_of_request(request_id: str | None) -> str | None:
    """The trace id a request id stands for: its 32 hex digits (a UUID with or without
    dashes), or None for anything else."""
    if not request_id:
        return None
    digits = request_id.replace("-", "").lower()
    if _HEX32.fullmatch(digits) is None or digits == _ZERO_TRACE:
        return None
    return digits


def current() -> TraceContext | None:
    """The trace of the work in progress: set by `continue_trace` or a `traceparent`
    header, else the one the request id stands for, else None (outside any trace)."""
    context = _current.get()
    if context is not None:
        return context
    trace_id = trace_id_of_request(correlation_id.get())
    return None if trace_id is None else TraceContext(trace_id=trace_id)


def current_trace_id() -> str | None:
    context = current()
    return None if context is None else context.trace_id


def current_traceparent() -> str | None:
    """The `traceparent` to send with the next hop (None outside any trace)."""
    context = current()
    return None if context is None else context.traceparent()


def adopt_traceparent(value: str | None) -> None:
    """Make a request's `traceparent` the current trace for the rest of the request's task
    (an endpoint that does the middleware's work inline; an invalid one is ignored)."""
    _current.set(parse_traceparent(value))


def new_trace() -> TraceContext:
    return TraceContext(trace_id=os.urandom(16).hex())


@contextlib.contextmanager
def continue_trace(
    traceparent: str | None, *, name: str, kind: str = "consumer"
) -> Iterator[SpanHandle]:
    """Run the block in the trace `traceparent` names (a message's, a job's), or in a new
    one when it names none; with spans on, the block is a span of `kind` in it."""
    token = _current.set(parse_traceparent(traceparent) or new_trace())
    try:
        with span(name, kind=kind) as handle:
            yield handle
    finally:
        _current.reset(token)


class SpanHandle:
    """What the block of `span()` may add to its span (nothing happens with spans off)."""

    __slots__ = ("_span",)

    def __init__(self, otel_span: Span | None = None) -> None:
        self._span = otel_span

    def set_attribute(self, key: str, value: str | int | float | bool) -> None:
        if self._span is not None:
            self._span.set_attribute(key, value)

    def update_name(self, name: str) -> None:
        if self._span is not None:
            self._span.update_name(name)


_NO_SPAN = SpanHandle()


@contextlib.contextmanager
def span(name: str, *, kind: str = "internal") -> Iterator[SpanHandle]:
    """A span named `name` around the block, child of the current trace context, which
    it becomes for the block. `kind`: internal, server, client, producer or consumer."""
    spans = _spans
    if spans is None:
        yield _NO_SPAN
        return
    with spans.start(name, kind) as handle:
        yield handle


def spans_enabled() -> bool:
    return _spans is not None


# -- OpenTelemetry ------------------------------------------------------------------------


class _Spans:
    """The OpenTelemetry side, present only while spans are on."""

    def __init__(self, provider: TracerProvider, tracer: Tracer) -> None:
        self.provider = provider
        self.tracer = tracer

    @contextlib.contextmanager
    def start(self, name: str, kind: str) -> Iterator[SpanHandle]:
        from opentelemetry import trace
        from opentelemetry.context import Context

        parent = current()
        otel_parent = Context()  # a root span: _RequestTraceIds picks its trace id
        if parent is not None and parent.span_id is not None:
            remote = trace.SpanContext(
                trace_id=int(parent.trace_id, 16),
                span_id=int(parent.span_id, 16),
                is_remote=True,
                trace_flags=trace.TraceFlags(1 if parent.sampled else 0),
            )
            otel_parent = trace.set_span_in_context(trace.NonRecordingSpan(remote))
        with self.tracer.start_as_current_span(
            name, context=otel_parent, kind=trace.SpanKind[kind.upper()]
        ) as otel_span:
            context = otel_span.get_span_context()
            token = _current.set(
                TraceContext(
                    trace_id=format(context.trace_id, "032x"),
                    span_id=format(context.span_id, "016x"),
                    sampled=context.trace_flags.sampled,
                )
            )
            try:
                yield SpanHandle(otel_span)
            finally:
                _current.reset(token)


_spans: _Spans | None = None


def configure_tracing(
    service: str, *, endpoint: str = "", exporter: SpanExporter | None = None
) -> bool:
    """Turn spans on for this process when `endpoint` (OTLP/HTTP, e.g.
    http://collector:4318) or `exporter` is given; True when they are on. Once per process:
    later calls keep what the first one set up (a test resets with `shutdown_tracing`)."""
    global _spans
    if _spans is not None:
        return True
    if not endpoint and exporter is None:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": f"videoflix-{service}"}),
        id_generator=_request_trace_ids(),
        shutdown_on_exit=False,  # shutdown_tracing, registered below, flushes
    )
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        otlp = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(otlp))
        logging.getLogger(__name__).info("tracing: spans exported to %s", endpoint)
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _spans = _Spans(provider, provider.get_tracer("videoflix"))
    atexit.register(shutdown_tracing)
    return True


def shutdown_tracing() -> None:
    """Flush and stop exporting (at exit; tests turn spans off again with it)."""
    global _spans
    spans, _spans = _spans, None
    if spans is not None:
        spans.provider.shutdown()


def _request_trace_ids() -> Any:
    """An id generator whose root spans take the trace id of the current context (the
    request id of a request without `traceparent`), random ones otherwise."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class _RequestTraceIds(RandomIdGenerator):
        def generate_trace_id(self) -> int:
            context = current()
            if context is not None:
                return int(context.trace_id, 16)
            return super().generate_trace_id()

    return _RequestTraceIds()


# -- HTTP and logs --------------------------------------------------------------------------


class TraceMiddleware:
    """Takes a request's `traceparent` (pure ASGI; inside the request-id middleware). A
    request without one needs nothing here: its request id is its trace id (`current`).
    With spans on, the request is a server span named after its route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"traceparent":
                incoming = parse_traceparent(value.decode("latin-1"))
                break
        if incoming is None and _spans is None:
            await self.app(scope, receive, send)
            return
        token = _current.set(incoming) if incoming is not None else None
        try:
            with span(f"{scope['method']} {scope['path']}", kind="server") as handle:
                await self.app(scope, receive, send)
                route = getattr(scope.get("route"), "path", None)
                if isinstance(route, str):
                    handle.update_name(f"{scope['method']} {route}")
        finally:
            if token is not None:
                _current.reset(token)


class TraceIdFilter(logging.Filter):
    """Puts `trace_id` on every record: the current trace's, "-" outside any."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.trace_id = current_trace_id() or "-"
        return True
