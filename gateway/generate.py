"""Render gateway/routes.toml into proxy configurations.

    python -m gateway.generate caddy [--port-base 8000] [--listen 127.0.0.1:8000]
    python -m gateway.generate traefik
    python -m gateway.generate write

`caddy` prints a Caddyfile for the native stack; `traefik` prints Traefik's dynamic
configuration (file provider) for `docker compose`; `write` rewrites both committed files
(gateway/Caddyfile and gateway/traefik/dynamic/routes.yml). Both renderers are fed by the
same `load_routes()`, so the two gateways route identically; the tests parse both outputs
back and compare them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROUTES_FILE = Path(__file__).with_name("routes.toml")
CADDYFILE = Path(__file__).with_name("Caddyfile")
TRAEFIK_ROUTES_FILE = Path(__file__).parent / "traefik" / "dynamic" / "routes.yml"
TRAEFIK_ENTRYPOINT = "web"  # defined in gateway/traefik/traefik.yml
FALLBACK_ROUTER = "fallback"  # Traefik's catch-all router (Caddy's bare `handle`)
FALLBACK_PRIORITY = 1  # the lowest: 0 would mean "use the rule's length"
# Unmatched requests reach the fallback service on this path only: its app answers a JSON 404,
# and nothing internal of it (/metrics, /readyz, /docs, /openapi.json) is reachable.
NOT_FOUND_PATH = "/__gateway_not_found__"
FALLBACK_MIDDLEWARE = "fallback-not-found"


@dataclass(frozen=True)
class Limits:
    """What a route lets through: `max_body` bytes of request body at the gateway (0: no cap
    there, the service enforces its own while streaming), and `upstream_timeout` seconds to
    wait for the service's response headers once the request is forwarded."""

    max_body: int
    upstream_timeout: int


@dataclass(frozen=True)
class Route:
    name: str
    service: str
    paths: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    regex: str | None = None
    strip_prefix: str | None = None
    limits: Limits = Limits(max_body=0, upstream_timeout=60)

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
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    fallback: str = ""
    defaults: Limits = Limits(max_body=0, upstream_timeout=60)  # [defaults]; the fallback's

    def native_upstream(self, service: str, port_base: int) -> str:
        return f"127.0.0.1:{port_base + int(self.services[service]['port_offset'])}"

    def container_upstream(self, service: str) -> str:
        return f"http://{self.services[service]['container']}"


def load_routes(path: Path = ROUTES_FILE) -> RouteTable:
    data = tomllib.loads(path.read_text())
    defaults = Limits(
        max_body=int(data["defaults"]["max_body"]),
        upstream_timeout=int(data["defaults"]["upstream_timeout"]),
    )
    routes = tuple(
        Route(
            name=r["name"],
            service=r["service"],
            paths=tuple(r.get("paths", ())),
            prefixes=tuple(r.get("prefixes", ())),
            regex=r.get("regex"),
            strip_prefix=r.get("strip_prefix"),
            limits=Limits(
                max_body=int(r.get("max_body", defaults.max_body)),
                upstream_timeout=int(r.get("upstream_timeout", defaults.upstream_timeout)),
            ),
        )
        for r in data["routes"]
    )
    table = RouteTable(
        services=data["services"], routes=routes, fallback=data["fallback"], defaults=defaults
    )
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
            out += _caddy_proxy(table.native_upstream(r.service, port_base), r.limits)
            out.append("\t}")
    out += [
        "\thandle {",
        f"\t\trewrite * {NOT_FOUND_PATH}",
        *_caddy_proxy(table.native_upstream(table.fallback, port_base), table.defaults),
        "\t}",
        "",
        "\thandle_errors {",
        "\t\theader Content-Type application/json",
        # Caddy 2.6 answers a body over `max_size` with 502 (its reverse proxy fails to read
        # the body); later versions with 413. Both become the JSON 413 here.
        '\t\t@too_large expression `{err.status_code} == 413 || {err.message}.contains("request body too large")`',
        "\t\thandle @too_large {",
        '\t\t\trespond `{"detail": "Request body too large for this path."}` 413',
        "\t\t}",
        "\t\thandle {",
        '\t\t\trespond `{"detail": "The service behind this path is unavailable, try again shortly."}` {err.status_code}',
        "\t\t}",
        "\t}",
        "}",
        "",
    ]
    return "\n".join(out)


