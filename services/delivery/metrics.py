"""Delivery's metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from shared.runtime.metrics import LATENCY_BUCKETS, ServiceMetrics


class DeliveryMetrics(ServiceMetrics):
    def __init__(self):
        super().__init__("delivery")
        self.published = Counter("fileshare_messages_published_total", "Messages published", registry=self.registry)
        self.duplicates = Counter(
            "fileshare_duplicates_suppressed_total", "Redelivered files not published again", registry=self.registry
        )
        self.downloads = Counter("fileshare_downloads_total", "Downloads by result", ["result"], registry=self.registry)
        self.served = Counter("fileshare_served_bytes", "Image bytes served", registry=self.registry)
        self.upload_to_publish = Histogram(
            "fileshare_upload_to_publish_seconds",
            "From file.uploaded to message.published (event timestamps)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.integrity_failures = Counter(
            "fileshare_integrity_failures_total", "Stored blobs that failed authentication", registry=self.registry
        )
        self.republished = Counter(
            "fileshare_delivery_republished_total",
            "Messages sent again after the broker lost its log",
            registry=self.registry,
        )
        self.http_responses = self.count_http_responses()
