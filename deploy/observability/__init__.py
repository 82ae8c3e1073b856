"""Dashboards as code: what Prometheus scrapes, the alert and recording rules, and the Grafana
dashboard, for compose (`docker compose --profile observe up`) and the native stack
(`make up OBSERVE=1`) alike (docs/OBSERVABILITY.md).

    python -m deploy.observability write                  rewrite the generated files
    python -m deploy.observability prometheus --port-base 8000   print the native config

`scrape` renders Prometheus' configuration from the launcher's process table (one job per
process, named like it, compose's service names and port, or the native port layout);
`dashboard` renders the Grafana dashboard; `promql` finds the metric names a query reads
(the tests compare them with what the services export). Handwritten beside them:
prometheus/rules/ (alerts, recording rules), prometheus/tests/ (`promtool test rules`),
grafana/provisioning/ (the data source and the dashboard folder).
"""
