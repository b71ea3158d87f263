"""Who may talk to whom under the NetworkPolicies of deploy/k8s (evaluated on the rendered objects, as a
CNI would), and the bind address that lets the kubelet's probes reach a pod at all."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess

import pytest
import yaml

from shared.devstack.embedded import free_port
from shared.runtime.health import serve_metrics
from shared.runtime.metrics import ServiceMetrics
from shared.settings import Settings
from tests.k8ssupport import (
    HTTP_PORT_SETTING,
    K8S,
    KUBE_DNS,
    NAMESPACE,
    OUTSIDE,
    PROMETHEUS,
    SERVICES,
    TREES,
    Pod,
    can_connect,
    environment,
    of_kind,
    pods,
    rendered,
    settings_from,
)


@pytest.fixture(scope="module", params=sorted(TREES))
def tree(request) -> tuple[str, list[dict]]:
    """(name, rendered objects) of each tree: the base and every overlay."""
    return request.param, rendered(request.param)


def test_network_policies_deny_by_default_and_admit_only_what_must_talk(tree):
    name, objects = tree
    policies = of_kind(objects, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert not deny.get("ingress") and not deny.get("egress")
    to_clamd = [
        p
        for p in policies.values()
        if any(port.get("port") == 3310 for rule in p["spec"].get("egress", []) for port in rule.get("ports", []))
    ]
    assert [p["spec"]["podSelector"]["matchLabels"] for p in to_clamd] == [{"app.kubernetes.io/name": "sanitizer"}]
    metrics = policies["metrics-from-monitoring"]["spec"]["ingress"]
    assert metrics == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "ports": [{"protocol": "TCP", "port": "metrics"}],
        }
    ]
    http_open = {
        p["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/name")
        for p in policies.values()
        for rule in p["spec"].get("ingress", [])
        if "from" not in rule and any(port.get("port") == "http" for port in rule.get("ports", []))
    }
    assert http_open == {"upload", "delivery"}, f"{name}: only the public HTTP APIs are open to clients"


def test_trial_network_lets_only_what_must_talk_talk():
    objects = rendered("trial")
    pod = pods(objects)
    env = environment(objects, of_kind(objects, "Deployment")["upload"])
    for service in SERVICES:
        for backend, port in (("kafka", 9092), ("postgres", 5432), ("minio", 9000)):
            assert can_connect(objects, pod[service], pod[backend], port), f"{service} -> {backend}"
        assert can_connect(objects, pod[service], KUBE_DNS, 53), f"{service} -> DNS"
        assert can_connect(objects, pod[service], pod["clamd"], 3310) == (service == "sanitizer"), service
        metrics = settings_from(env).metrics_port(service)
        assert can_connect(objects, PROMETHEUS, pod[service], metrics), f"monitoring -> {service} metrics"
        assert not can_connect(objects, Pod(PROMETHEUS.labels, "default"), pod[service], metrics)
        assert not can_connect(objects, OUTSIDE, pod[service], metrics), f"{service} metrics open to anyone"
    for service in HTTP_PORT_SETTING:
        assert can_connect(objects, OUTSIDE, pod[service], int(env[HTTP_PORT_SETTING[service]])), service
    assert can_connect(objects, pod["upload"], pod["delivery"], int(env["FS_DELIVERY_PORT"])), "re-drive's lookup"
    assert not can_connect(objects, pod["resizer"], pod["delivery"], int(env["FS_DELIVERY_PORT"]))
    for backend, port in (("kafka", 9092), ("postgres", 5432), ("minio", 9000), ("clamd", 3310)):
        assert not can_connect(objects, OUTSIDE, pod[backend], port), f"{backend} open to the outside"
        assert not can_connect(objects, PROMETHEUS, pod[backend], port), f"{backend} open to monitoring"
    assert can_connect(objects, pod["minio-buckets"], pod["minio"], 9000)
    assert not can_connect(objects, pod["minio-buckets"], pod["postgres"], 5432)
    assert can_connect(objects, pod["clamd"], OUTSIDE, 443), "freshclam fetches the signatures"
    assert not can_connect(objects, pod["postgres"], OUTSIDE, 443), "the database talks to no one"


def test_base_network_reaches_backends_outside_the_cluster_and_nothing_else():
    objects = rendered("base")
    pod = pods(objects)
    for service in SERVICES:
        for port in (9092, 5432, 443):  # managed Kafka, PostgreSQL and S3
            assert can_connect(objects, pod[service], OUTSIDE, port), f"{service} -> {port}"
        for port in (22, 25, 6379):
            assert not can_connect(objects, pod[service], OUTSIDE, port), f"{service} -> {port}"
        assert can_connect(objects, pod[service], OUTSIDE, 3310) == (service == "sanitizer"), service


def pod_address() -> str:
    """An address of this machine other than 127.0.0.1, standing for the pod IP the kubelet probes:
    its outgoing interface's, or on a machine without one 127.0.0.2 (Linux answers all of 127/8 on
    the loopback, and a server bound to 127.0.0.1 does not answer there either)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = s.getsockname()[0]
        except OSError:  # no route out at all
            address = "127.0.0.1"
    return "127.0.0.2" if address == "127.0.0.1" else address


async def probe(host: str, port: int, path: str) -> int | None:
    """The HTTP status of GET path, as the kubelet's httpGet probe asks it; None when refused."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return None
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    status = int((await reader.readline()).split()[1])
    writer.close()
    return status


async def test_probes_reach_the_pod_address_only_with_the_manifests_bind_host():
    """The kubelet probes the pod's IP, not its loopback: with the manifests' FS_BIND_HOST the metrics
    server answers /healthz and /readyz there; with the settings' default it would not answer."""
    objects = rendered("base")
    env = environment(objects, of_kind(objects, "Deployment")["retention"])
    address, metrics = pod_address(), ServiceMetrics("retention")

    async def ready() -> bool:
        return True

    for bind_host, answers in ((env["FS_BIND_HOST"], True), (Settings().bind_host, False)):
        port = free_port()
        server = await serve_metrics(metrics, port, ready, bind_host)
        try:
            statuses = [await probe(address, port, path) for path in ("/healthz", "/readyz")]
        finally:
            server.close()
            await server.wait_closed()
        assert statuses == ([200, 200] if answers else [None, None]), f"FS_BIND_HOST={bind_host}"


def test_the_kubernetes_prometheus_config_finds_every_pod_of_every_service():
    """deploy/k8s/monitoring/prometheus.yml: promtool accepts it with the alert rules, and each job (named
    after its service, as the rules expect) looks up that service's headless metrics Service."""
    config_path = K8S / "monitoring" / "prometheus.yml"
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: apt-get install prometheus (Debian's package brings promtool)"
    done = subprocess.run([tool, "check", "config", str(config_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    objects = rendered("base")
    services, env = of_kind(objects, "Service"), environment(objects, of_kind(objects, "Deployment")["upload"])
    jobs = {job["job_name"]: job for job in yaml.safe_load(config_path.read_text())["scrape_configs"]}
    assert sorted(jobs) == sorted(SERVICES)
    for service, job in jobs.items():
        (sd,) = job["dns_sd_configs"]
        name, namespace, _ = sd["names"][0].split(".", 2)
        assert (namespace, sd["type"]) == (NAMESPACE, "A")
        assert services[name]["spec"]["clusterIP"] == "None", f"{name}: one A record per pod"
        assert services[name]["spec"]["selector"] == {"app.kubernetes.io/name": service}
        assert sd["port"] == settings_from(env).metrics_port(service)
