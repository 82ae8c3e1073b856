"""Render gateway/routes.toml into proxy configurations.

    python -m gateway.generate caddy [--port-base 8000] [--listen 127.0.0.1:8000]

prints a Caddyfile for the native stack. The container issue adds the Traefik renderer,
fed by the same `load_routes()`.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROUTES_FILE = Path(__file__).with_name("routes.toml")


@dataclass(frozen=True)
class Route:
    name: str
    service: str
    paths: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    regex: str | None = None
    strip_prefix: str | None = None

    @property
    def exact_paths(self) -> tuple[str, ...]:
        """Each path with and without its trailing slash (the contract accepts both)."""
        out: list[str] = []
        for p in self.paths:
            out.append(p)
            if p.endswith("/") and p != "/":
                out.append(p.rstrip("/"))
        return tuple(out)


@dataclass(frozen=True)
class RouteTable:
    services: dict[str, dict] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    fallback: str = ""

    def native_upstream(self, service: str, port_base: int) -> str:
        return f"127.0.0.1:{port_base + int(self.services[service]['port_offset'])}"


def load_routes(path: Path = ROUTES_FILE) -> RouteTable:
    data = tomllib.loads(path.read_text())
    routes = tuple(
        Route(
            name=r["name"],
            service=r["service"],
            paths=tuple(r.get("paths", ())),
            prefixes=tuple(r.get("prefixes", ())),
            regex=r.get("regex"),
            strip_prefix=r.get("strip_prefix"),
        )
        for r in data["routes"]
    )
    table = RouteTable(services=data["services"], routes=routes, fallback=data["fallback"])
    for r in routes:
        if r.service not in table.services:
            raise ValueError(f"route {r.name} names unknown service {r.service}")
    return table


def render_caddyfile(table: RouteTable, *, port_base: int = 8000, listen: str | None = None) -> str:
    listen = listen or f"127.0.0.1:{port_base}"
    out = [
        "# Generated from gateway/routes.toml by `python -m gateway.generate caddy`; do not edit.",
        "{",
        "\tadmin off",
        "\tauto_https off",
        "}",
        "",
        f"http://{listen} {{",
    ]
    for r in table.routes:
        matchers = []
        if r.exact_paths or r.prefixes:
            matchers.append("path " + " ".join([*r.exact_paths, *(p + "*" for p in r.prefixes)]))
        if r.regex:
            # a named matcher's lines are OR-ed only within one directive; regex gets its own
            matchers.append(f"path_regexp {r.regex}")
        for i, m in enumerate(matchers):
            out.append(f"\t@{r.name}-{i} {m}")
            out.append(f"\thandle @{r.name}-{i} {{")
            if r.strip_prefix:
                out.append(f"\t\turi strip_prefix {r.strip_prefix}")
            out.append(f"\t\treverse_proxy {table.native_upstream(r.service, port_base)}")
            out.append("\t}")
    out += [
        "\thandle {",
        f"\t\treverse_proxy {table.native_upstream(table.fallback, port_base)}",
        "\t}",
        "",
        "\thandle_errors {",
        "\t\theader Content-Type application/json",
        '\t\trespond `{"detail": "The service behind this path is unavailable, try again shortly."}` {err.status_code}',
        "\t}",
        "}",
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", choices=["caddy"])
    parser.add_argument("--port-base", type=int, default=8000)
    parser.add_argument("--listen", default=None)
    args = parser.parse_args(argv)
    table = load_routes()
    sys.stdout.write(render_caddyfile(table, port_base=args.port_base, listen=args.listen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
