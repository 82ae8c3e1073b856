"""The operator's view of the stack: the Prometheus it runs with (`make up OBSERVE=1`, or
compose's `--profile observe`) scrapes every process, sees what users do through the
gateway, and holds every metric the dashboard and the alert rules read
(deploy/observability). Prometheus is the one address here that is not the gateway: the
services' /metrics stay internal (test_internal_surfaces_and_text.py), Prometheus reads them.
"""

from __future__ import annotations

from typing import Any

import httpx

from deploy.observability.queries import names_services_must_export
from tests.e2e.helpers import Api, Stack, new_email
from videoflix_testing.plugin import wait_until

# The processes of the stack in compose and natively alike (natively also the dev mail sink).
PROCESSES = {"auth", "catalog", "streaming", "transcoder-dispatcher", "transcoder-worker", "mailer"}
SCRAPE_WAIT_SECONDS = 90  # a 15 s scrape interval, on a busy machine


def prometheus(stack: Stack, path: str, **params: str) -> Any:
    response = httpx.get(f"{stack.prometheus_url}/api/v1/{path}", params=params, timeout=10)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


def scraped_targets(stack: Stack) -> list[dict[str, Any]]:
    """The active targets, once every one of them has been scraped successfully."""
    seen: list[dict[str, Any]] = []

    def all_up() -> bool:
        seen[:] = prometheus(stack, "targets", state="active")["activeTargets"]
        jobs = {t["labels"]["job"] for t in seen}
        return jobs >= PROCESSES and all(t["health"] == "up" for t in seen)

    wait_until(all_up, timeout=SCRAPE_WAIT_SECONDS, interval=2, what="every target scraped, up")
    return seen


def query(stack: Stack, expr: str) -> dict[str, float]:
    """An instant query's result as {job (or "") : value}."""
    result = prometheus(stack, "query", query=expr)["result"]
    return {sample["metric"].get("job", ""): float(sample["value"][1]) for sample in result}


def test_prometheus_scrapes_every_process_and_sees_what_users_do(stack: Stack, api: Api) -> None:
    targets = scraped_targets(stack)
    assert {t["labels"]["job"] for t in targets} >= PROCESSES
    assert set(query(stack, "up").values()) == {1.0}

    refused = 'sum(videoflix_auth_logins_total{outcome="invalid_credentials"})'
    before = query(stack, refused).get("", 0.0)
    assert api.login(new_email("nobody"), "Wrong-Password-1").status_code == 400

    def counted() -> bool:
        return query(stack, refused).get("", 0.0) >= before + 1

    wait_until(counted, timeout=SCRAPE_WAIT_SECONDS, interval=2, what="the refused login")
    requests = query(stack, "sum by (job) (http_requests_total)")
    assert {"auth", "catalog", "streaming"} <= {job for job, value in requests.items() if value > 0}


def test_every_metric_the_dashboard_and_the_alerts_read_is_exported(stack: Stack) -> None:
    scraped_targets(stack)
    exported = set(prometheus(stack, "label/__name__/values"))
    missing = {
        name: sorted(readers)
        for name, readers in names_services_must_export().items()
        if name not in exported
    }
    assert not missing, f"read by the dashboard or the rules, exported by no process: {missing}"
