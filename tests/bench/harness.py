"""What the benchmarks share: per-run names on the shared servers (`Hermetic`), a service
started as production runs it (`running`, `service_binary`), and wrk's figures.

Benchmarks are scripts (`python tests/bench/bench_<name>.py`), so their own directory is on
`sys.path` and they `import harness`. Not named bench_*: `make bench` runs those.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from videoflix_shared.db import drop_database
from videoflix_shared.processes import stop_process
from videoflix_testing.cleanup import delete_nats_streams, delete_redis_keys
from videoflix_testing.plugin import NATS_URL, POSTGRES_URL, REDIS_URL

STOP_TIMEOUT = 20  # a service under load may take a while to finish its requests


@dataclass(frozen=True)
class Hermetic:
    """The per-run names of everything a benchmark of `service` creates on the shared
    servers: its database (`vfbench_<run>_<service>`), Redis prefix, NATS subjects and
    streams; `cleanup` removes them all."""

    run: str
    service: str
    database_url: str
    redis_prefix: str
    subject_prefix: str
    stream_prefix: str

    @classmethod
    def new(cls, service: str) -> Hermetic:
        run = uuid.uuid4().hex[:8]
        url = make_url(POSTGRES_URL).set(database=f"vfbench_{run}_{service}")
        return cls(
            run=run,
            service=service,
            database_url=url.render_as_string(hide_password=False),
            redis_prefix=f"vfbench:{run}:",
            subject_prefix=f"vfbench{run}.",
            stream_prefix=f"VFBENCH{run}_",
        )

    def env(self) -> dict[str, str]:
        """What the service's process needs to use exactly these names."""
        return {
            f"{self.service.upper()}_DATABASE_URL": self.database_url,
            "REDIS_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": self.redis_prefix,
            "NATS_URL": NATS_URL,
            "NATS_SUBJECT_PREFIX": self.subject_prefix,
            "NATS_STREAM_PREFIX": self.stream_prefix,
        }

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            drop_database(self.database_url)
        delete_redis_keys(REDIS_URL, self.redis_prefix)
        delete_nats_streams(NATS_URL, self.env())


def service_binary(service: str) -> str:
    """The console script `videoflix-<service>` of this environment."""
    name = f"videoflix-{service}"
    beside_python = Path(sys.executable).with_name(name)
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: run with `uv run --all-packages`")
    return found


@contextlib.contextmanager
def running(
    command: list[str],
    *,
    env: dict[str, str] | None = None,
    log: Path,
    stop_timeout: float = STOP_TIMEOUT,
) -> Iterator[subprocess.Popen[bytes]]:
    """`command` in a session of its own (its workers too), output to `log`, stopped with
    its whole process group when the block ends."""
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            stop_process(process, timeout=stop_timeout, group=True)


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: str  # non-2xx answers and socket errors as wrk reports them ("" if none)


def to_ms(value: str) -> float:
    """wrk's latency ("812.00us", "1.20ms", "2.01s") in milliseconds."""
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", value)
    if match is None:
        raise SystemExit(f"not a wrk latency: {value!r}")
    number, unit = match.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_wrk(output: str) -> WrkResult:
    """req/s, p50, p99 and errors from the output of `wrk --latency`."""
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if not (rps and p50 and p99):
        raise SystemExit(f"could not read wrk's output:\n{output}")
    errors = [
        line.strip() for line in output.splitlines() if "Non-2xx" in line or "Socket errors" in line
    ]
    return WrkResult(float(rps[1]), to_ms(p50[1]), to_ms(p99[1]), "; ".join(errors))


def load_average(values: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in values)
