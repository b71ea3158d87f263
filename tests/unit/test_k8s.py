"""The Kubernetes manifests (deploy/k8s): rendered by the real `kubectl kustomize`, every object checked
against the Kubernetes schemas with kubernetes-validate, then what an operator relies on: each service
has its probes on the contract's endpoints, requests and limits, a PodDisruptionBudget and an
autoscaler, runs unprivileged, and gets every variable docker-compose.yml gives it.

No cluster runs here, so nothing is applied: the trial overlay's environment is instead handed to each
service's real `bootstrap`, which builds the service (keys, scanner, consumers) without connecting.
"""
from __future__ import annotations

import asyncio
import base64
import importlib
import re
import shutil
import socket
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from shared.crypto import decode_master_key
from shared.embedded import free_port
from shared.metrics import ServiceMetrics, serve_metrics
from shared.settings import METRICS_PORT_OFFSETS, Settings
from shared.topics import MAX_MESSAGE_BYTES

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
TREES = {"base": K8S / "base", "lag": K8S / "overlays" / "lag", "trial": K8S / "overlays" / "trial"}
SERVICES = ("upload", "sanitizer", "resizer", "delivery", "retention")
STREAM_PROCESSORS = ("sanitizer", "resizer", "delivery", "retention")
HTTP_PORT_SETTING = {"upload": "FS_UPLOAD_PORT", "delivery": "FS_DELIVERY_PORT"}
# The oldest release its schemas cover that we promise, and the newest it ships.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
NAMESPACE = "fileshare"


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is not on PATH: install it (Debian: apt-get install kubernetes-client; .ci/run does) "
                    "to render deploy/k8s with `kubectl kustomize`")
    return found


@pytest.fixture(scope="module", params=sorted(TREES))
def tree(request) -> tuple[str, list[dict]]:
    return request.param, rendered(request.param)


_RENDERED: dict[str, list[dict]] = {}


def rendered(name: str) -> list[dict]:
    if name not in _RENDERED:
        done = subprocess.run([kubectl(), "kustomize", str(TREES[name])], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"kubectl kustomize {TREES[name]} failed:\n{done.stderr}"
        _RENDERED[name] = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    return _RENDERED[name]


def of_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def container(deployment: dict) -> dict:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def quantity(value) -> float:
    """A Kubernetes quantity in base units (cores, bytes)."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text)
    assert match, f"not a quantity: {text}"
    return float(match[1]) * units.get(match[2], 1) if match[2] else float(match[1])


def environment(objects: list[dict], deployment: dict) -> dict[str, str]:
    """The variables the service's container starts with, resolved from its ConfigMaps and Secrets."""
    configmaps, secrets = of_kind(objects, "ConfigMap"), of_kind(objects, "Secret")

    def secret(name: str) -> dict[str, str]:
        return {k: base64.b64decode(v).decode() for k, v in (secrets[name].get("data") or {}).items()}

    env: dict[str, str] = {}
    spec = container(deployment)
    for source in spec.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps[source["configMapRef"]["name"]].get("data") or {})
        else:
            env.update(secret(source["secretRef"]["name"]))
    for var in spec.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secret(ref["name"])[ref["key"]]
        else:
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = configmaps[ref["name"]]["data"][ref["key"]]
    return env


def port_number(spec: dict, port) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in spec["ports"] if p["name"] == port)


def compose_environment(service: str) -> dict[str, str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return {k: str(v) for k, v in (compose["services"][service].get("environment") or {}).items()}


def settings_from(env: dict[str, str]) -> Settings:
    return Settings(**{k[3:].lower(): v for k, v in env.items() if k.startswith("FS_")})


def test_every_object_is_valid_against_the_kubernetes_schemas(tree):
    name, objects = tree
    assert objects, f"{name} renders nothing"
    for version in K8S_VERSIONS:
        for obj in objects:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {version}: "
                            f"{e.message} at {'.'.join(map(str, e.path))}")


def test_everything_lands_in_one_namespace(tree):
    name, objects = tree
    for obj in objects:
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == NAMESPACE
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, f"{name}: {obj['kind']}/{obj['metadata']['name']}"


