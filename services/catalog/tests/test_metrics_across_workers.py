"""`videoflix-catalog serve` with CATALOG_WORKERS=2 (its default in compose and natively):
one scrape of `/metrics` answers for both uvicorn worker processes (videoflix_shared.metrics),
N requests spread over them are counted N, whichever worker answers."""

from __future__ import annotations

import httpx

from videoflix_testing.metrics import (
    requests_per_process,
    scrape,
    send_until_every_worker_served,
    serving_with_workers,
)

LIST = {"route": "/api/video/", "status": "401"}  # a viewer without a token: no database work


def test_one_scrape_counts_the_requests_of_both_workers(fresh_catalog_env, tmp_path):
    env = fresh_catalog_env("catalog_workers", CATALOG_WORKERS="2", LOG_LEVEL="WARNING")
    command = ["videoflix-catalog", "serve"]
    # answering is enough: the requests below need neither the database nor NATS
    with serving_with_workers(command, env, tmp_path, ready_path="/healthz") as server:

        def get() -> int:
            status = httpx.get(f"{server.url}/api/video/", timeout=10).status_code
            return 200 if status == 401 else status

        sent = send_until_every_worker_served(get, metrics_dir=server.metrics_dir, labels=LIST)
        per_worker = requests_per_process(server.metrics_dir, LIST)
        assert len(per_worker) == 2
        assert all(per_worker.values())
        for _ in range(4):  # whichever worker answers the scrape, it answers for both
            metrics = scrape(server.url)
            assert metrics.value("http_requests_total", LIST) == sent
            duration = {"route": LIST["route"], "method": "GET"}
            assert metrics.value("http_request_duration_seconds_count", duration) == sent
            # the histograms every worker made at start: exported once, not once per worker
            assert metrics.value("videoflix_upload_to_playable_seconds_count") == 0
            assert metrics.has("videoflix_upload_to_ready_seconds_bucket", {"le": "+Inf"})
