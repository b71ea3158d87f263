"""A real Prometheus (the Debian package) scrapes `fileshare run` (what `make run` runs) with the
project's configuration and alert rules: every target is up, every rule group evaluates on the real
series without an error, each service exports its series, every dashboard expression is a query
Prometheus accepts, and a malware file makes its alert fire."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import yaml

from shared.devstack.embedded import free_port, free_port_block
from shared.settings import METRICS_PORT_OFFSETS
from tests import imagecorpus as corpus
from tests.launcher import client_of, launched, run_env, send_malware, wait_all_ready
from tests.metric_names import LAUNCHER_METRIC, exported_names
from tests.support import unique, wait_until

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
LAUNCHER_OFFSET = 5  # the launcher's metrics: the port after the five services'


def prometheus_config(base: int, tmp_path: Path) -> tuple[Path, set[str]]:
    """deploy/prometheus/make-run.yml on this run's ports, scraping and evaluating every second.
    The launcher's job stays only once the code exports its broker metrics."""
    config = yaml.safe_load((PROMETHEUS_DIR / "make-run.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS_DIR / "alerts.yml")]
    offsets = {**METRICS_PORT_OFFSETS, "launcher": LAUNCHER_OFFSET}
    if LAUNCHER_METRIC not in exported_names():
        del offsets["launcher"]
    jobs = [job for job in config["scrape_configs"] if job["job_name"] in offsets]
    for job in jobs:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{base + offsets[job['job_name']]}"]}]
    config["scrape_configs"] = jobs
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path, {job["job_name"] for job in jobs}


def start_prometheus(config: Path, tmp_path: Path) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: sudo apt-get install -y prometheus"
    port = free_port()
    with open(tmp_path / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, f"http://127.0.0.1:{port}"


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def api(url: str, path: str, **params) -> dict:
    return httpx.get(f"{url}/api/v1/{path}", params=params, timeout=5).json()


def targets_up(url: str, jobs: set[str]) -> dict | None:
    active = api(url, "targets").get("data", {}).get("activeTargets", [])
    health = {t["labels"]["job"]: t["health"] for t in active}
    return health if set(health) == jobs and all(h == "up" for h in health.values()) else None


def rules_evaluated(url: str) -> list | None:
    """The rule groups once every rule has been evaluated (health no longer "unknown")."""
    groups = api(url, "rules").get("data", {}).get("groups", [])
    rules = [rule for group in groups for rule in group["rules"]]
    return groups if rules and all(rule["health"] != "unknown" for rule in rules) else None


def query(url: str, expr: str) -> list:
    answer = api(url, "query", query=expr)
    assert answer.get("status") == "success", (expr, answer)
    return answer["data"]["result"]


def send_photos(env: dict[str, str], count: int) -> None:
    client = client_of(env)
    account, conversation = unique("acct"), unique("conv")
    client.enable_account(account)
    client.open_conversation(account, conversation, unique("consumer"))
    ids = []
    for seed in range(count):
        answer = client.upload(account, conversation, corpus.to_jpeg(corpus.photo(640, 480, seed=seed)))
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["file_id"])
    client.wait_published(account, ids)


def test_prometheus_scrapes_make_run_and_the_rules_evaluate_on_real_series(tmp_path):
    base = free_port_block(LAUNCHER_OFFSET + 1)
    env = run_env(tmp_path, FS_METRICS_PORT_BASE=str(base))
    with launched(env, tmp_path / "run.log") as stack:
        wait_all_ready(stack, tmp_path / "run.log", env)
        send_photos(env, 2)
        config, jobs = prometheus_config(base, tmp_path)
        prometheus, url = start_prometheus(config, tmp_path)
        try:
            wait_until(
                lambda: prometheus.poll() is not None or ready(url),
                timeout=60,
                interval=0.2,
                what="Prometheus to be ready",
            )
            assert prometheus.poll() is None, (tmp_path / "prometheus.log").read_text()
            health = wait_until(
                lambda: targets_up(url, jobs), timeout=60, interval=0.5, what="every target up in Prometheus"
            )
            assert set(health) >= set(METRICS_PORT_OFFSETS)

            groups = wait_until(
                lambda: rules_evaluated(url), timeout=60, interval=0.5, what="every rule group evaluated"
            )
            names = {group["name"] for group in groups}
            assert names == {g["name"] for g in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]}
            for group in groups:
                for rule in group["rules"]:
                    assert (rule["health"], rule.get("lastError", "")) == ("ok", ""), (group["name"], rule)
            assert firing(url) == {}

            check_series(url, jobs)
            for expr in dashboard_expressions():
                query(url, expr)

            # A rule fires on the real series: the rejection counter was scraped at 0 before, so
            # increase() sees the first malware file (a counter born at 1 would show no increase).
            send_malware(env)
            alerts = wait_until(
                lambda: firing(url).get("FileshareMalwareDetected") and firing(url),
                timeout=60,
                interval=0.5,
                what="FileshareMalwareDetected to fire",
            )
            assert set(alerts) == {"FileshareMalwareDetected"}
            assert alerts["FileshareMalwareDetected"]["runbook_url"] == "docs/runbook.md#filesharemalwaredetected"
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=30)


def firing(url: str) -> dict[str, dict]:
    """The firing alerts: {alertname: annotations}."""
    return {
        a["labels"]["alertname"]: a["annotations"]
        for a in api(url, "alerts")["data"]["alerts"]
        if a["state"] == "firing"
    }


def check_series(url: str, jobs: set[str]) -> None:
    """Each service's own series reach Prometheus, and the ones the alerts read carry real values."""
    per_job = {
        r["metric"]["job"]: float(r["value"][1]) for r in query(url, 'count by (job) ({__name__=~"fileshare_.+"})')
    }
    assert set(per_job) == jobs and all(per_job.values()), per_job
    assert float(query(url, 'sum(fileshare_upload_to_publish_seconds_count{job="delivery"})')[0]["value"][1]) >= 2
    assert float(query(url, 'sum(fileshare_http_responses_total{job="upload", code="2xx"})')[0]["value"][1]) >= 2
    assert [r["value"][1] for r in query(url, 'fileshare_scanner_enabled{job="sanitizer"}')] == ["1"]
    stages = {r["metric"]["stage"] for r in query(url, 'fileshare_oldest_unfinished_file_seconds{job="upload"}')}
    assert stages == {"uploaded", "sanitized", "resized"}
    zero = query(url, 'fileshare_dependency_errors_total{job="sanitizer", dependency="clamd"}')
    assert len(zero) == 1, "a counter that never moved is still a series"


def dashboard_expressions() -> list[str]:
    """The dashboard's queries with Grafana's $__rate_interval as Prometheus takes it."""
    panels = json.loads((REPO / "deploy" / "grafana" / "fileshare.json").read_text())["panels"]
    return [target["expr"].replace("$__rate_interval", "1m") for panel in panels for target in panel.get("targets", [])]
