"""Running the stack's processes: migrations first, then every process under honcho (one
Procfile, interleaved prefixed logs), the Caddy config, health checks, and stopping them."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from deploy import privileges
from deploy.devstack.config import MIGRATIONS, ROOT, log, processes
from gateway.generate import load_routes, render_caddyfile
from videoflix_shared.processes import stop_process

HONCHO_STOP_TIMEOUT = 20  # seconds the processes get to stop cleanly before SIGKILL
HEALTH_TIMEOUT = 90  # seconds from honcho's start until every process is healthy


def run_migrations(shared_env: dict[str, str], per_process: dict[str, dict[str, str]]) -> None:
    """Each service's migrations, as the role owning its database."""
    for migration in MIGRATIONS:
        log(f"running `{migration}`")
        service = migration.split()[0].removeprefix("videoflix-")
        subprocess.run(migration.split(), check=True, env=shared_env | per_process[service])


def write_procfile(
    data_dir: Path,
    port_base: int,
    per_process: dict[str, dict[str, str]] | None = None,
    *,
    observe: bool = False,
) -> Path:
    """`per_process`: each process's own credentials, sourced from a 0600 file of its own
    (not on a command line, where `ps` would show them). `observe`: Prometheus too."""
    lines = []
    for p in processes(observe=observe):
        cmd = p.command.format(data=data_dir, port=port_base + p.port_offset)
        if p.reads_http_port:
            cmd = f"env HTTP_PORT={port_base + p.port_offset} {cmd}"
        # exec: honcho's SIGTERM reaches the program itself, not an intermediate shell
        cmd = f"exec {cmd}"
        if per_process and p.name in per_process:
            env_file = data_dir / "secrets" / f"{p.name}.env"
            privileges.write_env_file(env_file, per_process[p.name])
            cmd = f"set -a && . '{env_file}' && set +a && {cmd}"
        lines.append(f"{p.name}: {cmd}")
    procfile = data_dir / "Procfile"
    procfile.write_text("\n".join(lines) + "\n")
    caddyfile = render_caddyfile(load_routes(), port_base=port_base)
    (data_dir / "Caddyfile").write_text(caddyfile)
    return procfile


def start_honcho(procfile: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """honcho in a session of its own, so stopping its group stops every process."""
    command = [sys.executable, "-m", "honcho", "start", "-f", str(procfile)]
    command += ["-d", str(ROOT), "--no-colour"]
    return subprocess.Popen(command, start_new_session=True, env=env)


def stop_honcho(honcho: subprocess.Popen[bytes]) -> None:
    stop_process(honcho, timeout=HONCHO_STOP_TIMEOUT, group=True)


def health(port_base: int, *, observe: bool = False) -> dict[str, str]:
    """Each process's state: healthy, HTTP <status> or down (<why>)."""
    results = {}
    for p in processes(observe=observe):
        if p.health_path is None:
            continue
        url = f"http://127.0.0.1:{port_base + p.port_offset}{p.health_path}"
        if p.name in ("auth", "catalog", "streaming"):  # HTTP services: through the gateway
            url = f"http://127.0.0.1:{port_base}/svc/{p.name}/healthz"
        results[p.name] = _probe(url)
    return results


def _probe(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 (local URL)
            return "healthy" if r.status == 200 else f"HTTP {r.status}"
    except Exception as exc:
        return f"down ({type(exc).__name__})"


def all_healthy(results: dict[str, str]) -> bool:
    return all(state == "healthy" for state in results.values())


def wait_healthy(
    port_base: int,
    honcho: subprocess.Popen[bytes],
    timeout: float = HEALTH_TIMEOUT,
    *,
    observe: bool = False,
) -> dict[str, str]:
    """Health until every process is healthy, honcho exits, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    results: dict[str, str] = {}
    while time.monotonic() < deadline and honcho.poll() is None:
        results = health(port_base, observe=observe)
        if all_healthy(results):
            break
        time.sleep(0.5)
    return results
