"""Prometheus metrics: a per-service registry (served by shared.runtime.health on the metrics port)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from shared.runtime.outages import OUTAGES

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SIZE_BUCKETS = (1e3, 1e4, 5e4, 1e5, 5e5, 1e6, 2e6, 5e6, 1e7)

# The label values known in advance, exported at 0 from the start (see start_at_zero).
PIPELINE_REJECTIONS = (
    "unsupported_type",
    "file_too_large",
    "malware_detected",
    "corrupt_image",
    "image_too_large",
    "corrupt_file",
    "file_too_complex",
    "encrypted_file",
    "conversation_closed",
    "consumer_forgotten",
    "rate_limited",
    "processing_failed",
)
DEPENDENCIES = ("kafka", "database", "s3", "clamd")
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")


def start_at_zero(counter: Counter, label_values: Iterable) -> Counter:
    """Create the children of `counter` for `label_values` (strings for one label, tuples for more).

    A labelled counter has no series until its first increment, and `rate()` of a series that does
    not exist is "no data", not 0: an alert on it cannot fire on the first error after a restart
    (the first sample is the error), and a dashboard shows nothing instead of a flat line."""
    for values in label_values:
        counter.labels(*((values,) if isinstance(values, str) else values))
    return counter


class ServiceMetrics:
    """The metrics every stream processor has; services add their own to `registry`."""

    def __init__(self, service: str):
        self.service = service
        self.registry = CollectorRegistry()
        self.records = Counter(
            "fileshare_records_total",
            "Kafka records handled, by topic and outcome",
            ["topic", "outcome"],
            registry=self.registry,
        )
        self.handle_seconds = Histogram(
            "fileshare_handle_seconds",
            "Time to handle one record",
            ["topic"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.invalid_events = Counter(
            "fileshare_invalid_events_total",
            "Records dropped because they fail their model (an id of the wrong shape, ...)",
            ["topic"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "fileshare_files_rejected_total", "Files rejected, by reason", ["reason"], registry=self.registry
        )
        self.bytes = Counter(
            "fileshare_processed_bytes", "Bytes of images written, by variant", ["variant"], registry=self.registry
        )
        self.retries = Counter(
            "fileshare_transient_retries_total", "Retries after a transient error", ["kind"], registry=self.registry
        )
        self.dependency_errors = Counter(
            "fileshare_dependency_errors_total",
            "Errors of a dependency (kafka, database, s3, clamd), logged once per outage",
            ["dependency"],
            registry=self.registry,
        )
        # The cost around the image work: S3 round trips and decrypts, per operation.
        self.storage_requests = Counter(
            "fileshare_storage_requests_total",
            "HTTP requests to the object store, by bucket and operation",
            ["bucket", "op"],
            registry=self.registry,
        )
        self.decrypts = Counter(
            "fileshare_decrypts_total",
            "Decryptions: a stored file variant, or a sealed preview/caption",
            ["what"],
            registry=self.registry,
        )
        self.decrypted_bytes = Counter(
            "fileshare_decrypted_bytes_total", "Ciphertext bytes decrypted", ["what"], registry=self.registry
        )
        start_at_zero(self.rejected, PIPELINE_REJECTIONS)
        start_at_zero(self.dependency_errors, DEPENDENCIES)
        OUTAGES.count_into(self.dependency_errors)

    def count_http_responses(self) -> Counter:
        """`fileshare_http_responses_total{code}` by status class, for a service with an HTTP API."""
        return start_at_zero(
            Counter(
                "fileshare_http_responses_total",
                "HTTP responses of the API, by status class",
                ["code"],
                registry=self.registry,
            ),
            STATUS_CLASSES,
        )

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format (what /metrics answers without an Accept header)."""
        return generate_latest(self.registry)
