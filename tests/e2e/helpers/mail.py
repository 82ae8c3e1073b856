"""The dev mail sink as the suite reads it: who got which email, and the links in it."""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx


class Mailbox:
    """The dev mail sink's listing: GET /messages?to=<address>, newest first."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10)

    def messages(self, to: str) -> list[dict[str, Any]]:
        response = self.http.get("/messages", params={"to": to})
        response.raise_for_status()
        messages: list[dict[str, Any]] = response.json()
        return messages

    def ids(self, to: str) -> set[str]:
        return {m["id"] for m in self.messages(to)}

    def wait_new(self, to: str, seen: set[str], *, timeout: float = 30) -> dict[str, Any]:
        """The newest message to `to` whose id is not in `seen` (polls until it arrives)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fresh = [m for m in self.messages(to) if m["id"] not in seen]
            if fresh:
                return fresh[0]
            time.sleep(0.2)
        raise TimeoutError(f"no new email to {to} within {timeout}s")

    def assert_nothing_new(self, to: str, seen: set[str], *, wait: float = 2) -> None:
        time.sleep(wait)  # a negative: give a mail that should not exist the time to appear
        assert self.ids(to) <= seen, self.messages(to)[0]

    def close(self) -> None:
        self.http.close()


def link_params(message: dict[str, Any], page: str) -> tuple[str, dict[str, str]]:
    """The emailed link to the frontend page `page`, and its uid / token query."""
    candidates = list(message.get("links") or [])
    candidates += re.findall(r"https?://[^\s\"'<>]+", message.get("text") or "")
    for link in candidates:
        parts = urlsplit(link.replace("&amp;", "&"))
        if parts.path.endswith(page):
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            assert {"uid", "token"} <= set(query), link
            return link, query
    raise AssertionError(f"no link to {page} in {json.dumps(message)[:1500]}")
