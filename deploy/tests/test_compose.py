"""docker-compose.yml, proved without a container engine.

The file validates against the Compose Specification schema (the copy check-jsonschema
ships, so it runs in any clone), and its topology is checked directly: every routed service
runs with a port and a healthcheck, startup waits on health, migrations run once, transcoder
workers scale alone, the media volume is shared the way each service needs it, and every
variable compose interpolates is documented.
"""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
import tomllib
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values
from pydantic_settings import BaseSettings

from deploy import kube
from gateway.generate import load_routes

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
HEALTHY = "service_healthy"
COMPLETED = "service_completed_successfully"


def is_one_shot(service: dict) -> bool:
    return service.get("restart") == "no"


def has_healthcheck(service: dict) -> bool:
    check = service.get("healthcheck") or {}
    return bool(check.get("test")) and not check.get("disable")


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment is written as a mapping"
    return {k: str(v) for k, v in env.items()}


def depends_on(service: dict) -> dict[str, dict]:
    deps = service.get("depends_on") or {}
    assert isinstance(deps, dict), "depends_on is written with conditions"
    return deps


def mounts(service: dict) -> dict[str, str]:
    """Volume mounts as target -> "source[:mode]"."""
    out = {}
    for spec in service.get("volumes", []):
        source, target, *mode = spec.split(":")
        out[target] = ":".join([source, *mode])
    return out


def validate_against_compose_spec(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_validates_against_compose_spec():
    result = validate_against_compose_spec(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_spec_check_rejects_an_unknown_service_key(tmp_path):
    misspelt = tmp_path / "compose.yml"
    misspelt.write_text("services:\n  web:\n    image: nginx:1.27.0\n    restrat: always\n")
    result = validate_against_compose_spec(misspelt)
    assert result.returncode == 1
    assert "restrat" in result.stdout


@pytest.mark.parametrize("name", sorted(load_routes().services))
def test_every_routed_service_has_a_compose_service_with_port_and_healthcheck(name):
    host, port = load_routes().services[name]["container"].split(":")
    assert host in SERVICES, f"routes.toml sends traffic to {host}, which compose does not run"
    service = SERVICES[host]
    assert port in [str(p) for p in service.get("expose", [])]
    assert environment(service)["HTTP_PORT"] == port
    assert environment(service)["HTTP_HOST"] == "0.0.0.0"
    assert has_healthcheck(service)
    assert not service.get("ports"), "services are reached through the gateway only"


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if not is_one_shot(s)))
def test_every_long_running_container_has_a_healthcheck(name):
    assert has_healthcheck(SERVICES[name])
    assert SERVICES[name].get("restart") == "unless-stopped"


def test_dependencies_wait_for_health_or_completion():
    for name, service in SERVICES.items():
        for dep, spec in depends_on(service).items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            condition = spec.get("condition")
            if is_one_shot(SERVICES[dep]):
                assert condition == COMPLETED, f"{name} -> {dep}"
            else:
                assert condition == HEALTHY, f"{name} -> {dep}"
                assert has_healthcheck(SERVICES[dep]), f"{name} waits on {dep}'s missing check"


def test_dependencies_have_a_start_order():
    graph = {name: set(depends_on(service)) for name, service in SERVICES.items()}
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        pytest.fail(f"depends_on cycle: {exc.args[1]}")


def test_gateway_starts_after_every_service_it_routes_to():
    routed = {spec["container"].split(":")[0] for spec in load_routes().services.values()}
    assert set(depends_on(SERVICES["gateway"])) == routed


