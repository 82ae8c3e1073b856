"""The browser side: the test page's origin (web/ and the npm-installed hls.js, served on a
CORS origin of the stack), and screenshots into test-artifacts/."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.e2e.helpers.stack import ARTIFACTS

E2E_DIR = Path(__file__).resolve().parents[1]
WEB_DIR = E2E_DIR / "web"
HLS_JS = E2E_DIR / "node_modules" / "hls.js" / "dist" / "hls.min.js"


class FrontendHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the test page from web/ and the npm-installed hls.js at /vendor/hls.min.js."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, directory=str(WEB_DIR), **kwargs)

    def translate_path(self, path: str) -> str:
        if urlsplit(path).path == "/vendor/hls.min.js":
            return str(HLS_JS)
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving_frontend(port: int) -> Iterator[None]:
    """The test page on 127.0.0.1:`port` while the block runs."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), FrontendHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
