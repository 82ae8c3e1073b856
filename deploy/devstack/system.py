"""What the launcher needs from the machine: Debian packages (installed with apt-get when
missing and allowed), the servers' binaries, and ports that answer."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from deploy.devstack.config import log


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def wait_port(host: str, port: int, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        time.sleep(0.2)
    raise SystemExit(f"devstack: {what} did not open {host}:{port} within {timeout:.0f}s")


def apt_install(*packages: str) -> None:
    """Install Debian packages when possible; otherwise say exactly what is missing."""
    if os.geteuid() != 0 and not shutil.which("sudo"):
        raise SystemExit(f"devstack: please install: apt-get install {' '.join(packages)}")
    prefix = [] if os.geteuid() == 0 else ["sudo"]
    log(f"installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*prefix, "apt-get", "update", "-qq"], check=False, env=env)
    result = subprocess.run([*prefix, "apt-get", "install", "-y", "-qq", *packages], env=env)
    if result.returncode != 0:
        raise SystemExit(
            f"devstack: could not install {packages}; please run: apt-get install {' '.join(packages)}"
        )


def find_binary(binary: str) -> str | None:
    candidates = [
        shutil.which(binary),
        f"/usr/sbin/{binary}",
        *map(str, sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{binary}"), reverse=True)),
    ]
    return next((c for c in candidates if c and Path(c).exists()), None)


def ensure_binary(binary: str, package: str) -> str:
    """The path of `binary`, installing its Debian package first when it is missing."""
    found = find_binary(binary)
    if found is None:
        apt_install(package)
        found = find_binary(binary)
    if found is None:
        raise SystemExit(f"devstack: {binary} not found even after installing {package}")
    return found


def ensure_tools() -> None:
    """What the stack's processes run besides Python: ffmpeg (catalog, transcoder), Caddy."""
    missing = [
        pkg
        for binary, pkg in (("ffmpeg", "ffmpeg"), ("ffprobe", "ffmpeg"), ("caddy", "caddy"))
        if not shutil.which(binary)
    ]
    if missing:
        apt_install(*sorted(set(missing)))