@pytest.mark.parametrize("name", ["auth", "catalog"])
def test_migrations_run_once_before_their_service(name):
    migrate = SERVICES[f"{name}-migrate"]
    assert is_one_shot(migrate)
    assert migrate["command"] == [f"videoflix-{name}", "migrate"]
    assert migrate["build"] == SERVICES[name]["build"]
    assert depends_on(SERVICES[name])[f"{name}-migrate"]["condition"] == COMPLETED
    # as the role owning the database, which the one-shot postgres-roles makes first
    assert depends_on(migrate)["postgres-roles"]["condition"] == COMPLETED
    assert depends_on(SERVICES["postgres-roles"])["postgres"]["condition"] == HEALTHY
    database_url = f"{name.upper()}_DATABASE_URL"
    assert environment(migrate)[database_url] == environment(SERVICES[name])[database_url]
    assert f"@postgres:5432/videoflix_{name}" in environment(migrate)[database_url]
    assert environment(migrate)[database_url].startswith(f"postgresql+psycopg://videoflix_{name}:")


def test_transcoder_workers_scale_alone():
    worker, dispatcher = SERVICES["transcoder-worker"], SERVICES["transcoder-dispatcher"]
    assert worker["command"] == ["videoflix-transcoder", "worker"]
    assert dispatcher["command"] == ["videoflix-transcoder", "dispatcher"]
    # --scale needs containers without fixed names or host ports
    assert not any("container_name" in s for s in SERVICES.values())
    assert "ports" not in worker
    assert not any("transcoder-worker" in depends_on(s) for s in SERVICES.values())


def test_media_volume_is_shared_writable_by_producers_and_read_only_for_streaming():
    assert "media" in COMPOSE["volumes"]
    for name in ("catalog", "transcoder-worker", "transcoder-dispatcher"):
        assert mounts(SERVICES[name])["/media"] == "media", name
        assert environment(SERVICES[name])["MEDIA_ROOT"] == "/media"
    assert mounts(SERVICES["streaming"])["/media"] == "media:ro"
    assert environment(SERVICES["streaming"])["MEDIA_ROOT"] == "/media"


def test_application_containers_reach_infrastructure_by_service_name():
    for name, service in SERVICES.items():
        if "build" not in service:
            continue
        env = environment(service)
        if "REDIS_URL" in env:  # as the service's own ACL user
            assert re.fullmatch(r"redis://[\w-]+:\$\{\w+:\?[^}]+\}@redis:6379/0", env["REDIS_URL"])
        if not name.endswith("-migrate"):
            assert env["NATS_URL"].startswith("nats://nats:"), name
            assert env["JWKS_URL"] == "http://auth:8000/.well-known/jwks.json", name
        fixed = [v for v in env.values() if not v.startswith("${")]  # not .env's browser URLs
        assert "127.0.0.1" not in " ".join(fixed), name
        assert "env_file" not in service, name  # only the variables listed for it
    assert environment(SERVICES["mailer"])["SMTP_HOST"] == "mailpit"
    assert environment(SERVICES["auth"])["AUTH_KEYS_DIR"] in mounts(SERVICES["auth"])


def test_built_services_run_their_own_dockerfile_target_and_console_script():
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE.read_text(), re.MULTILINE))
    for name, service in SERVICES.items():
        if "build" not in service:
            continue
        build = service["build"]
        assert (build["context"], build["dockerfile"]) == (".", "deploy/docker/Dockerfile")
        target = build["target"]
        assert target in stages, f"{name}: no Dockerfile target {target}"
        pyproject = tomllib.loads((ROOT / "services" / target / "pyproject.toml").read_text())
        assert service["command"][0] in pyproject["project"]["scripts"], name
        assert service["image"] == f"videoflix-{target}:local", name


OBSERVE = "observe"  # the profile of Prometheus and Grafana (docs/OBSERVABILITY.md)


def test_only_the_gateway_mailpit_and_the_observe_profile_publish_ports():
    published = {name for name, s in SERVICES.items() if s.get("ports")}
    observing = {name for name, s in SERVICES.items() if OBSERVE in s.get("profiles", [])}
    assert observing == {"prometheus", "grafana"}
    assert published == {"gateway", "mailpit"} | observing
    for name in observing:  # on this machine only
        assert all(port.startswith("127.0.0.1:") for port in SERVICES[name]["ports"]), name


