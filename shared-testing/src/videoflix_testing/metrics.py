"""Reading a process's Prometheus metrics in tests, the way Prometheus reads them: the text
of `/metrics` parsed into samples (prometheus_client's parser), looked up by name and labels.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One answer of `/metrics`: every sample by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    @property
    def names(self) -> set[str]:
        """Every sample name (`x_total`, `x_bucket`, `x_count`, ... as exported)."""
        return {name for name, _, _ in self.samples}

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """The sum of the samples called `name` whose labels include `labels` (0 if none)."""
        wanted = dict(labels or {})
        return sum(
            value
            for sample_name, sample_labels, value in self.samples
            if sample_name == name and wanted.items() <= sample_labels.items()
        )

    def has(self, name: str, labels: Mapping[str, str] | None = None) -> bool:
        wanted = dict(labels or {})
        return any(
            sample_name == name and wanted.items() <= sample_labels.items()
            for sample_name, sample_labels, _ in self.samples
        )


def scrape(base_url: str, *, timeout: float = 10) -> Scrape:
    """GET `<base_url>/metrics` and parse it."""
    response = httpx.get(f"{base_url.rstrip('/')}/metrics", timeout=timeout)
    response.raise_for_status()
    return Scrape(response.text)
