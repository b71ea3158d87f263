"""Retention metrics: files deleted by reason, bytes freed, sweep duration, forget latency and outcomes."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from shared.runtime.metrics import LATENCY_BUCKETS, ServiceMetrics

FORGET_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class RetentionMetrics(ServiceMetrics):
    def __init__(self):
        super().__init__("retention")
        r = self.registry
        self.deleted = Counter(
            "fileshare_files_deleted_total", "Files deleted (one receipt each), by reason", ["reason"], registry=r
        )
        self.freed = Counter("fileshare_freed_bytes", "Bytes of stored objects deleted", registry=r)
        self.sweep_seconds = Histogram(
            "fileshare_sweep_seconds", "Duration of one expiry sweep", buckets=LATENCY_BUCKETS, registry=r
        )
        self.forget_seconds = Histogram(
            "fileshare_forget_seconds",
            "From gdpr.forget occurred_at until every file is receipted and deleted",
            buckets=FORGET_BUCKETS,
            registry=r,
        )
        self.shred_seconds = Histogram(
            "fileshare_forget_shred_seconds",
            "From gdpr.forget occurred_at until the consumer's keys are destroyed (every file unreadable)",
            buckets=FORGET_BUCKETS,
            registry=r,
        )
        self.forget_requests = Counter(
            "fileshare_forget_requests_total",
            "Forget requests handled, by outcome (erased | nothing_left | repeated | invalid)",
            ["outcome"],
            registry=r,
        )
