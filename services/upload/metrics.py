"""Upload metrics: outcomes by entry (http/topic) and error code, accepted bytes, request latency, re-drives
and how long the oldest unfinished file of each stage has waited."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.upload.status import UNFINISHED
from shared.runtime.metrics import LATENCY_BUCKETS, SIZE_BUCKETS, ServiceMetrics, start_at_zero


class UploadMetrics(ServiceMetrics):
    def __init__(self):
        super().__init__("upload")
        self.uploads = Counter(
            "fileshare_uploads_total",
            "Upload attempts by entry (http, topic) and outcome (accepted, replayed or the error code)",
            ["via", "outcome"],
            registry=self.registry,
        )
        self.upload_bytes = Histogram(
            "fileshare_upload_bytes", "Size of accepted files", ["via"], buckets=SIZE_BUCKETS, registry=self.registry
        )
        self.request_seconds = Histogram(
            "fileshare_upload_request_seconds",
            "Latency of POST .../files: accepted, refused (4xx) or failed (5xx)",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.settings_apply_seconds = Histogram(
            "fileshare_settings_apply_seconds",
            "From a settings change stored until the image stages hold it (outcome applied), or until the "
            "PUT stopped waiting (timed_out)",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.redriven = Counter(
            "fileshare_redriven_total",
            "Unfinished files whose last stage event was emitted again, by event type",
            ["event_type"],
            registry=self.registry,
        )
        start_at_zero(self.redriven, ("file.uploaded", "file.sanitized", "file.resized"))
        # A stage's lag in the one unit every stage shares: a stuck consumer, a full worker pool or
        # a broker that lost its log all show as a file that stays in the stage before it.
        self.oldest_unfinished = Gauge(
            "fileshare_oldest_unfinished_file_seconds",
            "Time since the oldest unfinished file reached its stage (0: none), by the stage it waits in",
            ["stage"],
            registry=self.registry,
        )
        for stage in UNFINISHED:
            self.oldest_unfinished.labels(stage).set(0)
        self.http_responses = self.count_http_responses()

    def record_accepted(self, via: str, size_bytes: int) -> None:
        self.uploads.labels(via, "accepted").inc()
        self.upload_bytes.labels(via).observe(size_bytes)

    def record_refusal(self, via: str, code: str) -> None:
        # A bot record's file.rejected is counted in fileshare_files_rejected_total by the processor.
        self.uploads.labels(via, code).inc()
