#!/usr/bin/env python3
"""Container healthcheck: GET a health endpoint of this container's own HTTP port.

    videoflix-healthcheck [/readyz]

Exits 0 when http://127.0.0.1:$HTTP_PORT<path> answers 200 within the timeout, 1 otherwise
(with the reason on stderr, which `docker inspect` shows). The images have no curl, and this
needs only the standard library, so it runs under the image's system Python.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PATH = "/readyz"
TIMEOUT_SECONDS = 4.0


def probe(path: str, port: str) -> str | None:
    """None when healthy, otherwise what went wrong."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        # /readyz answers 503 with the failing checks in its body: worth showing
        detail = exc.read(300).decode("utf-8", "replace")
        return f"{url}: HTTP {exc.code} {detail}".rstrip()
    except (OSError, ValueError) as exc:
        return f"{url}: {type(exc).__name__}: {exc}"
    return None if status == 200 else f"{url}: HTTP {status}"


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else DEFAULT_PATH
    problem = probe(path, os.environ.get("HTTP_PORT", "8000"))
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
