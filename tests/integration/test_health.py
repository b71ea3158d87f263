"""Every service answers GET /healthz (alive) and GET /readyz (connected to
Kafka and storage) on its metrics port (FS_METRICS_PORT_BASE + 0 upload, 1 sanitizer, 2 resizer,
3 delivery, 4 retention); upload and delivery also on their HTTP ports."""

from __future__ import annotations

import httpx
import psutil
import pytest

from shared.settings import METRICS_PORT_OFFSETS as METRICS_OFFSETS

HTTP_PORT_VARIABLES = {"upload": "FS_UPLOAD_PORT", "delivery": "FS_DELIVERY_PORT"}


def metrics_port(stack, service: str) -> int:
    return int(stack.env["FS_METRICS_PORT_BASE"]) + METRICS_OFFSETS[service]


def metrics_url(stack, service: str) -> str:
    return f"http://127.0.0.1:{metrics_port(stack, service)}"


def listening_ports(pid: int) -> set[int]:
    return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}


@pytest.mark.parametrize("service", list(METRICS_OFFSETS))
def test_service_answers_health_and_readiness_on_its_metrics_port(stack, service):
    proc = stack.procs[service]
    assert proc.poll() is None, f"{service} is not running"
    assert metrics_port(stack, service) in listening_ports(proc.pid), (
        f"{service} does not listen on FS_METRICS_PORT_BASE + {METRICS_OFFSETS[service]}"
    )
    base = metrics_url(stack, service)
    healthz = httpx.get(f"{base}/healthz", timeout=5)
    assert healthz.status_code == 200, healthz.text
    assert healthz.json() == {"status": "ok"}
    readyz = httpx.get(f"{base}/readyz", timeout=10)
    assert readyz.status_code == 200, readyz.text
    # The sanitizer also says whether files are scanned (tests/integration/test_scanner_fail_closed.py).
    assert readyz.json() == ({"ready": True, "scanner": "clamd"} if service == "sanitizer" else {"ready": True})
    metrics = httpx.get(f"{base}/metrics", timeout=5)
    assert metrics.status_code == 200 and "# TYPE" in metrics.text
    assert httpx.get(f"{base}/nope", timeout=5).status_code == 404


@pytest.mark.parametrize("service", list(HTTP_PORT_VARIABLES))
def test_http_services_answer_health_and_readiness_on_their_http_port(stack, client, service):
    port = int(client.env[HTTP_PORT_VARIABLES[service]])
    assert port in listening_ports(stack.procs[service].pid), f"{service} does not listen on its HTTP port"
    base = f"http://127.0.0.1:{port}"
    healthz = client.http.get(f"{base}/healthz")
    assert healthz.status_code == 200, healthz.text
    assert healthz.json() == {"status": "ok"}
    readyz = client.http.get(f"{base}/readyz")
    assert readyz.status_code == 200, readyz.text
    assert readyz.json() == {"ready": True}
