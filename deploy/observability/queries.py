"""Which metrics the dashboard and the rules read, and so which ones the services must export
(the tests compare this with a real scrape of every process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deploy.observability import dashboard
from deploy.observability.promql import metric_names
from deploy.observability.scrape import RULES_DIR

FROM_PROMETHEUS = frozenset({"up"})  # made by Prometheus itself for every target


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def rules() -> list[dict[str, Any]]:
    """Every recording rule and alert of every rule file."""
    found: list[dict[str, Any]] = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend(group["rules"])
    return found


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def queried_names() -> dict[str, set[str]]:
    """Metric name -> what reads it (an alert, a recording rule, a dashboard panel)."""
    readers: dict[str, set[str]] = {}
    for rule in rules():
        reader = f"alert {rule['alert']}" if "alert" in rule else f"rule {rule['record']}"
        for name in metric_names(rule["expr"]):
            readers.setdefault(name, set()).add(reader)
    for row in dashboard.ROWS:
        for panel in row.panels:
            for query in panel.queries:
                for name in metric_names(query.expr):
                    readers.setdefault(name, set()).add(f"panel {panel.title!r}")
    return readers


def names_services_must_export() -> dict[str, set[str]]:
    """The queried names that are neither recording rules nor made by Prometheus."""
    made_here = recorded_names() | FROM_PROMETHEUS
    return {name: readers for name, readers in queried_names().items() if name not in made_here}
