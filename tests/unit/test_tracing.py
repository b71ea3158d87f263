"""Traces: a record continues the trace of the span that made its event, through the propagator's
W3C headers; nothing leaks between records or requests; with no OTEL_* variable it is all a no-op."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shared.adapters.kafka import Outgoing
from shared.contract.events import GdprForget
from shared.images import ImageRejected
from shared.runtime.tracing import consuming, current_traceparent, exporters_from_env, server_span, step_span, tracer

ROOT = Path(__file__).resolve().parents[2]
BOT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
BOT_TRACEPARENT = f"00-{BOT_TRACE}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def spans():
    """The SDK with an in-memory exporter, as this process's provider (set once per process)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def finished(spans):
    spans.clear()
    yield lambda: {s.name: s for s in spans.get_finished_spans()}


def event() -> GdprForget:
    return GdprForget(request_id="r", account_id="a", consumer_id="u")


def record_of(out: Outgoing | None = None, headers=None, offset: int = 7) -> ConsumerRecord:
    headers = list(out.headers) if out is not None else (headers or [])
    return ConsumerRecord("file.uploaded", 0, offset, 0, 0, b"k", b"{}", None, 1, 2, headers)


def test_each_stage_is_a_child_of_the_stage_that_made_its_record(finished):
    with tracer.start_as_current_span("upload"):
        uploaded = Outgoing("file.uploaded", "conv", event())
    with consuming(record_of(uploaded), "sanitize", "fileshare-sanitizer"):
        sanitized = Outgoing("file.sanitized", "conv", event())
    with consuming(record_of(sanitized), "resize"):
        pass
    assert not trace.get_current_span().get_span_context().is_valid, "no context left attached"
    spans = finished()
    upload, sanitize, resize = spans["upload"], spans["sanitize"], spans["resize"]
    assert {s.context.trace_id for s in spans.values()} == {upload.context.trace_id}
    assert sanitize.parent.span_id == upload.context.span_id
    assert resize.parent.span_id == sanitize.context.span_id
    assert sanitize.kind == SpanKind.CONSUMER
    assert sanitize.attributes["messaging.destination.name"] == "file.uploaded"
    assert sanitize.attributes["messaging.consumer.group.name"] == "fileshare-sanitizer"
    assert [k for k, _ in uploaded.headers] == ["traceparent"]


def test_a_record_without_headers_starts_a_trace_of_its_own(finished):
    with tracer.start_as_current_span("upload"):
        first = Outgoing("file.uploaded", "conv", event())
    with consuming(record_of(first), "first"):
        pass
    with consuming(record_of(offset=8), "second"):
        assert trace.get_current_span().is_recording()
    spans = finished()
    assert spans["second"].parent is None
    assert spans["second"].context.trace_id != spans["first"].context.trace_id


def test_a_bots_traceparent_is_honoured(finished):
    with consuming(record_of(headers=[("TraceParent", BOT_TRACEPARENT.encode())]), "accept"):
        assert Outgoing("file.uploaded", "conv", event()).headers  # passed on downstream
    assert format(finished()["accept"].context.trace_id, "032x") == BOT_TRACE


def test_a_record_whose_handling_fails_leaves_no_context_behind_and_no_message_in_its_span(finished):
    with pytest.raises(RuntimeError):
        with consuming(record_of(headers=[("traceparent", BOT_TRACEPARENT.encode())]), "failing"):
            raise RuntimeError("caption: a private caption")
    assert not trace.get_current_span().get_span_context().is_valid
    span = finished()["failing"]
    assert not span.status.is_ok and span.status.description == "RuntimeError"
    assert not span.events, "an exception's message may quote content"


def test_a_rejected_step_keeps_the_rejections_type_and_not_its_detail(finished):
    with pytest.raises(ImageRejected):
        with step_span("disarm"):
            raise ImageRejected("corrupt_image", "cannot read image header: 'invoice of Jane Doe.jpg'")
    span = finished()["disarm"]
    assert not span.status.is_ok and span.status.description == "ImageRejected"
    assert not span.events and "Jane" not in str(span.to_json())


def test_a_download_joins_the_trace_of_the_files_publish_and_links_the_callers(finished):
    with consuming(record_of(headers=[("traceparent", BOT_TRACEPARENT.encode())]), "deliver"):
        stored = current_traceparent()
    caller = "00-11111111111111111111111111111111-2222222222222222-01"
    with server_span("GET", "/v1/files/{file_id}/content", {"traceparent": caller}, parent=stored):
        pass
    with server_span("GET", "/other", {}):  # the next request on the connection: its own trace
        pass
    spans = finished()
    download, deliver = spans["GET /v1/files/{file_id}/content"], spans["deliver"]
    assert download.parent.span_id == deliver.context.span_id
    assert download.context.trace_id == deliver.context.trace_id
    assert [format(link.context.trace_id, "032x") for link in download.links] == ["1" * 32]
    assert download.kind == SpanKind.SERVER and download.attributes["http.request.method"] == "GET"
    assert spans["GET /other"].parent is None and spans["GET /other"].context.trace_id != deliver.context.trace_id


def test_a_refused_request_is_recorded_with_its_status(finished):
    class Refusal(Exception):
        status = 404

    with pytest.raises(Refusal):
        with server_span("GET", "/x", {}):
            raise Refusal()
    span = finished()["GET /x"]
    assert span.attributes["http.response.status_code"] == 404 and span.status.is_unset


def test_exporters_come_from_otel_traces_exporter_and_default_to_none():
    assert exporters_from_env({}) == []
    assert exporters_from_env({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert exporters_from_env({"OTEL_TRACES_EXPORTER": "otlp, Console"}) == ["otlp", "console"]


def test_without_otel_variables_tracing_is_a_no_op():
    """A fresh process, as a service starts: no SDK provider, spans do not record, nothing is
    injected into records, no exporter thread runs."""
    script = textwrap.dedent("""
        import threading
        from aiokafka import ConsumerRecord
        from opentelemetry import trace
        from shared.contract.events import GdprForget
        from shared.adapters.kafka import Outgoing
        from shared.runtime.tracing import consuming, setup_tracing
        assert setup_tracing("upload") is None
        assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
        with consuming(ConsumerRecord("t", 0, 0, 0, 0, b"", b"", None, 0, 0, []), "sanitize") as span:
            assert not span.is_recording()
            assert Outgoing("t", "k", GdprForget(request_id="r", account_id="a", consumer_id="u")).headers == ()
        assert [t.name for t in threading.enumerate()] == ["MainThread"], threading.enumerate()
        print("no-op")
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "no-op", done.stderr


def test_an_unknown_exporter_refuses_to_start():
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from shared.runtime.tracing import setup_tracing; "
            "setup_tracing('upload', {'OTEL_TRACES_EXPORTER': 'jaeger'})",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "unknown exporter 'jaeger'" in done.stderr


@pytest.mark.parametrize("service_name, expected", [(None, "fileshare-resizer"), ("resizer-eu-1", "resizer-eu-1")])
def test_the_console_exporter_writes_the_spans_named_by_the_service(service_name, expected):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_TRACES_EXPORTER"] = "console"
    if service_name:
        env["OTEL_SERVICE_NAME"] = service_name
    script = (
        "from shared.runtime.tracing import setup_tracing, tracer\n"
        "provider = setup_tracing('resizer')\n"
        "with tracer.start_as_current_span('resize file.sanitized'):\n"
        "    pass\n"
        "provider.shutdown()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    span = json.loads(done.stdout)
    assert span["name"] == "resize file.sanitized"
    assert span["resource"]["attributes"]["service.name"] == expected