def _caddy_proxy(upstream: str, limits: Limits) -> list[str]:
    """A handle block's body cap and reverse proxy with its response-header timeout."""
    out = []
    if limits.max_body:
        out += ["\t\trequest_body {", f"\t\t\tmax_size {limits.max_body}", "\t\t}"]
    out += [
        f"\t\treverse_proxy {upstream} {{",
        "\t\t\ttransport http {",
        f"\t\t\t\tresponse_header_timeout {limits.upstream_timeout}s",
        "\t\t\t}",
        "\t\t}",
    ]
    return out


def _yaml(value: str | int) -> str:
    # JSON scalars are valid YAML flow scalars; quoting every string keeps rules with
    # backticks, `|`, `[` or `#` from being read as YAML syntax.
    return json.dumps(value)


def _yaml_list(values: list[str]) -> str:
    return "[" + ", ".join(_yaml(v) for v in values) + "]"


def traefik_rule(route: Route) -> str:
    """The route's matchers as one Traefik v3 rule, OR-ed like the route table says."""
    matchers = [f"Path(`{p}`)" for p in route.exact_paths]
    matchers += [f"PathPrefix(`{p}`)" for p in route.prefixes]
    if route.regex:
        matchers.append(f"PathRegexp(`{route.regex}`)")
    for m in matchers:
        if m.count("`") != 2:
            raise ValueError(f"route {route.name}: a backtick cannot be quoted in a Traefik rule")
    return " || ".join(matchers)


def traefik_priorities(table: RouteTable) -> dict[str, int]:
    """Explicit router priorities that reproduce the table's first-match order.

    Traefik tries routers by descending priority (by default the rule's length, which would
    reorder the table), so the first route gets the highest number and the fallback 1.
    """
    count = len(table.routes)
    return {r.name: 10 * (count - i) for i, r in enumerate(table.routes)}


def traefik_service_name(table: RouteTable, service: str, limits: Limits) -> str:
    """Traefik sets the response-header timeout per service (its servers transport), so a
    route with its own timeout gets a service of its own, with the same server."""
    if limits.upstream_timeout == table.defaults.upstream_timeout:
        return service
    return f"{service}-{limits.upstream_timeout}s"


def traefik_transport_name(timeout: int) -> str:
    return f"upstream-{timeout}s"


def _traefik_route_middlewares(route: Route) -> tuple[list[str], list[str]]:
    """The route's middleware names and their definitions (YAML lines)."""
    names: list[str] = []
    lines: list[str] = []
    if route.strip_prefix:
        names.append(f"{route.name}-strip-prefix")
        lines += [
            f"    {names[-1]}:",
            "      stripPrefix:",
            f"        prefixes: {_yaml_list([route.strip_prefix])}",
        ]
    if route.limits.max_body:
        # Traefik caps a body only by buffering it (in memory up to 1 MiB, then on disk):
        # fine for JSON and for tus chunks, which is why whole-file uploads have no cap.
        names.append(f"{route.name}-body-limit")
        lines += [
            f"    {names[-1]}:",
            "      buffering:",
            f"        maxRequestBodyBytes: {route.limits.max_body}",
        ]
    return names, lines


def _traefik_services(table: RouteTable, services: dict[str, tuple[str, int]]) -> list[str]:
    """`services` (Traefik name -> table service, timeout) and their servers transports."""
    for name in table.services:  # every table service is reachable under its own name
        services.setdefault(name, (name, table.defaults.upstream_timeout))
    out = ["  services:"]
    for name, (service, timeout) in services.items():
        out += [
            f"    {name}:",
            "      loadBalancer:",
            f"        serversTransport: {_yaml(traefik_transport_name(timeout))}",
            "        servers:",
            f"          - url: {_yaml(table.container_upstream(service))}",
        ]
    out.append("  serversTransports:")
    for timeout in sorted({t for _, t in services.values()}):
        out += [
            f"    {traefik_transport_name(timeout)}:",
            "      forwardingTimeouts:",
            f"        responseHeaderTimeout: {_yaml(f'{timeout}s')}",
        ]
    return out


