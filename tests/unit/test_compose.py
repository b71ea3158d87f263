"""Static checks of docker-compose.yml (the production shape) against the settings model.

No Docker engine runs on this machine, so the compose file cannot be started here:
these tests only parse it with PyYAML (merge keys resolved) and check it is consistent with
`shared.settings.Settings`, the Dockerfile and the contract (ports, secrets, buckets, limits).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from shared.contract.topics import MAX_MESSAGE_BYTES
from shared.settings import METRICS_PORT_OFFSETS, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_PATH = ROOT / "docker-compose.yml"
APP_SERVICES = ("upload", "sanitizer", "resizer", "delivery", "retention")
SECRETS = ("FS_S3_ACCESS_KEY", "FS_S3_SECRET_KEY", "FS_MASTER_KEY", "FS_AUTH_SECRET")
NEEDED_BY_ALL = (
    "FS_DATABASE_URL",
    "FS_KAFKA_BOOTSTRAP",
    "FS_S3_ENDPOINT",
    "FS_S3_ACCESS_KEY",
    "FS_S3_SECRET_KEY",
    "FS_MASTER_KEY",
    "FS_METRICS_PORT_BASE",
)
NEEDED_BY = {
    "upload": ("FS_AUTH_SECRET", "FS_UPLOAD_PORT"),
    "delivery": ("FS_AUTH_SECRET", "FS_DELIVERY_PORT"),
    "sanitizer": ("FS_CLAMD",),
    "resizer": (),
    "retention": (),
}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|MASTER_KEY|ACCESS_KEY|AUTH|TOKEN", re.I)
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


@pytest.fixture(scope="module")
def raw() -> str:
    return COMPOSE_PATH.read_text()


@pytest.fixture(scope="module")
def compose(raw) -> dict:
    return yaml.safe_load(raw)


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}


def settings_field(var: str) -> str:
    assert var.startswith("FS_")
    return var[3:].lower()


def test_five_services_run_their_modules(compose):
    services = compose["services"]
    for name in APP_SERVICES:
        assert name in services, f"service {name} missing"
        assert services[name]["command"] == ["python", "-m", f"services.{name}"]


def test_service_packages_have_entry_points():
    for name in APP_SERVICES:
        pkg = ROOT / "services" / name
        assert (pkg / "__init__.py").is_file(), f"services/{name} is not a package"
        assert (pkg / "__main__.py").is_file(), f"`python -m services.{name}` needs services/{name}/__main__.py"


def test_every_fs_variable_is_a_settings_field(compose, raw):
    fields = set(Settings.model_fields)
    used = set()
    for service in compose["services"].values():
        used |= {k for k in env_of(service) if k.startswith("FS_")}
    used |= {v for v in INTERPOLATION.findall(raw) if v.startswith("FS_")}
    assert used, "no FS_* variables found"
    unknown = sorted(v for v in used if settings_field(v) not in fields)
    assert not unknown, f"not fields of shared.settings.Settings: {unknown}"


def test_every_service_has_what_it_needs(compose):
    for name in APP_SERVICES:
        env = env_of(compose["services"][name])
        missing = [v for v in NEEDED_BY_ALL + NEEDED_BY[name] if not env.get(v)]
        assert not missing, f"{name} lacks {missing}"
        assert env["FS_KAFKA_BOOTSTRAP"].split(":")[0] == "kafka"
        assert env["FS_S3_ENDPOINT"].split(":")[0] == "minio"
        assert env.get("FS_KAFKA_ENABLE_IDEMPOTENCE", "").lower() == "true", "real Kafka: idempotence on"
        # Values must parse with the real settings model.
        Settings(**{settings_field(k): v for k, v in env.items() if k.startswith("FS_") and "${" not in v})


def test_secrets_come_only_from_the_environment(compose):
    for name, service in compose["services"].items():
        for key, value in env_of(service).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+(:[?-][^}]*)?\}", value), (
                    f"{name}.{key} must be interpolated from the environment, got a literal"
                )
    for name in APP_SERVICES:
        env = env_of(compose["services"][name])
        for secret in SECRETS:
            if secret in env:  # required, and named like the variable itself
                assert env[secret].startswith("${" + secret + ":?"), f"{name}.{secret}: use ${{{secret}:?...}}"


def test_auth_secret_only_where_tokens_are_checked(compose):
    holders = {n for n in APP_SERVICES if "FS_AUTH_SECRET" in env_of(compose["services"][n])}
    assert holders == {"upload", "delivery"}


def test_dockerfile_exists_and_copies_real_paths(compose):
    dockerfiles = set()
    for name in APP_SERVICES:
        build = compose["services"][name]["build"]
        context = ROOT / build.get("context", ".")
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{dockerfile} missing"
        dockerfiles.add(dockerfile)
    assert len(dockerfiles) == 1, "one image for all five services"
    text = dockerfiles.pop().read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert "uv sync --frozen --no-default-groups" in text, "no embedded servers or test tools in the image"
    assert re.search(r"^USER (?!root)\S+", text, re.M), "must run as a non-root user"
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        for src in line.split()[:-1]:
            assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"


def test_ports_follow_the_contract(compose):
    s = Settings()
    services = compose["services"]
    assert "8080:8080" in services["upload"]["ports"]
    assert "8081:8081" in services["delivery"]["ports"]
    for name in APP_SERVICES:
        metrics = s.metrics_port(name)
        assert str(metrics) in [str(p) for p in services[name].get("expose", [])], f"{name} metrics port"
        probe = " ".join(services[name]["healthcheck"]["test"])
        http_port = {"upload": s.upload_port, "delivery": s.delivery_port}.get(name, metrics)
        assert f"127.0.0.1:{http_port}/readyz" in probe, f"{name} healthcheck should probe /readyz"
    assert sorted(METRICS_PORT_OFFSETS) == sorted(APP_SERVICES)


def test_dependencies_wait_for_health(compose):
    services = compose["services"]
    for name in APP_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy"
        assert deps["minio-init"]["condition"] == "service_completed_successfully"
    assert services["sanitizer"]["depends_on"]["clamd"]["condition"] == "service_healthy"
    for service in services.values():
        for dep, cond in (service.get("depends_on") or {}).items():
            if cond.get("condition") == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep} needs a healthcheck"
    clamd_target = env_of(services["sanitizer"])["FS_CLAMD"]
    assert clamd_target == "clamd:3310"


def test_kafka_kraft_and_large_records(compose):
    env = env_of(compose["services"]["kafka"])
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka")
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "broker" in env["KAFKA_PROCESS_ROLES"]
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= max(8 * 1024 * 1024, MAX_MESSAGE_BYTES)
    assert int(env["KAFKA_REPLICA_FETCH_MAX_BYTES"]) >= int(env["KAFKA_MESSAGE_MAX_BYTES"])


def test_minio_buckets_versioned(compose):
    s = Settings()
    script = " ".join(compose["services"]["minio-init"]["command"])
    for bucket in (s.s3_bucket, s.s3_key_bucket):
        assert bucket in script
    assert "mc mb --ignore-existing" in script and "mc version enable" in script
    for name in APP_SERVICES:
        env = env_of(compose["services"][name])
        assert env["FS_S3_BUCKET"] == s.s3_bucket and env["FS_S3_KEY_BUCKET"] == s.s3_key_bucket


def test_clamd_never_reports_over_limit_files_clean(compose):
    conf = compose["configs"]["clamd_conf"]["content"]
    options = dict(line.split(None, 1) for line in conf.splitlines() if line.strip() and not line.startswith("#"))
    assert options["AlertExceedsMax"].strip() == "yes"
    assert options["TCPSocket"].strip() == "3310"

    def size(v: str) -> int:
        v = v.strip().upper()
        return int(v[:-1]) * 1024 * 1024 if v.endswith("M") else int(v)

    for key in ("StreamMaxLength", "MaxFileSize", "MaxScanSize"):
        assert size(options[key]) > Settings().max_upload_bytes


def test_prometheus_scrapes_every_metrics_port():
    conf = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    s = Settings()
    jobs = {job["job_name"]: job for job in conf["scrape_configs"]}
    for name in APP_SERVICES:
        text = str(jobs[name])
        assert str(s.metrics_port(name)) in text
