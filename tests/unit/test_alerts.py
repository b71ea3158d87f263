"""The alert rules, the Prometheus configurations and the Grafana dashboard, checked by Prometheus's
own promtool and against the code: every metric they read is one the services export, and every
alert has its runbook entry."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from shared.settings import METRICS_PORT_OFFSETS, Settings
from tests.metric_names import READ, exported_names

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "fileshare.json"
RUNBOOK = REPO / "docs" / "runbook.md"
INSTALL = "sudo apt-get install -y prometheus  # Debian's package brings promtool"


def promtool(*args: str) -> str:
    tool = shutil.which("promtool")
    assert tool, f"promtool is missing: {INSTALL}"
    done = subprocess.run([tool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def alerts() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def runbook_anchors() -> set[str]:
    """The ids MkDocs gives the runbook's headings (lower case, words joined by '-')."""
    headings = re.findall(r"^#{2,3} (.+)$", RUNBOOK.read_text(), re.MULTILINE)
    return {re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", h).strip().lower()) for h in headings}


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def test_the_rules_pass_promtool_check_and_their_unit_tests():
    assert "SUCCESS" in promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


def test_every_alert_is_unit_tested_firing_and_not_firing():
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    evals = [e for t in tests for e in t["alert_rule_test"]]
    for rule in alerts():
        mine = [e for e in evals if e["alertname"] == rule["alert"]]
        assert any(e["exp_alerts"] for e in mine), f"{rule['alert']} is never tested firing"
        assert any(not e["exp_alerts"] for e in mine), f"{rule['alert']} is never tested not firing"


def test_both_prometheus_configurations_are_valid_and_load_the_rules():
    for config in ("make-run.yml", "../prometheus.yml"):
        assert "1 rule files found" in promtool("check", "config", config)


def test_make_run_configuration_scrapes_every_service_and_the_launcher():
    jobs = {
        job["job_name"]: job["static_configs"][0]["targets"]
        for job in yaml.safe_load((PROMETHEUS / "make-run.yml").read_text())["scrape_configs"]
    }
    base = Settings().metrics_port_base
    offsets = {"launcher": 5, **METRICS_PORT_OFFSETS}  # the launcher: the port after the services'
    assert jobs == {name: [f"127.0.0.1:{base + offset}"] for name, offset in offsets.items()}


def test_every_alert_has_a_summary_a_description_and_its_runbook_entry():
    anchors = runbook_anchors()
    for rule in alerts():
        notes = rule["annotations"]
        assert notes.get("summary") and notes.get("description"), rule["alert"]
        page, _, anchor = notes["runbook_url"].partition("#")
        assert page == "docs/runbook.md" and anchor == rule["alert"].lower(), notes["runbook_url"]
        assert anchor in anchors, f"docs/runbook.md has no entry for {rule['alert']}"


def test_every_metric_an_alert_or_a_panel_reads_is_exported_by_the_code():
    exported = exported_names()
    assert {
        "fileshare_upload_to_publish_seconds_bucket",
        "fileshare_scanner_enabled",
        "fileshare_processed_bytes_total",
        "fileshare_oldest_unfinished_file_seconds",
    } <= exported
    read = {
        "alerts.yml": {n for rule in alerts() for n in READ.findall(rule["expr"])},
        "fileshare.json": {n for expr in dashboard_expressions() for n in READ.findall(expr)},
    }
    for where, names in read.items():
        assert names, where
        assert not names - exported, f"{where} reads metrics no code exports"


def test_the_dashboard_shows_every_area_an_alert_watches():
    exprs = " ".join(dashboard_expressions())
    for name in (
        "fileshare_records_total",
        "fileshare_upload_to_publish_seconds_bucket",
        "fileshare_files_rejected_total",
        "fileshare_scanner_enabled",
        "fileshare_redriven_total",
        "fileshare_http_responses_total",
        "fileshare_dependency_errors_total",
        "fileshare_embedded_broker_resident_bytes",
        "fileshare_oldest_unfinished_file_seconds",
    ):
        assert name in exprs, name


def test_the_dashboard_imports_into_any_grafana_with_a_prometheus_data_source():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert [v["name"] for v in dashboard["templating"]["list"] if v["type"] == "datasource"] == ["datasource"]
    for panel in (p for p in panels if p["type"] != "row"):
        targets = panel["targets"]
        assert targets and len({t["refId"] for t in targets}) == len(targets), panel["title"]
        assert {t["datasource"]["uid"] for t in targets} == {"${datasource}"}, panel["title"]
