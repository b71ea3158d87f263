"""What tracing costs a stage per record: the record's span (shared.runtime.tracing.consuming) and the
trace context of one output (Outgoing.headers), off (no OTEL_*: the API's no-op) and on (the SDK
with its batch processor, exporting to nowhere), each in a fresh process (a process has one tracer
provider). Writes bench/out/tracing.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import timeit
from pathlib import Path

OUT = Path(__file__).parent / "out"
ROUNDS = 20000
TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
CASES = {
    "off, no trace context on the record": ("off", False),
    "off, a record carrying a traceparent": ("off", True),
    "on (SDK, batch processor)": ("on", True),
}


def install_sdk() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Nowhere(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Nowhere(), max_queue_size=4 * ROUNDS))
    trace.set_tracer_provider(provider)


def per_record_seconds(mode: str, with_context: bool) -> float:
    """The best of 5 rounds, less the cost of making the record itself."""
    from aiokafka import ConsumerRecord

    from shared.adapters.kafka import Outgoing
    from shared.contract.events import GdprForget
    from shared.runtime.tracing import consuming, describe

    if mode == "on":
        install_sdk()
    event = GdprForget(request_id="r", account_id="a", consumer_id="u")
    headers = [("traceparent", TRACEPARENT)] if with_context else []

    def record():
        return ConsumerRecord("file.uploaded", 0, 1, 0, 0, b"k", b"{}", None, 1, 2, headers)

    def stage():
        with consuming(record(), "sanitize file.uploaded", "fileshare-sanitizer"):
            describe(event)
            return Outgoing("file.sanitized", "k", event)

    def baseline():
        record()
        return Outgoing("file.sanitized", "k", event)

    best = min(timeit.repeat(stage, number=ROUNDS, repeat=5)) / ROUNDS
    return max(best - min(timeit.repeat(baseline, number=ROUNDS, repeat=5)) / ROUNDS, 0.0)


def main(argv: list[str] | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = {}
    for name, (mode, with_context) in CASES.items():
        done = subprocess.run(
            [sys.executable, "-m", "bench.tracing", "--one", mode, str(int(with_context))],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        result[name] = {"microseconds_per_record": round(float(done.stdout) * 1e6, 1)}
        print(f"tracing {name}: {result[name]['microseconds_per_record']} µs per record")
    OUT.mkdir(exist_ok=True)
    (OUT / "tracing.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(per_record_seconds(sys.argv[2], sys.argv[3] == "1"))
    else:
        main(sys.argv[1:])