def render_traefik_dynamic(table: RouteTable) -> str:
    if any(r.name == FALLBACK_ROUTER for r in table.routes):
        raise ValueError(f"the route name {FALLBACK_ROUTER!r} is reserved for the catch-all router")
    priorities = traefik_priorities(table)
    routers = ["  routers:"]
    middlewares = []
    # Traefik service name -> (table service, timeout), in order of first use
    services: dict[str, tuple[str, int]] = {}
    for r in table.routes:
        service = traefik_service_name(table, r.service, r.limits)
        services.setdefault(service, (r.service, r.limits.upstream_timeout))
        routers += [
            f"    {r.name}:",
            f"      entryPoints: {_yaml_list([TRAEFIK_ENTRYPOINT])}",
            f"      rule: {_yaml(traefik_rule(r))}",
            f"      priority: {priorities[r.name]}",
            f"      service: {_yaml(service)}",
        ]
        names, definitions = _traefik_route_middlewares(r)
        middlewares += definitions
        if names:
            routers.append(f"      middlewares: {_yaml_list(names)}")
    fallback = traefik_service_name(table, table.fallback, table.defaults)
    services.setdefault(fallback, (table.fallback, table.defaults.upstream_timeout))
    routers += [
        "    # Everything else goes to the fallback service on one path its app answers with a",
        "    # JSON 404 (Traefik's own 404 page is plain text; the original path could name one",
        "    # of the service's internal endpoints).",
        f"    {FALLBACK_ROUTER}:",
        f"      entryPoints: {_yaml_list([TRAEFIK_ENTRYPOINT])}",
        f"      rule: {_yaml('PathPrefix(`/`)')}",
        f"      priority: {FALLBACK_PRIORITY}",
        f"      middlewares: {_yaml_list([FALLBACK_MIDDLEWARE])}",
        f"      service: {_yaml(fallback)}",
    ]
    middlewares += [
        f"    {FALLBACK_MIDDLEWARE}:",
        "      replacePath:",
        f"        path: {_yaml(NOT_FOUND_PATH)}",
    ]
    out = [
        "# Generated from gateway/routes.toml by `python -m gateway.generate traefik`; do not edit.",
        "# Traefik v3 dynamic configuration (file provider) for docker compose. Routers carry",
        "# explicit priorities so the table's first-match order holds.",
        "http:",
        *routers,
        "  middlewares:",
        *middlewares,
        *_traefik_services(table, services),
        "",
    ]
    text = "\n".join(out)
    if "{{" in text:  # Traefik runs every dynamic file through Go templating first
        raise ValueError("a route contains '{{', which Traefik would read as a template action")
    return text


def write_generated_files(table: RouteTable) -> list[Path]:
    """Rewrite the committed generated configs (the tests check they are up to date)."""
    CADDYFILE.write_text(render_caddyfile(table))
    TRAEFIK_ROUTES_FILE.parent.mkdir(parents=True, exist_ok=True)
    TRAEFIK_ROUTES_FILE.write_text(render_traefik_dynamic(table))
    return [CADDYFILE, TRAEFIK_ROUTES_FILE]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", choices=["caddy", "traefik", "write"])
    parser.add_argument("--port-base", type=int, default=8000, help="caddy only")
    parser.add_argument("--listen", default=None, help="caddy only")
    args = parser.parse_args(argv)
    table = load_routes()
    if args.target == "caddy":
        sys.stdout.write(render_caddyfile(table, port_base=args.port_base, listen=args.listen))
    elif args.target == "traefik":
        sys.stdout.write(render_traefik_dynamic(table))
    else:
        for path in write_generated_files(table):
            print(f"wrote {path.relative_to(ROUTES_FILE.parent.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
