"""The Kubernetes manifests (deploy/k8s): rendered by the real `kubectl kustomize`, every object checked
against the Kubernetes schemas with kubernetes-validate, then what an operator relies on: each service
has its probes on the contract's endpoints, requests and limits, a PodDisruptionBudget and an
autoscaler, runs unprivileged, and gets every variable docker-compose.yml gives it.

No cluster runs here, so nothing is applied: the trial overlay's environment is instead handed to each
service's real `bootstrap`, which builds the service (keys, scanner, consumers) without connecting.
"""

from __future__ import annotations

import base64
import importlib
import re

import kubernetes_validate
import pytest
import yaml

from shared.adapters.crypto import decode_master_key
from shared.contract.topics import MAX_MESSAGE_BYTES
from shared.settings import Settings
from tests.k8ssupport import (
    HTTP_PORT_SETTING,
    NAMESPACE,
    ROOT,
    SERVICES,
    STREAM_PROCESSORS,
    TREES,
    compose_environment,
    container,
    environment,
    of_kind,
    port_number,
    quantity,
    rendered,
    settings_from,
)

# The oldest release its schemas cover that we promise, and the newest it ships.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


@pytest.fixture(scope="module", params=sorted(TREES))
def tree(request) -> tuple[str, list[dict]]:
    """(name, rendered objects) of each tree: the base and every overlay."""
    return request.param, rendered(request.param)


def test_every_object_is_valid_against_the_kubernetes_schemas(tree):
    name, objects = tree
    assert objects, f"{name} renders nothing"
    for version in K8S_VERSIONS:
        for obj in objects:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(
                    f"{name}: {obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {version}: "
                    f"{e.message} at {'.'.join(map(str, e.path))}"
                )


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
        # /healthz is also served on the metrics port from the process's first second (shared/runtime/metrics.py).
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
            (api,) = services[service]["spec"]["ports"]
            assert (api["name"], api["port"]) == ("http", int(env[HTTP_PORT_SETTING[service]]))
        # Headless, not-ready pods included: Prometheus finds every pod by DNS, the stuck one first.
        metrics = services[f"{service}-metrics"]["spec"]
        assert metrics["clusterIP"] == "None" and metrics["publishNotReadyAddresses"] is True
        assert [p["port"] for p in metrics["ports"]] == [s.metrics_port(service)]


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
    for address, target in (
        (s.kafka_bootstrap, "kafka"),
        (s.s3_endpoint, "minio"),
        (s.clamd, "clamd"),
        (re.search(r"@([^/]+)/", s.database_url)[1], "postgres"),
    ):
        host, port = address.rsplit(":", 1)
        assert host == target and int(port) in {p["port"] for p in services[target]["spec"]["ports"]}, address
    postgres_password = next(v for v in container(sets["postgres"])["env"] if v["name"] == "POSTGRES_PASSWORD")
    ref = postgres_password["valueFrom"]["secretKeyRef"]
    password = base64.b64decode(of_kind(objects, "Secret")[ref["name"]]["data"][ref["key"]]).decode()
    assert f"fileshare:{password}@" in s.database_url
    clamd_conf = next(
        iter(of_kind(objects, "ConfigMap")[n] for n in of_kind(objects, "ConfigMap") if n.startswith("clamd-config"))
    )["data"]["clamd.conf"]
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
    assert {k: v for k, v in kafka.items() if k not in differs} == {
        k: v for k, v in expected.items() if k not in differs
    }
    conf = next(o for name, o in of_kind(objects, "ConfigMap").items() if name.startswith("clamd-config"))
    assert options(conf["data"]["clamd.conf"]) == options(compose["configs"]["clamd_conf"]["content"])


def test_trial_database_takes_every_connection_the_autoscalers_can_open():
    """Each pod keeps up to FS_DATABASE_POOL_SIZE connections: at every autoscaler's maximum, the trial's
    PostgreSQL must still accept them all (its default, 100, is reached by ten pods)."""
    objects = rendered("trial")
    deployments, scalers = of_kind(objects, "Deployment"), of_kind(objects, "HorizontalPodAutoscaler")
    pool_size = {s: settings_from(environment(objects, deployments[s])).database_pool_size for s in SERVICES}
    needed = sum(scalers[s]["spec"]["maxReplicas"] * pool_size[s] for s in SERVICES)
    args = container(of_kind(objects, "StatefulSet")["postgres"])["args"]
    max_connections = int(next(a.split("=", 1)[1] for a in args if a.startswith("max_connections=")))
    assert needed + 10 <= max_connections, f"{needed} connections at full scale, max_connections {max_connections}"