def test_each_service_runs_its_module_from_the_one_image(tree):
    _, objects = tree
    deployments = of_kind(objects, "Deployment")
    assert set(SERVICES) <= set(deployments)
    for service in SERVICES:
        spec = container(deployments[service])
        assert spec["command"] == ["python", "-m", f"services.{service}"]
        assert spec["image"].split(":")[0].rsplit("/", 1)[-1] == "fileshare"


def test_probes_ask_the_contract_endpoints_on_the_ports_that_serve_them(tree):
    _, objects = tree
    deployments = of_kind(objects, "Deployment")
    for service in SERVICES:
        spec = container(deployments[service])
        env = environment(objects, deployments[service])
        metrics_port = settings_from(env).metrics_port(service)
        # The contract: upload and delivery answer /readyz on their HTTP ports, the others on metrics.
        contract_port = int(env[HTTP_PORT_SETTING[service]]) if service in HTTP_PORT_SETTING else metrics_port
        ready = spec["readinessProbe"]["httpGet"]
        assert ready["path"] == "/readyz" and port_number(spec, ready["port"]) == contract_port, service
        # /healthz is also served on the metrics port from the process's first second (shared/metrics.py).
        for probe in ("livenessProbe", "startupProbe"):
            alive = spec[probe]["httpGet"]
            assert alive["path"] == "/healthz", f"{service} {probe}"
            assert port_number(spec, alive["port"]) in {contract_port, metrics_port}, f"{service} {probe}"
        assert metrics_port in {p["containerPort"] for p in spec["ports"]}, f"{service} metrics port"


