"""The Grafana dashboard "Videoflix", as data: rows of panels, each a few PromQL queries.

Rendered to grafana/dashboards/videoflix.json (`python -m deploy.observability write`;
a test checks the committed file is current), which compose's Grafana provisions read-only.
Panels read the job names of scrape.py and the names of the rules in prometheus/rules/;
every metric they query is one the services export (checked against a real scrape).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD_FILE = Path(__file__).resolve().parent / "grafana" / "dashboards" / "videoflix.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # grafana/provisioning/datasources
NOT_PROBES = 'route!~"/metrics|/healthz|/readyz"'
RATE = "$__rate_interval"
PANEL_HEIGHT = 8
GRID_WIDTH = 24


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: tuple[Query, ...]
    description: str = ""
    kind: str = "timeseries"  # or "stat"
    width: int = 8


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


def _q(expr: str, legend: str = "") -> Query:
    return Query(" ".join(expr.split()), legend)


PROCESSES = Row(
    "Processes and HTTP",
    (
        Panel(
            "Processes up",
            "none",
            (_q("sum by (job) (up)", "{{job}}"),),
            "Scrape targets answering /metrics, per job (0: down).",
            kind="stat",
        ),
        Panel(
            "Requests per second",
            "reqps",
            (_q(f"sum by (job) (rate(http_requests_total{{{NOT_PROBES}}}[{RATE}]))", "{{job}}"),),
            "Every HTTP request a service answered, probes left out.",
        ),
        Panel(
            "5xx ratio",
            "percentunit",
            (_q("job:http_requests_5xx:ratio_rate5m", "{{job}}"),),
            "Share of answers that were 5xx over 5 minutes (alert above 5%).",
        ),
        Panel(
            "Latency p95",
            "s",
            (
                _q(
                    "histogram_quantile(0.95, sum by (le, job) "
                    f"(rate(http_request_duration_seconds_bucket{{{NOT_PROBES}}}[{RATE}])))",
                    "{{job}}",
                ),
            ),
            "95th percentile of the time to answer, per service.",
        ),
        Panel(
            "Answers by status",
            "reqps",
            (
                _q(
                    f"sum by (status) (rate(http_requests_total{{{NOT_PROBES}}}[{RATE}]))",
                    "{{status}}",
                ),
            ),
        ),
    ),
)

TRANSCODING = Row(
    "Transcoding",
    (
        Panel(
            "Queued jobs",
            "none",
            (
                _q("sum by (priority) (videoflix_transcode_queue_depth)", "queued {{priority}}"),
                _q("sum(videoflix_transcode_jobs_running)", "running"),
            ),
            "Jobs waiting (first: work that makes an upload playable) and jobs being encoded.",
        ),
        Panel(
            "Oldest queued job",
            "s",
            (
                _q(
                    "max by (priority) (videoflix_transcode_queue_oldest_age_seconds)",
                    "{{priority}}",
                ),
            ),
            "Age of the oldest waiting job (alerts: first > 10 min, normal > 1 h).",
        ),
        Panel(
            "Job outcomes",
            "none",
            (
                _q(
                    f"sum by (outcome) (increase(videoflix_transcode_jobs_total[{RATE}]))",
                    "{{outcome}}",
                ),
            ),
        ),
        Panel(
            "Encode speed (median, x real time)",
            "x",
            (
                _q(
                    "histogram_quantile(0.5, sum by (le, rung) "
                    f"(rate(videoflix_transcode_speed_ratio_bucket[{RATE}])))",
                    "{{rung}}",
                ),
            ),
            "Seconds of media encoded per second of wall time, per rung.",
        ),
        Panel(
            "Upload to playable / ready (p50, p95)",
            "s",
            (
                _q(
                    "histogram_quantile(0.5, sum by (le) "
                    "(rate(videoflix_upload_to_playable_seconds_bucket[1h])))",
                    "playable p50",
                ),
                _q(
                    "histogram_quantile(0.95, sum by (le) "
                    "(rate(videoflix_upload_to_playable_seconds_bucket[1h])))",
                    "playable p95",
                ),
                _q(
                    "histogram_quantile(0.5, sum by (le) "
                    "(rate(videoflix_upload_to_ready_seconds_bucket[1h])))",
                    "ready p50",
                ),
                _q(
                    "histogram_quantile(0.95, sum by (le) "
                    "(rate(videoflix_upload_to_ready_seconds_bucket[1h])))",
                    "ready p95",
                ),
            ),
            "From an upload to its first playable rung, and to every rendition, over an hour.",
        ),
    ),
)

EVENTS = Row(
    "Events (outbox, JetStream, NATS)",
    (
        Panel(
            "Outbox: events not yet published",
            "none",
            (_q("max by (service) (videoflix_outbox_pending_events)", "{{service}}"),),
        ),
        Panel(
            "Outbox: oldest unpublished event",
            "s",
            (_q("max by (service) (videoflix_outbox_relay_lag_seconds)", "{{service}}"),),
            "Alert above 2 minutes.",
        ),
        Panel(
            "NATS connected",
            "none",
            (_q("min by (service) (videoflix_nats_connected)", "{{service}}"),),
            "1 connected, 0 not.",
            kind="stat",
        ),
        Panel(
            "Consumers: pending messages",
            "none",
            (
                _q(
                    "max by (stream, consumer) (videoflix_jetstream_consumer_pending_messages)",
                    "{{consumer}} ({{stream}})",
                ),
            ),
        ),
        Panel(
            "Consumers: redelivered messages",
            "none",
            (
                _q(
                    "max by (stream, consumer) (videoflix_jetstream_consumer_redelivered_messages)",
                    "{{consumer}} ({{stream}})",
                ),
            ),
        ),
    ),
)

EMAIL_AND_AUTH = Row(
    "Email and sign-in",
    (
        Panel(
            "Emails by outcome",
            "none",
            (
                _q(
                    f"sum by (outcome) (increase(videoflix_email_deliveries_total[{RATE}]))",
                    "{{outcome}}",
                ),
            ),
            "sent, retried (tried again later), dead_lettered, duplicate, ignored.",
        ),
        Panel(
            "Dead letters waiting",
            "none",
            (_q("max(videoflix_email_dead_letters)", "dead letters"),),
            "Emails given up on; `videoflix-mailer dead-letters list` (alert above 0).",
            kind="stat",
        ),
        Panel(
            "Sign-ins by outcome",
            "none",
            (
                _q(
                    f"sum by (outcome) (increase(videoflix_auth_logins_total[{RATE}]))",
                    "{{outcome}}",
                ),
            ),
        ),
        Panel(
            "Registrations by outcome",
            "none",
            (
                _q(
                    f"sum by (outcome) (increase(videoflix_auth_registrations_total[{RATE}]))",
                    "{{outcome}}",
                ),
            ),
        ),
        Panel(
            "Rate-limit refusals",
            "none",
            (
                _q(
                    f"sum by (limit) (increase(videoflix_auth_rate_limited_total[{RATE}]))",
                    "{{limit}}",
                ),
            ),
        ),
    ),
)

STREAMING = Row(
    "Streaming",
    (
        Panel(
            "Bytes sent",
            "Bps",
            (
                _q(
                    f"sum by (kind) (rate(videoflix_streaming_sent_bytes_total[{RATE}]))",
                    "{{kind}}",
                ),
            ),
        ),
        Panel(
            "Body cache hit ratio",
            "percentunit",
            (_q("videoflix:streaming_body_cache_hit:ratio_rate5m", "hits"),),
            "Segment and thumbnail bodies sent from memory, of all sent (5 minutes).",
        ),
        Panel(
            "Body cache size",
            "bytes",
            (_q("sum(videoflix_streaming_body_cache_bytes)", "cached"),),
            "Bytes the streaming processes hold in memory.",
        ),
    ),
)

ROWS = (PROCESSES, TRANSCODING, EVENTS, EMAIL_AND_AUTH, STREAMING)


def expressions() -> list[str]:
    """Every PromQL expression of the dashboard."""
    return [query.expr for row in ROWS for panel in row.panels for query in panel.queries]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = [
        {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": q.expr}
        | ({"legendFormat": q.legend} if q.legend else {})
        for i, q in enumerate(panel.queries)
    ]
    options: dict[str, Any] = (
        {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
        if panel.kind == "stat"
        else {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    )
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": PANEL_HEIGHT, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": options,
        "targets": targets,
    }


def render() -> str:
    panels: list[dict[str, Any]] = []
    y = 0
    for row in ROWS:
        panels.append(
            {
                "id": len(panels) + 1,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        x = 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y = 0, y + PANEL_HEIGHT
            panels.append(_panel_json(panel, len(panels) + 1, x, y))
            x += panel.width
        y += PANEL_HEIGHT
    dashboard = {
        "uid": "videoflix",
        "title": "Videoflix",
        "description": "Generated by `python -m deploy.observability write`; edit dashboard.py.",
        "tags": ["videoflix"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": panels,
    }
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"
