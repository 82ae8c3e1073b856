"""One trace per upload: the request id the admin's upload answer carries (`X-Request-ID`,
through the gateway) is the trace id on the log lines of that upload's whole life, in
every process that worked on it: catalog taking the upload, the transcoder's dispatcher
queueing the job, the worker encoding it, catalog applying the outcome, and streaming
learning who may play it (docs/TRACING.md).

Reads the started stack's log (test-artifacts/e2e-stack.log, console format, one line per
record, prefixed with the process name); against a stack that is already up, point
E2E_STACK_LOG at that stack's combined log.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from tests.e2e.helpers.api import ADMIN_UPLOAD, Api, wait_for_status
from tests.e2e.helpers.media import generate_clip
from tests.e2e.helpers.stack import STACK_LOG

# "08:37:48 transcoder-worker.1 | 2026-... transcoder-worker INFO [<request id> trace=<id>] ..."
LINE = re.compile(
    r"^\S+ (?P<process>[a-z-]+)\.\d+\s+\| .*? \[(?P<request>\S+) trace=(?P<trace>\S+)\] (?P<text>.*)$"
)
LOG_WAIT_SECONDS = 30


def stack_log() -> Path:
    if os.environ.get("E2E_BASE_URL"):
        configured = os.environ.get("E2E_STACK_LOG")
        if not configured:
            pytest.skip("a stack that is already up: set E2E_STACK_LOG to read its log")
        return Path(configured)
    return STACK_LOG


def lines_of_trace(log: Path, trace_id: str) -> dict[str, list[str]]:
    """The log lines whose trace is `trace_id`, per process."""
    found: dict[str, list[str]] = defaultdict(list)
    for line in log.read_text(errors="replace").splitlines():
        match = LINE.match(line)
        if match and match["trace"] == trace_id:
            found[match["process"]].append(match["text"])
    return found


def test_the_request_id_of_an_upload_leads_to_every_log_line_of_its_life(
    admin_api: Api, tmp_path: Path
) -> None:
    clip = generate_clip(tmp_path / "traced.mp4", seconds=2, width=320, height=240)
    with clip.open("rb") as source:
        response = admin_api.post(
            ADMIN_UPLOAD,
            data={"title": f"Traced {uuid.uuid4().hex[:6]}", "category": "Drama"},
            files={"file": (clip.name, source, "video/mp4")},
            headers=admin_api.csrf_headers(),
            timeout=120,
        )
    assert response.status_code == 202, response.text
    body = response.json()
    request_id = response.headers["x-request-id"]  # what the admin sees of the request
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), request_id
    wait_for_status(admin_api, body["id"])

    expected = {
        "catalog": [f"video {body['id']} uploaded", "transcoder.video.completed applied"],
        "transcoder-dispatcher": ["queued", f"transcode:{body['id']}:1"],
        "transcoder-worker": [],  # any line: the job's own
        "streaming": [f"video {body['id']}: playable by"],
    }
    log = stack_log()
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while True:
        found = lines_of_trace(log, request_id)
        missing = {
            process: wanted
            for process, wanted in expected.items()
            if not found.get(process)
            or not all(any(w in line for line in found[process]) for w in wanted)
        }
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not missing, f"trace {request_id}: missing {missing}; found {dict(found)}"