def test_requests_and_limits_on_every_container(tree):
    name, objects = tree
    pods = [o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job")]
    for pod in pods:
        for spec in pod["containers"]:
            res = spec.get("resources", {})
            for resource in ("cpu", "memory"):
                request, limit = res.get("requests", {}).get(resource), res.get("limits", {}).get(resource)
                assert request and limit, f"{name}: {spec['name']} lacks a {resource} request or limit"
                assert quantity(request) <= quantity(limit), f"{name}: {spec['name']} {resource} request > limit"


def test_image_workers_fit_in_the_memory_limit(tree):
    """A worker caps its address space at FS_DECODE_MEMORY_BYTES: the pod's limit must hold every worker
    at its cap plus the main process, or a hostile image gets the whole pod OOM-killed."""
    name, objects = tree
    deployments = of_kind(objects, "Deployment")
    for service in ("sanitizer", "resizer"):
        env = environment(objects, deployments[service])
        s = settings_from(env)
        assert s.image_workers > 0, f"{service}: set FS_IMAGE_WORKERS (the default follows the node's cores)"
        limits = container(deployments[service])["resources"]["limits"]
        assert quantity(limits["memory"]) >= 512 * 2**20 + s.image_workers * s.decode_memory_bytes, f"{name} {service}"
        assert quantity(limits["cpu"]) >= s.image_workers, f"{name} {service}: a CPU per worker"


def test_each_service_has_a_disruption_budget_and_an_autoscaler(tree):
    name, objects = tree
    deployments = of_kind(objects, "Deployment")
    budgets = list(of_kind(objects, "PodDisruptionBudget").values())
    scalers = of_kind(objects, "HorizontalPodAutoscaler")
    partitions = int(environment(objects, deployments["sanitizer"])["FS_TOPIC_PARTITIONS"])
    for service in SERVICES:
        labels = deployments[service]["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(covering) == 1, f"{name}: {service} needs exactly one PodDisruptionBudget"
        assert "replicas" not in deployments[service]["spec"], f"{service}: the autoscaler owns the replica count"
        hpa = scalers[service]["spec"]
        assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
        assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
        assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["metrics"])
        if service in ("sanitizer", "resizer", "retention"):
            # Members of a consumer group past its partition count get no partition.
            assert hpa["maxReplicas"] <= partitions, f"{name}: {service} maxReplicas > FS_TOPIC_PARTITIONS"
    if name == "base":
        for service in SERVICES:  # with maxUnavailable 1, a drain keeps one pod serving
            assert scalers[service]["spec"]["minReplicas"] >= 2, service


def test_pods_run_unprivileged_on_a_read_only_root(tree):
    name, objects = tree
    deployments = of_kind(objects, "Deployment")
    for service in SERVICES:
        pod = deployments[service]["spec"]["template"]["spec"]
        spec = container(deployments[service])
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False, f"{service} never calls the Kubernetes API"
        sc = spec["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
        tmp = next(m for m in spec["volumeMounts"] if m["mountPath"] == "/tmp")
        volume = next(v for v in pod["volumes"] if v["name"] == tmp["name"])
        assert volume["emptyDir"]["medium"] == "Memory", f"{name}: {service} /tmp must not reach a disk"


def test_each_service_gets_what_compose_gives_it(tree):
    name, objects = tree
    deployments = of_kind(objects, "Deployment")
    for service in SERVICES:
        env = environment(objects, deployments[service])
        missing = sorted(set(compose_environment(service)) - set(env))
        assert not missing, f"{name}: {service} lacks {missing}"
        assert env["FS_BIND_HOST"] == "0.0.0.0", "probes and Services reach the pod's address, not its loopback"
        assert ("FS_AUTH_SECRET" in env) == (service in HTTP_PORT_SETTING), f"{service}: the token key only where used"
        s = settings_from(env)
        if service in HTTP_PORT_SETTING:
            http = {p["name"]: p["containerPort"] for p in container(deployments[service])["ports"]}["http"]
            assert http == int(env[HTTP_PORT_SETTING[service]])
        assert s.kafka_enable_idempotence, "Apache Kafka: the idempotent producer on"
        services = of_kind(objects, "Service")
        if service in HTTP_PORT_SETTING:
            ports = {p["name"]: p for p in services[service]["spec"]["ports"]}
            assert ports["http"]["port"] == int(env[HTTP_PORT_SETTING[service]])
            assert ports["metrics"]["port"] == s.metrics_port(service)


def test_every_fs_variable_is_a_setting(tree):
    """The settings model ignores unknown variables, so a misspelt one would silently keep its default."""
    name, objects = tree
    fields = set(Settings.model_fields)
    for deployment in of_kind(objects, "Deployment").values():
        env = environment(objects, deployment)
        unknown = sorted(k for k in env if k.startswith("FS_") and k[3:].lower() not in fields)
        assert not unknown, f"{name}: {deployment['metadata']['name']} sets {unknown}, not fields of Settings"


def test_base_secrets_are_placeholders_that_cannot_run():
    """Applied unchanged, the base must not run with keys anyone can read in this repository."""
    objects = rendered("base")
    env = environment(objects, of_kind(objects, "Deployment")["upload"])
    with pytest.raises(ValueError):
        decode_master_key(env["FS_MASTER_KEY"])
    assert env["FS_AUTH_SECRET"] == "", "an empty token key refuses every request; a known one admits anyone"
    assert "REPLACE_ME" in env["FS_DATABASE_URL"] and env["FS_S3_SECRET_KEY"] == "REPLACE_ME"


def test_network_policies_deny_by_default_and_admit_only_what_must_talk(tree):
    name, objects = tree
    policies = of_kind(objects, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert not deny.get("ingress") and not deny.get("egress")
    to_clamd = [p for p in policies.values() if any(port.get("port") == 3310 for rule in p["spec"].get("egress", [])
                                                    for port in rule.get("ports", []))]
    assert [p["spec"]["podSelector"]["matchLabels"] for p in to_clamd] == [{"app.kubernetes.io/name": "sanitizer"}]
    metrics = policies["metrics-from-monitoring"]["spec"]["ingress"]
    assert metrics == [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                        "ports": [{"protocol": "TCP", "port": "metrics"}]}]
    http_open = {p["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/name")
                 for p in policies.values() for rule in p["spec"].get("ingress", [])
                 if "from" not in rule and any(port.get("port") == "http" for port in rule.get("ports", []))}
    assert http_open == {"upload", "delivery"}, f"{name}: only the public HTTP APIs are open to clients"


def stage_groups() -> dict[str, str]:
    """The consumer group each stream processor reads its stage's topic with, from the real services."""
    env = environment(rendered("trial"), of_kind(rendered("trial"), "Deployment")["sanitizer"])
    s = settings_from(env)
    groups = {}
    for service in STREAM_PROCESSORS:
        built = importlib.import_module(f"services.{service}.app").bootstrap(s)
        groups[service] = next(p.group_id for p in built.processors if p.name == service)
    return groups


def test_lag_overlay_scales_each_stream_processor_on_its_own_group():
    scalers = of_kind(rendered("lag"), "HorizontalPodAutoscaler")
    for service, group in stage_groups().items():
        metrics = scalers[service]["spec"]["metrics"]
        external = [m["external"] for m in metrics if m["type"] == "External"]
        assert len(external) == 1, service
        assert external[0]["metric"]["name"] == "kafka_consumergroup_lag"
        assert external[0]["metric"]["selector"]["matchLabels"] == {"consumergroup": group}
        assert external[0]["target"]["type"] == "AverageValue"
    assert all(m["type"] == "Resource" for m in scalers["upload"]["spec"]["metrics"])


def test_trial_runs_its_own_kafka_postgres_minio_and_clamd():
    objects = rendered("trial")
    sets, services = of_kind(objects, "StatefulSet"), of_kind(objects, "Service")
    assert set(sets) == {"kafka", "postgres", "minio", "clamd"}
    assert all(s["spec"]["replicas"] == 1 for s in sets.values())
    kafka = container(sets["kafka"])
    kafka_env = {v["name"]: v.get("value") for v in kafka["env"]}
    assert kafka["image"].startswith("apache/kafka:")
    assert set(kafka_env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}, "KRaft, no ZooKeeper"
    assert int(kafka_env["KAFKA_MESSAGE_MAX_BYTES"]) >= MAX_MESSAGE_BYTES
    assert sets["kafka"]["spec"]["template"]["spec"]["enableServiceLinks"] is False, "KAFKA_PORT would be read"
    env = environment(objects, of_kind(objects, "Deployment")["sanitizer"])
    s = settings_from(env)
    for address, target in ((s.kafka_bootstrap, "kafka"), (s.s3_endpoint, "minio"), (s.clamd, "clamd"),
                            (re.search(r"@([^/]+)/", s.database_url)[1], "postgres")):
        host, port = address.rsplit(":", 1)
        assert host == target and int(port) in {p["port"] for p in services[target]["spec"]["ports"]}, address
    postgres_password = next(v for v in container(sets["postgres"])["env"] if v["name"] == "POSTGRES_PASSWORD")
    ref = postgres_password["valueFrom"]["secretKeyRef"]
    password = base64.b64decode(of_kind(objects, "Secret")[ref["name"]]["data"][ref["key"]]).decode()
    assert f"fileshare:{password}@" in s.database_url
    clamd_conf = next(iter(of_kind(objects, "ConfigMap")[n] for n in of_kind(objects, "ConfigMap")
                           if n.startswith("clamd-config")))["data"]["clamd.conf"]
    assert re.search(r"^AlertExceedsMax yes$", clamd_conf, re.M), "over-limit files must never come back clean"


def test_trial_environment_builds_every_service():
    """What `kubectl apply -k overlays/trial` hands each container is enough for the service to start:
    a real master key, the scanner configured, a token key where tokens are checked."""
    objects = rendered("trial")
    deployments = of_kind(objects, "Deployment")
    for service in SERVICES:
        env = environment(objects, deployments[service])
        decode_master_key(env["FS_MASTER_KEY"])
        if service in HTTP_PORT_SETTING:
            assert len(env["FS_AUTH_SECRET"]) >= 32
        importlib.import_module(f"services.{service}.app").bootstrap(settings_from(env))
    jobs = of_kind(objects, "Job")
    script = container(jobs["minio-buckets"])["args"][0]
    assert "mc --config-dir /tmp/mc version enable" in script and "mb --ignore-existing" in script


# NetworkPolicy semantics, enough for these manifests: a pod selected by no policy of a direction
# is open in it; else a connection needs one rule of a selecting policy that matches peer and port.
class Pod:
    def __init__(self, labels: dict, namespace: str | None = NAMESPACE, ports: dict[str, int] | None = None):
        self.labels, self.namespace, self.ports = labels, namespace, ports or {}


def selects(selector: dict, labels: dict) -> bool:
    assert not selector.get("matchExpressions"), "this check knows matchLabels only"
    return selector.get("matchLabels", {}).items() <= labels.items()


def peer_matches(peer: dict, other: Pod) -> bool:
    assert "ipBlock" not in peer, "this check does not model ipBlocks"
    if other.namespace is None:  # outside the cluster: only an ipBlock (or no `to`/`from`) admits it
        return False
    namespace_labels = {"kubernetes.io/metadata.name": other.namespace}
    in_namespace = (selects(peer["namespaceSelector"], namespace_labels) if "namespaceSelector" in peer
                    else other.namespace == NAMESPACE)
    return in_namespace and selects(peer.get("podSelector", {}), other.labels)


def admits(policies: list[dict], direction: str, pod: Pod, other: Pod, port: int, port_owner: Pod) -> bool:
    if pod.namespace != NAMESPACE:
        return True  # these manifests set no policy elsewhere
    applicable = [p["spec"] for p in policies
                  if direction in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], pod.labels)]
    peers_key = "from" if direction == "Ingress" else "to"
    for spec in applicable:
        for rule in spec.get(direction.lower(), []):
            peer_ok = peers_key not in rule or any(peer_matches(peer, other) for peer in rule[peers_key])
            port_ok = "ports" not in rule or any(
                p["port"] == port or port_owner.ports.get(p["port"]) == port for p in rule["ports"])
            if peer_ok and port_ok:
                return True
    return not applicable


