"""HTTP clients for an app under test, in process: httpx over ASGI, no server, no port.

    async with asgi_client(app, cookies=...) as client:
        response = await client.get("/api/video/")

The app's lifespan is not run here: enter `app.router.lifespan_context(app)` around it when
the routes need their resources.
"""

from __future__ import annotations

from typing import Any

import httpx

BASE_URL = "http://testserver"


def asgi_client(app: Any, client_ip: str = "127.0.0.1", **kwargs: Any) -> httpx.AsyncClient:
    """An httpx client calling `app` directly, as if from `client_ip` (per-address rate
    limits see it); `kwargs` go to `httpx.AsyncClient` (cookies, headers, timeout...)."""
    transport = httpx.ASGITransport(app=app, client=(client_ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL, **kwargs)
