"""`up --observe` (make up OBSERVE=1): Debian's Prometheus beside the stack, scraping every
process on the native port layout with the rules of deploy/observability (its scrape
configuration rendered into <data dir>/prometheus/, its data kept there between runs).

The rendered configuration exists while an observed stack runs: `status` reports
Prometheus then, and not after a stack started without it.
"""

from __future__ import annotations

from pathlib import Path

from deploy.devstack.system import ensure_binary
from deploy.observability.scrape import render_native


def prometheus_config(data_dir: Path) -> Path:
    return data_dir / "prometheus" / "prometheus.yml"


def prepare_prometheus(data_dir: Path, port_base: int) -> None:
    """Install Debian's prometheus if it is missing, and render its configuration."""
    ensure_binary("prometheus", "prometheus")
    config = prometheus_config(data_dir)
    (config.parent / "data").mkdir(parents=True, exist_ok=True)
    config.write_text(render_native(port_base))


def observing(data_dir: Path) -> bool:
    return prometheus_config(data_dir).exists()


def stop_observing(data_dir: Path) -> None:
    prometheus_config(data_dir).unlink(missing_ok=True)
