"""Counters with known label values are exported at 0 from the first scrape, and the HTTP APIs count
their responses by status class (a handler that raised is a 5xx)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.delivery.metrics import DeliveryMetrics
from services.upload.metrics import UploadMetrics
from shared.contract.errors import ApiError
from shared.runtime.httpapi import count_responses, install_error_handlers
from shared.runtime.metrics import start_at_zero


def samples(exposition: bytes) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition.decode())
        for s in family.samples
    }


def test_start_at_zero_exports_every_known_label_value_before_any_increment():
    registry = CollectorRegistry()
    counter = start_at_zero(Counter("x_total", "x", ["a", "b"], registry=registry), [("1", "2"), ("3", "4")])
    counter.labels("1", "2").inc()
    got = {labels: v for (name, labels), v in samples(generate_latest(registry)).items() if name == "x_total"}
    assert got == {(("a", "1"), ("b", "2")): 1.0, (("a", "3"), ("b", "4")): 0.0}


def test_a_fresh_service_exports_the_series_its_alerts_read():
    upload = samples(UploadMetrics().exposition())
    assert upload[("fileshare_dependency_errors_total", (("dependency", "database"),))] == 0
    assert upload[("fileshare_files_rejected_total", (("reason", "malware_detected"),))] == 0
    assert upload[("fileshare_redriven_total", (("event_type", "file.resized"),))] == 0
    assert upload[("fileshare_oldest_unfinished_file_seconds", (("stage", "sanitized"),))] == 0
    assert upload[("fileshare_http_responses_total", (("code", "5xx"),))] == 0
    assert samples(DeliveryMetrics().exposition())[("fileshare_http_responses_total", (("code", "2xx"),))] == 0


async def test_responses_are_counted_by_status_class_and_a_crash_is_a_5xx():
    metrics = DeliveryMetrics()
    app = FastAPI()
    install_error_handlers(app)
    count_responses(app, metrics.http_responses)

    @app.get("/ok")
    async def ok():
        return {"ok": True}

    @app.get("/refused")
    async def refused():
        raise ApiError(422, "invalid_request", "no")

    @app.get("/crash")
    async def crash():
        raise RuntimeError("a bug")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answers = [(await client.get(path)).status_code for path in ("/ok", "/ok", "/refused", "/missing", "/crash")]
    assert answers == [200, 200, 422, 404, 500]
    got = samples(metrics.exposition())
    assert [got[("fileshare_http_responses_total", (("code", c),))] for c in ("2xx", "4xx", "5xx")] == [2, 2, 1]


def test_every_reason_the_image_and_document_code_can_reject_with_starts_at_zero():
    from shared.documents import REJECTION_REASONS as DOCUMENT_REASONS
    from shared.images import REJECTION_REASONS as IMAGE_REASONS
    from shared.runtime.metrics import PIPELINE_REJECTIONS

    assert IMAGE_REASONS | DOCUMENT_REASONS <= set(PIPELINE_REJECTIONS)
