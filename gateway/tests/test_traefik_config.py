"""The Traefik configuration and the Kubernetes Ingresses route exactly like the native
Caddy gateway.

All three are generated from gateway/routes.toml; these tests parse the committed files
back into (route, matchers, service, strip) tuples and compare them, check that the
committed files are what the generator renders now, replay Traefik's priority-ordered
matching on sample paths (for the file provider's routers and for the routers Traefik's
ingress provider derives from the Ingresses), compare each route's body cap and upstream
timeout, and validate the file-provider files against the Traefik v3 JSON schemas (the
Kubernetes objects are validated with every other manifest in deploy/tests).

The Traefik schemas are not in this repository and check-jsonschema has no built-in copy:
they are read from ../shared/schemas (next to the clone). Without them the two schema tests
skip with a warning, both shown in pytest's summary.
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from gateway.generate import (
    CADDYFILE,
    K8S_INGRESS_CLASS,
    K8S_NAME_LABEL,
    K8S_NAMESPACE,
    K8S_REGEX_LEAD,
    K8S_ROUTES_FILE,
    NOT_FOUND_PATH,
    TRAEFIK_ROUTES_FILE,
    load_routes,
    main,
    render_kubernetes_routing,
    render_traefik_dynamic,
    traefik_service_name,
)

ROOT = Path(__file__).resolve().parents[2]
TRAEFIK_DIR = ROOT / "gateway" / "traefik"
STATIC_CONFIG = TRAEFIK_DIR / "traefik.yml"
DASHBOARD_CONFIG = TRAEFIK_DIR / "dynamic" / "dashboard.yml"
SCHEMAS = ROOT.parent / "shared" / "schemas"  # outside the clone: see the docstring

TABLE = load_routes()


@dataclass(frozen=True)
class ParsedRoute:
    name: str
    matchers: frozenset[tuple[str, str]]  # ("path" | "prefix" | "regex", value)
    service: str
    strip: str | None


# --- parsing both generated files back ----------------------------------------------------


def _service_by_native_upstream(upstream: str) -> str:
    matches = [s for s in TABLE.services if TABLE.native_upstream(s, 8000) == upstream]
    assert len(matches) == 1, f"upstream {upstream} is no single service of the table"
    return matches[0]


def _block_lines(lines: Iterator[str]) -> list[str]:
    """The stripped lines of a block whose opening line was just read, nested ones included."""
    inside, depth = [], 1
    for line in lines:
        line = line.strip()
        depth += line.endswith("{") - (line == "}")
        if depth == 0:
            break
        inside.append(line)
    return inside


def parse_caddyfile(text: str) -> tuple[list[ParsedRoute], str]:
    """The Caddyfile's routes in order (a route's matcher blocks merged) and its fallback."""
    matchers: dict[str, set[tuple[str, str]]] = {}
    handled: dict[str, tuple[str, str | None]] = {}
    fallback = None
    lines = iter(text.splitlines())
    for line in lines:
        line = line.strip()
        if m := re.fullmatch(r"@(\S+)-\d+ path (.+)", line):
            tokens = m[2].split()
            matchers.setdefault(m[1], set()).update(
                ("prefix", t[:-1]) if t.endswith("*") else ("path", t) for t in tokens
            )
        elif m := re.fullmatch(r"@(\S+)-\d+ path_regexp (\S+)", line):
            matchers.setdefault(m[1], set()).add(("regex", m[2]))
        elif line == "handle_errors {":  # the error pages: no routing in there
            _block_lines(lines)
        elif m := re.fullmatch(r"handle(?: @(\S+)-\d+)? \{", line):
            strip, upstream, rewrite = None, None, None
            for inner in _block_lines(lines):
                if s := re.fullmatch(r"uri strip_prefix (\S+)", inner):
                    strip = s[1]
                elif r := re.fullmatch(r"rewrite \* (\S+)", inner):
                    rewrite = r[1]
                elif u := re.fullmatch(r"reverse_proxy (\S+)(?: \{)?", inner):
                    upstream = u[1]
            assert upstream, f"handle block without reverse_proxy: {line}"
            service = _service_by_native_upstream(upstream)
            if m[1] is None:
                assert rewrite == NOT_FOUND_PATH, "the catch-all must not forward the path"
                fallback = service
            else:
                assert rewrite is None
                assert handled.setdefault(m[1], (service, strip)) == (service, strip)
    assert fallback, "the Caddyfile has no catch-all handle"
    routes = [ParsedRoute(n, frozenset(matchers[n]), *handled[n]) for n in handled]
    return routes, fallback


TRAEFIK_MATCHER = re.compile(r"(PathPrefix|PathRegexp|Path)\(`([^`]*)`\)")
TRAEFIK_KIND = {"Path": "path", "PathPrefix": "prefix", "PathRegexp": "regex"}


def parse_traefik_rule(rule: str) -> frozenset[tuple[str, str]]:
    parts = rule.split(" || ")
    parsed = []
    for part in parts:
        m = TRAEFIK_MATCHER.fullmatch(part)
        assert m, f"unexpected matcher {part!r} in rule {rule!r}"
        parsed.append((TRAEFIK_KIND[m[1]], m[2]))
    return frozenset(parsed)


def _service_by_container_url(url: str) -> str:
    matches = [s for s in TABLE.services if TABLE.container_upstream(s) == url]
    assert len(matches) == 1, f"server {url} is no single service of the table"
    return matches[0]


def traefik_routers_by_priority(dynamic: dict) -> list[tuple[str, dict]]:
    """Routers in the order Traefik tries them: highest priority first."""
    routers = dynamic["http"]["routers"]
    return sorted(routers.items(), key=lambda item: -item[1]["priority"])


def parse_traefik_dynamic(dynamic: dict) -> tuple[list[ParsedRoute], str]:
    http = dynamic["http"]
    routes, fallback = [], None
    for name, router in traefik_routers_by_priority(dynamic):
        servers = http["services"][router["service"]]["loadBalancer"]["servers"]
        assert len(servers) == 1
        service = _service_by_container_url(servers[0]["url"])
        strips = [
            prefix
            for mw in router.get("middlewares", [])
            for prefix in http["middlewares"][mw].get("stripPrefix", {}).get("prefixes", [])
        ]
        assert len(strips) <= 1, f"router {name} strips more than one prefix"
        matchers = parse_traefik_rule(router["rule"])
        if matchers == {("prefix", "/")}:
            replaced = [http["middlewares"][mw].get("replacePath") for mw in router["middlewares"]]
            assert replaced == [{"path": NOT_FOUND_PATH}], "the catch-all must not forward the path"
            fallback = service
            continue
        routes.append(ParsedRoute(name, matchers, service, strips[0] if strips else None))
    assert fallback, "the Traefik config has no catch-all router"
    return routes, fallback


def committed_dynamic() -> dict:
    return yaml.safe_load(TRAEFIK_ROUTES_FILE.read_text())


# --- the Kubernetes routing, as Traefik's ingress provider reads it ------------------------


@dataclass(frozen=True)
class K8sRouting:
    """The committed deploy/k8s/base/routes.yaml, by kind and name."""

    ingresses: dict[str, dict]
    middlewares: dict[str, dict]
    services: dict[str, dict]
    transports: dict[str, dict]

    @classmethod
    def parse(cls, text: str) -> K8sRouting:
        by_kind: dict[str, dict[str, dict]] = {}
        for document in yaml.safe_load_all(text):
            name = document["metadata"]["name"]
            assert name not in by_kind.setdefault(document["kind"], {}), f"two {name}"
            by_kind[document["kind"]][name] = document
        assert set(by_kind) == {"Ingress", "Middleware", "Service", "ServersTransport"}
        return cls(
            by_kind["Ingress"],
            by_kind["Middleware"],
            by_kind["Service"],
            by_kind["ServersTransport"],
        )

    def annotation(self, ingress: dict, key: str) -> str | None:
        return ingress["metadata"]["annotations"].get(f"traefik.ingress.kubernetes.io/{key}")

    def by_priority(self) -> list[dict]:
        """Ingresses in the order Traefik tries their routers: highest priority first."""
        return sorted(
            self.ingresses.values(), key=lambda i: -int(self.annotation(i, "router.priority"))
        )

    def crd(self, reference: str, kind: dict[str, dict]) -> dict:
        """The CRD an annotation names as `<namespace>-<name>@kubernetescrd`."""
        prefix, suffix = f"{K8S_NAMESPACE}-", "@kubernetescrd"
        assert reference.startswith(prefix), reference
        assert reference.endswith(suffix), reference
        return kind[reference[len(prefix) : -len(suffix)]]["spec"]

    def middleware_specs(self, ingress: dict) -> list[dict]:
        references = self.annotation(ingress, "router.middlewares")
        return [self.crd(r, self.middlewares) for r in references.split(",")] if references else []

    def paths(self, ingress: dict) -> list[dict]:
        (rule,) = ingress["spec"]["rules"]
        return rule["http"]["paths"]

    def backend(self, ingress: dict) -> str:
        """The single Service an Ingress routes to."""
        names = {p["backend"]["service"]["name"] for p in self.paths(ingress)}
        assert len(names) == 1, names
        return names.pop()

    def table_service(self, service_name: str) -> str:
        service = self.services[service_name]
        selected = service["spec"]["selector"][K8S_NAME_LABEL]
        matches = [
            s for s in TABLE.services if TABLE.services[s]["container"].split(":")[0] == selected
        ]
        assert len(matches) == 1, f"Service {service_name} selects no single routed service"
        return matches[0]

    def matchers(self, ingress: dict) -> frozenset[tuple[str, str]]:
        """(kind, value) per path, as Traefik's ingress provider turns them into rules:
        Exact -> Path, Prefix -> PathPrefix, ImplementationSpecific -> the pathmatcher."""
        out = []
        for path in self.paths(ingress):
            if path["pathType"] == "Exact":
                out.append(("path", path["path"]))
            elif path["pathType"] == "Prefix":
                out.append(("prefix", path["path"]))
            else:
                assert path["pathType"] == "ImplementationSpecific"
                assert self.annotation(ingress, "router.pathmatcher") == "PathRegexp"
                assert path["path"].startswith(K8S_REGEX_LEAD + "^"), path["path"]
                out.append(("regex", path["path"][len(K8S_REGEX_LEAD) :]))
        return frozenset(out)


def committed_k8s() -> K8sRouting:
    return K8sRouting.parse(K8S_ROUTES_FILE.read_text())


def parse_k8s_routing(routing: K8sRouting) -> tuple[list[ParsedRoute], str]:
    routes, fallback = [], None
    for ingress in routing.by_priority():
        name = ingress["metadata"]["name"]
        assert ingress["spec"]["ingressClassName"] == K8S_INGRESS_CLASS
        service = routing.table_service(routing.backend(ingress))
        specs = routing.middleware_specs(ingress)
        strips = [p for spec in specs for p in spec.get("stripPrefix", {}).get("prefixes", [])]
        assert len(strips) <= 1, f"Ingress {name} strips more than one prefix"
        matchers = routing.matchers(ingress)
        if matchers == {("prefix", "/")}:
            replaced = [spec.get("replacePath") for spec in specs]
            assert replaced == [{"path": NOT_FOUND_PATH}], "the catch-all must not forward the path"
            fallback = service
            continue
        routes.append(ParsedRoute(name, matchers, service, strips[0] if strips else None))
    assert fallback, "the Kubernetes routing has no catch-all Ingress"
    return routes, fallback


# --- the committed file is current (the Caddyfile's twin test is in the Caddy test) -------


def test_committed_traefik_routes_are_generated_from_current_route_table():
    assert TRAEFIK_ROUTES_FILE.read_text() == render_traefik_dynamic(TABLE), (
        "gateway/traefik/dynamic/routes.yml is stale: run `python -m gateway.generate write`"
    )


def test_generate_cli_prints_the_traefik_config(capsys):
    assert main(["traefik"]) == 0
    assert capsys.readouterr().out == render_traefik_dynamic(TABLE)


def test_committed_kubernetes_routing_is_generated_from_current_route_table():
    assert K8S_ROUTES_FILE.read_text() == render_kubernetes_routing(TABLE), (
        "deploy/k8s/base/routes.yaml is stale: run `python -m gateway.generate write`"
    )


def test_generate_cli_prints_the_kubernetes_routing(capsys):
    assert main(["ingress"]) == 0
    assert capsys.readouterr().out == render_kubernetes_routing(TABLE)


# --- same routing -------------------------------------------------------------------------


def test_traefik_routes_and_kubernetes_ingresses_equal_caddy_routes():
    caddy_routes, caddy_fallback = parse_caddyfile(CADDYFILE.read_text())
    traefik_routes, traefik_fallback = parse_traefik_dynamic(committed_dynamic())
    ingress_routes, ingress_fallback = parse_k8s_routing(committed_k8s())
    assert traefik_routes == caddy_routes
    assert ingress_routes == caddy_routes
    assert ingress_fallback == traefik_fallback == caddy_fallback == TABLE.fallback


def test_parsed_routes_cover_the_whole_route_table():
    traefik_routes, _ = parse_traefik_dynamic(committed_dynamic())
    assert [r.name for r in traefik_routes] == [r.name for r in TABLE.routes]
    for parsed, route in zip(traefik_routes, TABLE.routes, strict=True):
        expected = {("path", p) for p in route.exact_paths}
        expected |= {("prefix", p) for p in route.prefixes}
        expected |= {("regex", route.regex)} if route.regex else set()
        assert parsed.matchers == expected
        assert (parsed.service, parsed.strip) == (route.service, route.strip_prefix)


def test_router_priorities_keep_the_tables_first_match_order():
    routers = committed_dynamic()["http"]["routers"]
    priorities = [routers[r.name]["priority"] for r in TABLE.routes]
    assert priorities == sorted(priorities, reverse=True)
    assert len(set(priorities)) == len(priorities), "equal priorities leave the order to Traefik"
    fallback = [r for r in routers.values() if r["rule"] == "PathPrefix(`/`)"]
    assert len(fallback) == 1
    assert fallback[0]["service"] == TABLE.fallback
    assert fallback[0]["priority"] < min(priorities)
    assert all(r["priority"] >= 1 for r in routers.values()), "priority 0 means rule length"
    assert {ep for r in routers.values() for ep in r["entryPoints"]} == {"web"}


def route_like_traefik(dynamic: dict, path: str) -> tuple[str, str]:
    """(service, path forwarded): the first router by priority whose rule matches wins."""
    http = dynamic["http"]
    for _, router in traefik_routers_by_priority(dynamic):
        matched = False
        for kind, value in parse_traefik_rule(router["rule"]):
            if kind == "path":
                matched |= path == value
            elif kind == "prefix":
                matched |= path.startswith(value)
            else:  # Go's regexp.MatchString: unanchored search
                matched |= re.search(value, path) is not None
        if not matched:
            continue
        for mw in router.get("middlewares", []):
            middleware = http["middlewares"][mw]
            if "replacePath" in middleware:
                path = middleware["replacePath"]["path"]
            for prefix in middleware.get("stripPrefix", {}).get("prefixes", []):
                if path.startswith(prefix):
                    path = path[len(prefix) :] or "/"
        return router["service"], path
    raise AssertionError(f"no router matches {path}")


def route_like_ingress(routing: K8sRouting, path: str) -> tuple[str, str]:
    """(Service, path forwarded) as Traefik's ingress provider routes: each Ingress path is
    a router with the Ingress's priority; the Ingress path is the rule's value as written
    (the regex with its leading `/?`, searched unanchored like Go's MatchString)."""
    for ingress in routing.by_priority():
        matched = False
        for rule in routing.paths(ingress):
            value = rule["path"]
            if rule["pathType"] == "Exact":
                matched |= path == value
            elif rule["pathType"] == "Prefix":
                matched |= path.startswith(value)
            else:
                matched |= re.search(value, path) is not None
        if not matched:
            continue
        for spec in routing.middleware_specs(ingress):
            if "replacePath" in spec:
                path = spec["replacePath"]["path"]
            for prefix in spec.get("stripPrefix", {}).get("prefixes", []):
                if path.startswith(prefix):
                    path = path[len(prefix) :] or "/"
        return routing.backend(ingress), path
    raise AssertionError(f"no Ingress matches {path}")


@pytest.mark.parametrize(
    ("path", "service", "forwarded"),
    [
        ("/api/login/", "auth", "/api/login/"),
        ("/api/login", "auth", "/api/login"),
        ("/api/token/refresh/", "auth", "/api/token/refresh/"),
        ("/api/activate/MQ/abc-123/", "auth", "/api/activate/MQ/abc-123/"),
        ("/api/password_confirm/MQ/abc-123/", "auth", "/api/password_confirm/MQ/abc-123/"),
        ("/.well-known/jwks.json", "auth", "/.well-known/jwks.json"),
        ("/api/video/", "catalog", "/api/video/"),
        ("/api/video", "catalog", "/api/video"),
        ("/api/video/7/480p/index.m3u8", "streaming", "/api/video/7/480p/index.m3u8"),
        ("/api/video/7/720p/seg_00003.ts/", "streaming", "/api/video/7/720p/seg_00003.ts/"),
        ("/api/video/7/master.m3u8", "streaming", "/api/video/7/master.m3u8"),
        ("/api/video/7/thumbnail.jpg", "streaming", "/api/video/7/thumbnail.jpg"),
        ("/api/admin/videos/", "catalog", "/api/admin/videos/"),
        ("/admin/", "catalog", "/admin/"),
        ("/svc/auth/healthz", "auth", "/healthz"),
        ("/svc/catalog/healthz", "catalog", "/healthz"),
        ("/svc/catalog/readyz", "catalog", NOT_FOUND_PATH),
        ("/metrics", "catalog", NOT_FOUND_PATH),
        ("/openapi.json", "catalog", NOT_FOUND_PATH),
        ("/svc/streaming/healthz", "streaming", "/healthz"),
        # unmatched: the fallback service answers its JSON 404
        ("/api/video/7/", "catalog", NOT_FOUND_PATH),
        # the media regex is anchored: another path containing its shape is not media
        ("/x/api/video/7/480p/index.m3u8", "catalog", NOT_FOUND_PATH),
        ("/api/admin/x/api/video/7/a", "catalog", "/api/admin/x/api/video/7/a"),
        ("/api/registerme/", "catalog", NOT_FOUND_PATH),
        ("/no/such/path", "catalog", NOT_FOUND_PATH),
        ("/", "catalog", NOT_FOUND_PATH),
    ],
)
def test_traefik_sends_each_path_where_the_route_table_says(path, service, forwarded):
    assert route_like_traefik(committed_dynamic(), path) == (service, forwarded)
    assert route_like_ingress(committed_k8s(), path) == (service, forwarded)


def test_generated_traefik_config_has_no_template_actions():
    # Traefik renders every dynamic file as a Go template first: "{{" would be executed.
    assert "{{" not in TRAEFIK_ROUTES_FILE.read_text()


# --- static config and dashboard ----------------------------------------------------------


def test_static_config_reads_the_dynamic_directory_and_serves_web_on_8000():
    static = yaml.safe_load(STATIC_CONFIG.read_text())
    assert static["entryPoints"]["web"]["address"] == ":8000"
    assert static["providers"]["file"]["directory"] == "/etc/traefik/dynamic"
    assert TRAEFIK_ROUTES_FILE.parent == TRAEFIK_DIR / "dynamic"
    assert static["ping"]["entryPoint"] == "ping"  # used by the container healthcheck
    assert static["api"].get("insecure") is not True, "insecure would publish the dashboard"
    assert static["global"] == {"checkNewVersion": False, "sendAnonymousUsage": False}


def render_dashboard_template(text: str, env: dict[str, str]) -> dict | None:
    """Evaluate the one Go template construct the dashboard file uses, as Traefik would."""
    block = re.compile(
        r'\{\{ if eq \(env "(?P<var>\w+)"\) "(?P<want>[^"]*)" \}\}(?P<body>.*?)\{\{ end \}\}',
        re.DOTALL,
    )
    rendered = block.sub(
        lambda m: m["body"] if env.get(m["var"], "") == m["want"] else "", text, count=1
    )
    assert "{{" not in rendered, "the dashboard file uses template actions this test cannot read"
    return yaml.safe_load(rendered)


@pytest.mark.parametrize("value", [None, "", "false", "1", "TRUE"])
def test_dashboard_router_is_absent_unless_enabled(value):
    env = {} if value is None else {"GATEWAY_DASHBOARD": value}
    rendered = render_dashboard_template(DASHBOARD_CONFIG.read_text(), env)
    assert not rendered or not rendered.get("http", {}).get("routers")


def test_dashboard_router_serves_the_api_on_its_own_entry_point_when_enabled():
    rendered = render_dashboard_template(
        DASHBOARD_CONFIG.read_text(), {"GATEWAY_DASHBOARD": "true"}
    )
    router = rendered["http"]["routers"]["dashboard"]
    assert router["service"] == "api@internal"
    assert router["entryPoints"] == ["dashboard"]
    static = yaml.safe_load(STATIC_CONFIG.read_text())
    assert static["api"]["dashboard"] is True
    assert static["entryPoints"]["dashboard"]["address"] == ":8080"


# --- JSON schemas -------------------------------------------------------------------------


def check_jsonschema(schema: str, *files: Path) -> None:
    if not (SCHEMAS / schema).exists():
        reason = (
            f"NOT VALIDATED: {', '.join(f.name for f in files)} against {schema}: "
            f"{SCHEMAS} is absent (SchemaStore's src/schemas/json/{schema} goes there)"
        )
        warnings.warn(reason, pytest.PytestWarning, stacklevel=2)
        pytest.skip(reason)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--schemafile",
            str(SCHEMAS / schema),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_static_config_validates_against_traefik_v3_schema():
    check_jsonschema("traefik-v3.json", STATIC_CONFIG)


def test_dynamic_configs_validate_against_traefik_v3_file_provider_schema():
    check_jsonschema(
        "traefik-v3-file-provider.json", *sorted((TRAEFIK_DIR / "dynamic").glob("*.yml"))
    )


# --- limits: body caps and upstream timeouts per route -------------------------------------


def caddy_limits(text: str) -> dict[str, tuple[int, int]]:
    """(max body, response-header timeout) per route of the Caddyfile (0: no body cap)."""
    limits: dict[str, tuple[int, int]] = {}
    route, body = None, 0
    for line in (raw.strip() for raw in text.splitlines()):
        if m := re.fullmatch(r"handle @(\S+)-\d+ \{", line):
            route, body = m[1], 0
        elif m := re.fullmatch(r"max_size (\d+)", line):
            body = int(m[1])
        elif (m := re.fullmatch(r"response_header_timeout (\d+)s", line)) and route:
            assert limits.setdefault(route, (body, int(m[1]))) == (body, int(m[1]))
            route = None
    return limits


def traefik_limits(dynamic: dict) -> dict[str, tuple[int, int]]:
    http = dynamic["http"]
    limits = {}
    for name, router in http["routers"].items():
        if name == "fallback":
            continue
        caps = [
            http["middlewares"][mw]["buffering"]["maxRequestBodyBytes"]
            for mw in router.get("middlewares", [])
            if "buffering" in http["middlewares"][mw]
        ]
        transport = http["services"][router["service"]]["loadBalancer"]["serversTransport"]
        timeout = http["serversTransports"][transport]["forwardingTimeouts"]
        limits[name] = (caps[0] if caps else 0, int(timeout["responseHeaderTimeout"][:-1]))
    return limits


def ingress_limits(routing: K8sRouting) -> dict[str, tuple[int, int]]:
    """Per Ingress: the buffering Middleware's cap, and the response-header timeout of the
    ServersTransport its Service's annotation names."""
    limits = {}
    for name, ingress in routing.ingresses.items():
        if name == "fallback":
            continue
        caps = [
            spec["buffering"]["maxRequestBodyBytes"]
            for spec in routing.middleware_specs(ingress)
            if "buffering" in spec
        ]
        service = routing.services[routing.backend(ingress)]
        reference = service["metadata"]["annotations"][
            "traefik.ingress.kubernetes.io/service.serverstransport"
        ]
        timeout = routing.crd(reference, routing.transports)["forwardingTimeouts"]
        limits[name] = (caps[0] if caps else 0, int(timeout["responseHeaderTimeout"][:-1]))
    return limits


def test_every_gateway_applies_each_routes_limits():
    expected = {r.name: (r.limits.max_body, r.limits.upstream_timeout) for r in TABLE.routes}
    assert caddy_limits(CADDYFILE.read_text()) == expected
    assert traefik_limits(committed_dynamic()) == expected
    assert ingress_limits(committed_k8s()) == expected


def test_long_waits_and_uncapped_bodies_only_where_uploads_go():
    uploads = {"catalog-resumable-uploads", "catalog-single-request-upload"}
    for route in TABLE.routes:
        if route.name in uploads:
            assert route.limits.upstream_timeout > TABLE.defaults.upstream_timeout
        else:
            assert route.limits.upstream_timeout <= TABLE.defaults.upstream_timeout, route.name
            # uncapped elsewhere only for GET-only media (Traefik's cap buffers responses too)
            assert route.limits.max_body or route.name == "streaming-media", route.name
    tus = next(r for r in TABLE.routes if r.name == "catalog-resumable-uploads")
    assert 50_000_000 <= tus.limits.max_body <= 64 * 1024 * 1024, "fits the page's 50 MB chunks"
    service = traefik_service_name(TABLE, "catalog", tus.limits)
    assert route_like_traefik(committed_dynamic(), "/api/admin/uploads/abc/")[0] == service
    router = committed_dynamic()["http"]["routers"]["catalog-single-request-upload"]
    assert "middlewares" not in router, "a whole-film upload must never be buffered by Traefik"
    ingress = committed_k8s().ingresses["catalog-single-request-upload"]
    assert committed_k8s().middleware_specs(ingress) == [], "never buffered in the cluster either"


# --- Kubernetes specifics -------------------------------------------------------------------


def test_ingress_priorities_keep_the_tables_first_match_order():
    routing = committed_k8s()
    priorities = [
        int(routing.annotation(routing.ingresses[r.name], "router.priority")) for r in TABLE.routes
    ]
    assert priorities == sorted(priorities, reverse=True)
    assert len(set(priorities)) == len(priorities), "equal priorities leave the order to Traefik"
    fallback = int(routing.annotation(routing.ingresses["fallback"], "router.priority"))
    assert 1 <= fallback < min(priorities), "priority 0 would mean the rule's length"


def test_every_crd_an_annotation_names_is_in_the_namespace_and_defined():
    routing = committed_k8s()
    for ingress in routing.ingresses.values():
        routing.middleware_specs(ingress)  # resolves (or fails on) every reference
    for service in routing.services.values():
        reference = service["metadata"]["annotations"][
            "traefik.ingress.kubernetes.io/service.serverstransport"
        ]
        assert routing.crd(reference, routing.transports)["forwardingTimeouts"]
    # each Middleware and ServersTransport is used
    referenced = {
        r
        for ingress in routing.ingresses.values()
        for r in (routing.annotation(ingress, "router.middlewares") or "").split(",")
        if r
    }
    assert {f"{K8S_NAMESPACE}-{m}@kubernetescrd" for m in routing.middlewares} == referenced


def test_ingress_services_reach_the_pods_on_their_named_port():
    routing = committed_k8s()
    for name, service in routing.services.items():
        table_service = routing.table_service(name)
        port = int(TABLE.services[table_service]["container"].split(":")[1])
        assert service["spec"]["ports"] == [{"name": "http", "port": port, "targetPort": "http"}]
    for ingress in routing.ingresses.values():
        for path in routing.paths(ingress):
            backend = path["backend"]["service"]
            assert (
                backend["port"]["number"]
                == routing.services[backend["name"]]["spec"]["ports"][0]["port"]
            )


@pytest.mark.parametrize(
    "path",
    [
        "/api/video/7/480p/index.m3u8",
        "/api/video/7/thumbnail.jpg",
        "/api/video/7/",
        "/api/video/7",
        "/x/api/video/7/480p/index.m3u8",
        "//api/video/7/a",
        "/api/video//a",
    ],
)
def test_ingress_regex_matches_exactly_what_the_tables_regex_matches(path):
    # The API server wants ImplementationSpecific paths to start with "/": the lead `/?`
    # must change nothing about what matches.
    (route,) = [r for r in TABLE.routes if r.regex]
    ingress = committed_k8s().ingresses[route.name]
    (rule,) = committed_k8s().paths(ingress)
    assert rule["path"].startswith("/")
    assert (re.search(rule["path"], path) is None) == (re.search(route.regex, path) is None)
