"""Render gateway/routes.toml into proxy configurations.

    python -m gateway.generate caddy [--port-base 8000] [--listen 127.0.0.1:8000]
    python -m gateway.generate traefik
    python -m gateway.generate ingress
    python -m gateway.generate write

`caddy` prints a Caddyfile for the native stack; `traefik` prints Traefik's dynamic
configuration (file provider) for `docker compose`; `ingress` prints the Kubernetes routing
(Ingresses for Traefik's ingress class with Traefik Middleware and ServersTransport CRDs, and
the Services they route to) for deploy/k8s/; `write` rewrites the three committed files
(gateway/Caddyfile, gateway/traefik/dynamic/routes.yml, deploy/k8s/base/routes.yaml). All
renderers are fed by the same `load_routes()`, so the gateways route identically; the tests
parse the outputs back and compare them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROUTES_FILE = Path(__file__).with_name("routes.toml")
CADDYFILE = Path(__file__).with_name("Caddyfile")
TRAEFIK_ROUTES_FILE = Path(__file__).parent / "traefik" / "dynamic" / "routes.yml"
K8S_ROUTES_FILE = Path(__file__).resolve().parent.parent / "deploy" / "k8s" / "base" / "routes.yaml"
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


# --- Kubernetes: Ingresses for Traefik's ingress class -------------------------------------

# Traefik names a CRD an annotation references as `<namespace>-<name>@kubernetescrd`, and
# kustomize does not rewrite annotations: the overlays deploy into this namespace (a test
# checks), so the references below are right.
K8S_NAMESPACE = "videoflix"
K8S_INGRESS_CLASS = "traefik"
K8S_NAME_LABEL = "app.kubernetes.io/name"  # every Videoflix pod carries its process name
TRAEFIK_ANNOTATION = "traefik.ingress.kubernetes.io/"
TRAEFIK_CRD_API = "traefik.io/v1alpha1"
# The API server accepts an ImplementationSpecific path only if it starts with "/", which an
# anchored regex does not; Traefik's PathRegexp searches unanchored. `/?` matches nothing in
# front of the `^`, so `/?^/x` starts with "/" and still matches only at the path's start.
K8S_REGEX_LEAD = "/?"


def traefik_crd_reference(name: str) -> str:
    return f"{K8S_NAMESPACE}-{name}@kubernetescrd"


def k8s_regex_path(regex: str) -> str:
    if not regex.startswith("^/"):
        raise ValueError(f"the regex {regex!r} must be anchored at the path's start (^/...)")
    return K8S_REGEX_LEAD + regex


def _k8s_middlewares(table: RouteTable) -> dict[str, dict[str, Any]]:
    """Every route's middlewares and the fallback's, as Traefik Middleware specs."""
    specs: dict[str, dict[str, Any]] = {}
    for r in table.routes:
        if r.strip_prefix:
            specs[f"{r.name}-strip-prefix"] = {"stripPrefix": {"prefixes": [r.strip_prefix]}}
        if r.limits.max_body:
            specs[f"{r.name}-body-limit"] = {
                "buffering": {"maxRequestBodyBytes": r.limits.max_body}
            }
    specs[FALLBACK_MIDDLEWARE] = {"replacePath": {"path": NOT_FOUND_PATH}}
    return specs


def _k8s_route_middleware_names(route: Route) -> list[str]:
    names = [f"{route.name}-strip-prefix"] if route.strip_prefix else []
    return names + ([f"{route.name}-body-limit"] if route.limits.max_body else [])


def _k8s_paths(route: Route, backend: dict[str, Any]) -> list[dict[str, Any]]:
    paths = [{"path": p, "pathType": "Exact", "backend": backend} for p in route.exact_paths]
    paths += [{"path": p, "pathType": "Prefix", "backend": backend} for p in route.prefixes]
    if route.regex:
        path = k8s_regex_path(route.regex)
        paths.append({"path": path, "pathType": "ImplementationSpecific", "backend": backend})
    return paths


def _k8s_ingress(
    name: str,
    *,
    priority: int,
    middlewares: list[str],
    paths: list[dict[str, Any]],
    regex: bool,
) -> dict[str, Any]:
    annotations = {f"{TRAEFIK_ANNOTATION}router.priority": str(priority)}
    if middlewares:
        annotations[f"{TRAEFIK_ANNOTATION}router.middlewares"] = ",".join(
            traefik_crd_reference(m) for m in middlewares
        )
    if regex:
        annotations[f"{TRAEFIK_ANNOTATION}router.pathmatcher"] = "PathRegexp"
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"ingressClassName": K8S_INGRESS_CLASS, "rules": [{"http": {"paths": paths}}]},
    }


def _k8s_services(table: RouteTable, services: dict[str, tuple[str, int]]) -> list[dict[str, Any]]:
    """The Services the Ingresses route to (a route with its own timeout gets a Service of
    its own on the same pods, like the file provider's service), and one ServersTransport
    per timeout, referenced by each Service's annotation."""
    for name in table.services:
        services.setdefault(name, (name, table.defaults.upstream_timeout))
    documents: list[dict[str, Any]] = []
    for name, (service, timeout) in sorted(services.items()):
        port = int(table.services[service]["container"].split(":")[1])
        transport = traefik_crd_reference(traefik_transport_name(timeout))
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": name,
                    "labels": {K8S_NAME_LABEL: service},
                    "annotations": {f"{TRAEFIK_ANNOTATION}service.serverstransport": transport},
                },
                "spec": {
                    "selector": {K8S_NAME_LABEL: service},
                    "ports": [{"name": "http", "port": port, "targetPort": "http"}],
                },
            }
        )
    for timeout in sorted({t for _, t in services.values()}):
        documents.append(
            {
                "apiVersion": TRAEFIK_CRD_API,
                "kind": "ServersTransport",
                "metadata": {"name": traefik_transport_name(timeout)},
                "spec": {"forwardingTimeouts": {"responseHeaderTimeout": f"{timeout}s"}},
            }
        )
    return documents