def can_connect(objects: list[dict], source: Pod, target: Pod, port: int) -> bool:
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    return (admits(policies, "Egress", source, target, port, target)
            and admits(policies, "Ingress", target, source, port, target))


def pods(objects: list[dict]) -> dict[str, Pod]:
    found = {}
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "Job"):
            template = o["spec"]["template"]
            ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
            found[o["metadata"]["name"]] = Pod(template["metadata"]["labels"], NAMESPACE, ports)
    return found


OUTSIDE = Pod({}, None)  # a browser, the platform, a managed Kafka or S3 outside the cluster
PROMETHEUS = Pod({"app.kubernetes.io/name": "prometheus"}, "monitoring")
KUBE_DNS = Pod({"k8s-app": "kube-dns"}, "kube-system")


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


def options(conf: str) -> dict[str, str]:
    return dict(line.split(None, 1) for line in conf.splitlines() if line.strip() and not line.startswith("#"))


def test_trial_kafka_and_clamd_are_configured_like_compose():
    """docker-compose.yml is the production shape: the trial's Kafka and clamd differ from it only where
    Kubernetes needs it."""
    objects = rendered("trial")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    kafka = {v["name"]: v["value"] for v in container(of_kind(objects, "StatefulSet")["kafka"])["env"]}
    # Single process: its controller on localhost; logs below the volume's lost+found; a bounded heap.
    differs = {"KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_LOG_DIRS", "KAFKA_HEAP_OPTS"}
    expected = {k: str(v) for k, v in compose["services"]["kafka"]["environment"].items()}
    assert {k: v for k, v in kafka.items() if k not in differs} == {k: v for k, v in expected.items()
                                                                    if k not in differs}
    conf = next(o for name, o in of_kind(objects, "ConfigMap").items() if name.startswith("clamd-config"))
    assert options(conf["data"]["clamd.conf"]) == options(compose["configs"]["clamd_conf"]["content"])


def pod_address() -> str:
    """This machine's own non-loopback IPv4 address, standing for the pod IP the kubelet probes."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        address = s.getsockname()[0]
    if address.startswith("127."):
        pytest.skip("this machine has no non-loopback IPv4 address to probe")
    return address


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
