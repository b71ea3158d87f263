"""OpenTelemetry traces: one photo is one trace, from its upload through every stage to its download.

The W3C trace context (`traceparent`, `tracestate`) rides in the Kafka record headers: an event made
while a span is current carries that span as its parent (Outgoing.headers), and a traced stream
processor continues the record's trace in a span of its own (`consuming`). A download is a later,
separate request: delivery keeps the publish span's traceparent with the message, and the download
span is its child.

Off by default: without OTEL_TRACES_EXPORTER (or with `none`) no SDK is installed and every span is
the API's non-recording one (a context copy, no allocation of span data, nothing exported). Configured
only by the standard OTEL_* variables: OTEL_TRACES_EXPORTER=otlp|console (comma-separated),
OTEL_EXPORTER_OTLP_ENDPOINT (OTLP over HTTP/protobuf), OTEL_SERVICE_NAME (default
`fileshare-<service>`), OTEL_TRACES_SAMPLER, OTEL_BSP_*.

Span attributes name the file and its conversation and account, never a caption or a file name.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

log = logging.getLogger(__name__)
tracer = trace.get_tracer("fileshare")  # a proxy: it follows the provider setup_tracing installs

Headers = Sequence[tuple[str, bytes]]  # aiokafka's record headers
FILE_ATTRIBUTES = ("file_id", "conversation_id", "account_id")


class _KafkaHeaders(Getter[Headers], Setter[list]):
    """The propagator's view of aiokafka's headers: a list of (str, bytes) pairs."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        values = [v.decode("latin-1") for k, v in carrier or () if k.lower() == key and v is not None]
        return values or None

    def keys(self, carrier: Headers) -> list[str]:
        return [k for k, _ in carrier or ()]

    def set(self, carrier: list, key: str, value: str) -> None:
        carrier.append((key, value.encode("latin-1")))


KAFKA_HEADERS = _KafkaHeaders()


def exporters_from_env(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The exporters OTEL_TRACES_EXPORTER names; none unless it is set (the spec's default is otlp,
    ours is off: nobody pays for traces they did not ask for)."""
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    return [n for n in names if n and n != "none"]


def setup_tracing(service: str, environ: Mapping[str, str] = os.environ):
    """Install the SDK's tracer provider for this process when OTEL_TRACES_EXPORTER asks for one;
    returns it, or None (tracing stays the API's no-op)."""
    names = exporters_from_env(environ)
    if not names:
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: environ.get("OTEL_SERVICE_NAME") or f"fileshare-{service}"})
    )
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    trace.set_tracer_provider(provider)
    log.info("tracing on: exporting to %s", ", ".join(names))
    return provider


def _exporter(name: str):
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_*
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console or none)")


def current_headers() -> list[tuple[str, bytes]]:
    """The current trace context as Kafka headers (empty when no span is current)."""
    headers: list[tuple[str, bytes]] = []
    propagate.inject(headers, setter=KAFKA_HEADERS)
    return headers


def current_http_headers() -> dict[str, str]:
    """The current trace context as HTTP headers (empty when no span is current)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def current_traceparent() -> tuple[str | None, str | None]:
    """The current span as (traceparent, tracestate), to be continued by a later request."""
    carrier = current_http_headers()
    return carrier.get("traceparent"), carrier.get("tracestate")


def describe(subject) -> None:
    """Name the file on the current span (file_id, conversation_id, account_id: ids only)."""
    span = trace.get_current_span()
    if span.is_recording():
        values = {name: getattr(subject, name, None) for name in FILE_ATTRIBUTES}
        span.set_attributes({name: value for name, value in values.items() if isinstance(value, str)})


@contextmanager
def consuming(record, name: str | None, group: str | None = None) -> Iterator[Span | None]:
    """Handle a Kafka record in a span continuing the trace its headers carry. Only this record's
    handling sees that context: it is detached when the block ends, whatever happens."""
    if name is None:
        yield None
        return
    parent = propagate.extract(record.headers or (), getter=KAFKA_HEADERS)
    attributes = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
    }
    if group:
        attributes["messaging.consumer.group.name"] = group
    with quiet_span(name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes) as span:
        yield span


def fail(span: Span | None, exc: BaseException) -> None:
    """Mark a span whose work ended in an error. Its type only: an exception's message may quote
    the input (a validation error quotes a caption), and spans never hold content."""
    if span is not None and span.is_recording():
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


@contextmanager
def server_span(
    method: str,
    route: str,
    headers: Mapping[str, str],
    parent: tuple[str | None, str | None] | None = None,
    start_time: int | None = None,
) -> Iterator[Span]:
    """An HTTP request's span (`{method} {route}`), in the trace the request's own `traceparent`
    names, or in `parent`'s (a stored traceparent, tracestate) with a link to the request's. The
    context is attached for this block only: nothing leaks into the next request on a keep-alive
    connection. An exception's `status` (ApiError's) is the response's status code."""
    incoming = propagate.extract(headers)
    context_, links = incoming, []
    if parent is not None and parent[0]:
        context_ = propagate.extract({"traceparent": parent[0], **({"tracestate": parent[1]} if parent[1] else {})})
        asked = trace.get_current_span(incoming).get_span_context()
        links = [Link(asked)] if asked.is_valid else []
    attributes = {"http.request.method": method, "http.route": route}
    with tracer.start_as_current_span(
        f"{method} {route}",
        context=context_,
        kind=SpanKind.SERVER,
        attributes=attributes,
        links=links,
        start_time=start_time,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            status = getattr(exc, "status", 500)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                fail(span, exc)
            raise


def answered(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)


def now_ns() -> int:
    return time.time_ns()


@contextmanager
def quiet_span(name: str, **options: Any) -> Iterator[Span]:
    """A span whose failure keeps only the exception's type (`fail`), never its message or trace:
    a rejection's detail may quote the file (a name inside a document)."""
    with tracer.start_as_current_span(name, record_exception=False, set_status_on_exception=False, **options) as span:
        try:
            yield span
        except BaseException as exc:
            fail(span, exc)
            raise


def step_span(name: str):
    """A step inside a stage (scan, disarm), as a quiet span."""
    return quiet_span(name)