def kubernetes_routing(table: RouteTable) -> list[dict[str, Any]]:
    """The route table as Kubernetes objects: an Ingress per route (Traefik's priority and
    middlewares are per Ingress, by annotation) and one catch-all, their Middlewares, the
    Services they route to and the ServersTransports holding the upstream timeouts."""
    if any(r.name == FALLBACK_ROUTER for r in table.routes):
        raise ValueError(f"the route name {FALLBACK_ROUTER!r} is reserved for the catch-all router")
    priorities = traefik_priorities(table)
    services: dict[str, tuple[str, int]] = {}
    ingresses = []
    for r in table.routes:
        service = traefik_service_name(table, r.service, r.limits)
        services.setdefault(service, (r.service, r.limits.upstream_timeout))
        backend = _k8s_backend(table, service, r.service)
        ingresses.append(
            _k8s_ingress(
                r.name,
                priority=priorities[r.name],
                middlewares=_k8s_route_middleware_names(r),
                paths=_k8s_paths(r, backend),
                regex=r.regex is not None,
            )
        )
    fallback = traefik_service_name(table, table.fallback, table.defaults)
    services.setdefault(fallback, (table.fallback, table.defaults.upstream_timeout))
    root = {"path": "/", "pathType": "Prefix"}
    ingresses.append(
        _k8s_ingress(
            FALLBACK_ROUTER,
            priority=FALLBACK_PRIORITY,
            middlewares=[FALLBACK_MIDDLEWARE],
            paths=[{**root, "backend": _k8s_backend(table, fallback, table.fallback)}],
            regex=False,
        )
    )
    middlewares = [
        {
            "apiVersion": TRAEFIK_CRD_API,
            "kind": "Middleware",
            "metadata": {"name": name},
            "spec": spec,
        }
        for name, spec in _k8s_middlewares(table).items()
    ]
    return [*_k8s_services(table, services), *middlewares, *ingresses]


def _k8s_backend(table: RouteTable, name: str, service: str) -> dict[str, Any]:
    port = int(table.services[service]["container"].split(":")[1])
    return {"service": {"name": name, "port": {"number": port}}}


def _yaml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z][\w./-]*", key) else json.dumps(key)


def _yaml_lines(value: Any, indent: str) -> list[str]:
    """Block-style YAML of dicts, lists and scalars; scalars as JSON (valid YAML)."""
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{indent}{_yaml_key(key)}:")
                lines += _yaml_lines(item, indent + "  ")
            else:
                lines.append(f"{indent}{_yaml_key(key)}: {json.dumps(item)}")
    else:
        for item in value:
            if not isinstance(item, dict | list):
                lines.append(f"{indent}- {json.dumps(item)}")
                continue
            nested = _yaml_lines(item, indent + "  ")
            lines.append(f"{indent}- {nested[0].lstrip()}")
            lines += nested[1:]
    return lines


def render_kubernetes_routing(table: RouteTable) -> str:
    documents = kubernetes_routing(table)
    out = [
        "# Generated from gateway/routes.toml by `python -m gateway.generate ingress`; do not edit.",
        "# Kubernetes routing for Traefik's ingress class (docs/KUBERNETES.md): an Ingress per",
        "# route with Traefik's priority and middlewares as annotations, so the table's first-match",
        "# order holds; the body caps, prefix strips and the catch-all's JSON 404 as Middleware",
        "# CRDs; upstream timeouts as ServersTransport CRDs referenced by each Service.",
    ]
    for document in documents:
        out += ["---", *_yaml_lines(document, "")]
    return "\n".join(out) + "\n"


def write_generated_files(table: RouteTable) -> list[Path]:
    """Rewrite the committed generated configs (the tests check they are up to date)."""
    CADDYFILE.write_text(render_caddyfile(table))
    TRAEFIK_ROUTES_FILE.parent.mkdir(parents=True, exist_ok=True)
    TRAEFIK_ROUTES_FILE.write_text(render_traefik_dynamic(table))
    K8S_ROUTES_FILE.parent.mkdir(parents=True, exist_ok=True)
    K8S_ROUTES_FILE.write_text(render_kubernetes_routing(table))
    return [CADDYFILE, TRAEFIK_ROUTES_FILE, K8S_ROUTES_FILE]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", choices=["caddy", "traefik", "ingress", "write"])
    parser.add_argument("--port-base", type=int, default=8000, help="caddy only")
    parser.add_argument("--listen", default=None, help="caddy only")
    args = parser.parse_args(argv)
    table = load_routes()
    if args.target == "caddy":
        sys.stdout.write(render_caddyfile(table, port_base=args.port_base, listen=args.listen))
    elif args.target == "traefik":
        sys.stdout.write(render_traefik_dynamic(table))
    elif args.target == "ingress":
        sys.stdout.write(render_kubernetes_routing(table))
    else:
        for path in write_generated_files(table):
            print(f"wrote {path.relative_to(ROUTES_FILE.parent.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