def test_only_prometheus_and_grafana_wait_for_a_profile():
    profiled = {name for name, s in SERVICES.items() if s.get("profiles")}
    assert profiled == {"prometheus", "grafana"}
    assert all(SERVICES[name]["profiles"] == [OBSERVE] for name in profiled)
    assert not any(
        dep in profiled for s in SERVICES.values() if not s.get("profiles") for dep in depends_on(s)
    )


def test_gateway_runs_the_committed_traefik_config():
    gateway = SERVICES["gateway"]
    assert re.fullmatch(r"traefik:v3\.\d+\.\d+", gateway["image"])
    assert mounts(gateway)["/etc/traefik"] == "./gateway/traefik:ro"
    assert (ROOT / "gateway" / "traefik" / "traefik.yml").is_file()
    assert gateway["command"] == ["--configFile=/etc/traefik/traefik.yml"]
    assert gateway["healthcheck"]["test"][1:3] == ["traefik", "healthcheck"]
    assert gateway["ports"] == [
        "${GATEWAY_PORT:-8000}:8000",  # the `web` entry point
        "127.0.0.1:${GATEWAY_DASHBOARD_PORT:-8080}:8080",  # `dashboard`, local only
    ]
    assert environment(gateway)["GATEWAY_DASHBOARD"] == "${GATEWAY_DASHBOARD:-false}"


def test_every_image_is_pinned_to_an_exact_version():
    for name, service in SERVICES.items():
        if "build" in service:
            continue
        image = service["image"]
        # PostgreSQL releases are major.minor since version 10; everything else major.minor.patch
        exact = r"postgres:\d+\.\d+|[\w./-]+:v?\d+\.\d+\.\d+"
        assert re.fullmatch(rf"({exact})(-[a-z0-9]+)?(@sha256:[0-9a-f]{{64}})?", image), (
            f"{name}: {image} is not pinned to an exact release"
        )


def test_compose_variables_are_documented_with_the_same_defaults():
    documented = dotenv_values(ENV_EXAMPLE)
    used = re.findall(r"\$\{(\w+)(?:(:\?|:?-)([^}]*))?\}", COMPOSE_FILE.read_text())
    assert used
    for var, kind, default in used:
        assert var in documented, f"{var} is used by docker-compose.yml but not in .env.example"
        if kind != ":?":  # required (the per-service passwords): no default to compare
            assert default == documented[var], f"{var}: compose default differs from .env.example"


def interpolate(value: str, dotenv: dict[str, str | None]) -> str:
    """Compose's interpolation with `.env` being a copy of .env.example whose per-service
    passwords deploy/docker/secrets.sh filled in."""
    return kube.interpolate(value, dotenv, lambda name: f"secret-of-{name.lower()}")


def settings_class(target: str) -> type[BaseSettings]:
    module = importlib.import_module(f"videoflix_{target}.settings")
    classes = [
        c
        for c in vars(module).values()
        if inspect.isclass(c) and issubclass(c, BaseSettings) and c.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"videoflix_{target}.settings defines {classes}"
    return classes[0]


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if "build" in s))
def test_each_containers_configuration_is_valid_for_its_service(name):
    """.env (a copy of .env.example) then compose's environment, read by the service's
    own settings class: every value parses, and the compose network's addresses win."""
    service = SERVICES[name]
    dotenv = dotenv_values(ENV_EXAMPLE)
    env = {k: interpolate(v, dotenv) for k, v in environment(service).items()}
    settings = settings_class(service["build"]["target"])(**env)
    if name.endswith("-migrate"):  # the database, nothing else
        assert set(env) == {"LOG_LEVEL", "LOG_FORMAT", f"{name.split('-')[0].upper()}_DATABASE_URL"}
    else:
        assert (settings.http_host, settings.http_port) == ("0.0.0.0", 8000)
        assert settings.media_root == Path("/media")
        assert settings.forwarded_allow_ips == "*"
    database_url = getattr(settings, "database_url", None)
    if database_url is not None:
        assert "@postgres:5432/" in database_url
        role = name.split("-")[0]
        assert f"videoflix_{role}:secret-of-postgres_password_{role}@" in database_url
