"""Dashboards as code (deploy/observability/), proved without running the stack: Debian's
promtool accepts the scrape configurations (compose's, and the native one rendered for a
port block) and the rules, the alerts fire on the series they are meant for (`promtool test
rules`), the generated files are current, each scrape job reaches a process that exists
where it runs, and Grafana's provisioning fits the dashboard and compose's mounts. That
every metric they read is exported is proved against real scrapes (tests/e2e)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml

from deploy.devstack.config import PROCESSES
from deploy.observability import dashboard, scrape
from deploy.observability.promql import metric_names
from deploy.observability.queries import names_services_must_export, recorded_names, rules

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "deploy" / "observability"
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
GRAFANA = OBSERVABILITY / "grafana"


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: `make install` installs Debian's prometheus package"
    return subprocess.run(
        [binary, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def mounts(service: dict) -> dict[str, str]:
    return {spec.split(":")[1]: spec.split(":")[0] for spec in service.get("volumes", [])}


# --- promtool --------------------------------------------------------------------------------


def test_promtool_accepts_the_compose_configuration_and_its_rules():
    checked = promtool("check", "config", scrape.COMPOSE_CONFIG)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    assert "rules found" in checked.stdout  # it followed rule_files to the rules


def test_promtool_accepts_the_native_configuration_rendered_for_a_port_block(tmp_path):
    config = tmp_path / "prometheus.yml"
    config.write_text(scrape.render_native(18300))
    checked = promtool("check", "config", config)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "rules found" in checked.stdout


def test_promtool_accepts_the_rules():
    checked = promtool("check", "rules", *sorted(scrape.RULES_DIR.glob("*.yml")))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_each_alert_fires_on_the_series_it_is_meant_for():
    tests = OBSERVABILITY / "prometheus" / "tests" / "videoflix.test.yml"
    result = promtool("test", "rules", tests)
    assert result.returncode == 0, result.stdout + result.stderr
    cases = [
        case
        for t in yaml.safe_load(tests.read_text())["tests"]
        for case in t.get("alert_rule_test", [])
    ]
    tested = {case["alertname"] for case in cases}
    assert tested == {rule["alert"] for rule in rules() if "alert" in rule}


def test_promtool_refuses_a_broken_rule(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: sum(\n")
    assert promtool("check", "rules", broken).returncode != 0


# --- generated files -------------------------------------------------------------------------


def test_generated_files_are_current():
    assert scrape.COMPOSE_CONFIG.read_text() == scrape.render_compose(), (
        "run `python -m deploy.observability write`"
    )
    assert dashboard.DASHBOARD_FILE.read_text() == dashboard.render(), (
        "run `python -m deploy.observability write`"
    )


# --- scrape jobs -----------------------------------------------------------------------------


def jobs_of(config_text: str) -> dict[str, dict]:
    return {job["job_name"]: job for job in yaml.safe_load(config_text)["scrape_configs"]}


def test_compose_jobs_reach_every_long_running_application_container():
    jobs = jobs_of(scrape.render_compose())
    applications = {
        name
        for name, service in SERVICES.items()
        if "build" in service and service.get("restart") != "no"
    }
    assert set(jobs) == applications | {"prometheus"}
    for name in applications:
        env = SERVICES[name]["environment"]
        assert env.get("HTTP_PORT", "8000") == str(scrape.COMPOSE_PORT), name
    assert jobs["transcoder-worker"]["dns_sd_configs"][0]["names"] == ["transcoder-worker"]
    assert jobs["auth"]["static_configs"][0]["targets"] == ["auth:8000"]


def test_native_jobs_follow_the_launchers_port_layout():
    base = 18300
    jobs = jobs_of(scrape.render_native(base))
    expected = {p.name: base + p.port_offset for p in PROCESSES if p.health_path is not None}
    expected["prometheus"] = base + scrape.PROMETHEUS_OFFSET
    targets = {name: job["static_configs"][0]["targets"] for name, job in jobs.items()}
    assert targets == {name: [f"127.0.0.1:{port}"] for name, port in expected.items()}
    assert scrape.PROMETHEUS_OFFSET not in {p.port_offset for p in PROCESSES}


def test_compose_runs_prometheus_with_the_committed_configuration():
    prometheus = SERVICES["prometheus"]
    assert mounts(prometheus)["/etc/prometheus"] == "./deploy/observability/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert prometheus["ports"] == ["127.0.0.1:${PROMETHEUS_PORT:-9090}:9090"]


# --- Grafana ---------------------------------------------------------------------------------


def test_grafana_provisions_the_data_source_and_the_dashboard_compose_mounts():
    grafana = SERVICES["grafana"]
    assert (
        mounts(grafana)["/etc/grafana/provisioning"]
        == "./deploy/observability/grafana/provisioning"
    )
    dashboards_at = next(t for t, s in mounts(grafana).items() if s.endswith("grafana/dashboards"))
    [provider] = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "videoflix.yml").read_text()
    )["providers"]
    assert provider["options"]["path"] == dashboards_at
    assert provider["allowUiUpdates"] is False
    [source] = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    assert source["url"] == f"http://prometheus:{scrape.PROMETHEUS_PORT}"
    assert source["uid"] == dashboard.DATASOURCE["uid"]
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"  # anyone who reaches it only looks
    assert env["GF_AUTH_DISABLE_LOGIN_FORM"] == "true"
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].startswith(dashboards_at + "/")


def test_dashboard_panels_query_the_provisioned_prometheus():
    board = json.loads(dashboard.DASHBOARD_FILE.read_text())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    assert {p["type"] for p in panels} <= {"timeseries", "stat"}
    for panel in panels:
        assert panel["datasource"] == dashboard.DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert metric_names(target["expr"]), (panel["title"], target["expr"])


# --- names -----------------------------------------------------------------------------------


def test_metric_names_are_found_in_promql():
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, job) (rate(x_bucket{route!~"/a|/b"}[$__rate_interval])))'
    ) == {"x_bucket"}
    assert metric_names(
        "(a:b:ratio > 0.05) and on (job) (c_total offset 5m > 1e3) unless ignoring (x) d"
    ) == {"a:b:ratio", "c_total", "d"}
    assert metric_names('label_replace(up{job="x"}, "a", "$1", "b", "(.*)")') == {"up"}


# Units and what a count is of: counters `_total`, times `_seconds`, sizes `_bytes`,
# histograms' `_bucket`; gauges name what they count.
CONVENTIONAL_SUFFIXES = (
    "_total", "_seconds", "_bytes", "_bucket", "_events", "_messages", "_connected", "_depth",
    "_running", "_letters",
)  # fmt: skip


def test_names_read_by_rules_and_dashboard_follow_prometheus_conventions():
    for name, readers in names_services_must_export().items():
        assert name.startswith(("videoflix_", "http_")), (name, readers)
        assert name.endswith(CONVENTIONAL_SUFFIXES), (name, readers)
    for name in recorded_names():
        assert name.count(":") == 2, name  # level:metric:operations
