"""Rendering deploy/k8s with the real `kubectl kustomize`, and reading what it renders: objects by kind,
a container's resolved environment, and enough NetworkPolicy semantics to ask who may talk to whom."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
TREES = {"base": K8S / "base", "lag": K8S / "overlays" / "lag", "trial": K8S / "overlays" / "trial"}
SERVICES = ("upload", "sanitizer", "resizer", "delivery", "retention")
STREAM_PROCESSORS = ("sanitizer", "resizer", "delivery", "retention")
HTTP_PORT_SETTING = {"upload": "FS_UPLOAD_PORT", "delivery": "FS_DELIVERY_PORT"}
NAMESPACE = "fileshare"


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail(
            "kubectl is not on PATH: install it (Debian: apt-get install kubernetes-client; .ci/run does) "
            "to render deploy/k8s with `kubectl kustomize`"
        )
    return found


# Each tree is rendered once per session: kubectl is the slow part.
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
    in_namespace = (
        selects(peer["namespaceSelector"], namespace_labels)
        if "namespaceSelector" in peer
        else other.namespace == NAMESPACE
    )
    return in_namespace and selects(peer.get("podSelector", {}), other.labels)


def admits(policies: list[dict], direction: str, pod: Pod, other: Pod, port: int, port_owner: Pod) -> bool:
    if pod.namespace != NAMESPACE:
        return True  # these manifests set no policy elsewhere
    applicable = [
        p["spec"]
        for p in policies
        if direction in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], pod.labels)
    ]
    peers_key = "from" if direction == "Ingress" else "to"
    for spec in applicable:
        for rule in spec.get(direction.lower(), []):
            peer_ok = peers_key not in rule or any(peer_matches(peer, other) for peer in rule[peers_key])
            port_ok = "ports" not in rule or any(
                p["port"] == port or port_owner.ports.get(p["port"]) == port for p in rule["ports"]
            )
            if peer_ok and port_ok:
                return True
    return not applicable


def can_connect(objects: list[dict], source: Pod, target: Pod, port: int) -> bool:
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    return admits(policies, "Egress", source, target, port, target) and admits(
        policies, "Ingress", target, source, port, target
    )


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
