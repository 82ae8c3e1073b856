"""The cluster runs what compose runs: per process the same image, command, port, variable
names and values (but for the cluster's own, deploy/kube.py's K8S_SETTINGS and production's
site.env), the dev overlay's servers too; the probes ask the endpoints each process really
serves (its app's routes, and a real process started here answering them); every
resulting configuration is valid for its service's settings class."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dotenv import dotenv_values

from deploy import kube
from deploy.tests.k8s_manifests import OVERLAYS, Manifests, manifests
from deploy.tests.test_compose import settings_class
from gateway.generate import load_routes
from videoflix_shared.processes import stop_process
from videoflix_testing.cleanup import delete_nats_streams, delete_redis_keys
from videoflix_testing.clients import asgi_client
from videoflix_testing.plugin import NATS_URL, REDIS_URL, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
SERVICES = kube.compose_services()
HTTP_SERVICES = ("auth", "catalog", "streaming")
MIGRATIONS = {"auth-migrate": "auth", "catalog-migrate": "catalog"}
DEV_SERVERS = {"postgres": "StatefulSet", "redis": "StatefulSet", "nats": "StatefulSet"}
DEV_SERVERS |= {"mailpit": "Deployment", "postgres-roles": "Job"}
SITE = dotenv_values(ROOT / "deploy" / "k8s" / "overlays" / "production" / "site.env")


def pod(built: Manifests, name: str, kind: str = "Deployment") -> dict[str, Any]:
    spec: dict[str, Any] = built.get(kind, name)["spec"]["template"]["spec"]
    return spec


def container(built: Manifests, name: str, kind: str = "Deployment") -> dict[str, Any]:
    (only,) = pod(built, name, kind)["containers"]
    return only


def workload_kind(name: str) -> str:
    return (
        "Job"
        if name in MIGRATIONS or name == "postgres-roles"
        else DEV_SERVERS.get(name, "Deployment")
    )


DEV_SECRETS = kube.dev_secret_values()  # what `python -m deploy.kube dev-secrets` fills in


def with_secrets(env: dict[str, Any]) -> dict[str, str]:
    """The environment a container sees with the dev Secrets (an optional key they leave
    out is unset, as in the cluster)."""
    out = {}
    for key, value in env.items():
        if not isinstance(value, tuple):
            out[key] = value
        elif value[2] in DEV_SECRETS[value[1]]:
            out[key] = DEV_SECRETS[value[1]][value[2]]
        else:
            assert value[3], f"{key}: the dev Secret lacks the required {value[1]}/{value[2]}"
    return out


# --- images, commands, ports --------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", [*kube.PROCESSES, *MIGRATIONS])
def test_each_process_runs_composes_image_and_command(overlay: str, name: str) -> None:
    k8s = container(manifests(overlay), name, workload_kind(name))
    assert k8s["image"] == SERVICES[name]["image"]
    # compose's `command` replaces the image's CMD, as `args` does (no ENTRYPOINT in them)
    assert k8s["args"] == SERVICES[name]["command"]
    assert "command" not in k8s


@pytest.mark.parametrize("name", sorted(DEV_SERVERS))
def test_dev_servers_run_composes_images_and_commands(name: str) -> None:
    k8s = container(manifests("dev"), name, DEV_SERVERS[name])
    compose = SERVICES[name]
    assert k8s["image"] == compose["image"]
    if name == "postgres-roles":  # compose waits with depends_on; the Job waits itself
        assert " ".join(compose["command"]) in " ".join(k8s["args"]).replace("\n", " ")
    else:
        assert k8s.get("command") == compose.get("entrypoint")
        assert k8s.get("args") == compose.get("command")
    env = manifests("dev").environment(k8s)
    assert set(env) - {"PGDATA"} == set(compose.get("environment") or {})
    # every one of their settings is a password: from the server's own Secret
    assert {v[1] for k, v in env.items() if k != "PGDATA"} <= {kube.secret_name(name)}


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", kube.PROCESSES)
def test_each_process_listens_on_composes_port_named_http(overlay: str, name: str) -> None:
    built = manifests(overlay)
    k8s = container(built, name)
    env = with_secrets(built.environment(k8s))
    port = int(SERVICES[name]["environment"]["HTTP_PORT"])
    assert k8s["ports"] == [{"name": "http", "containerPort": port}]
    assert env["HTTP_PORT"] == str(port)
    assert env["HTTP_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", HTTP_SERVICES)
def test_routed_services_reach_the_port_compose_exposes(overlay: str, name: str) -> None:
    service = manifests(overlay).get("Service", name)["spec"]
    host, port = load_routes().services[name]["container"].split(":")
    assert host == name
    assert port in [str(p) for p in SERVICES[name]["expose"]]
    assert service["ports"] == [{"name": "http", "port": int(port), "targetPort": "http"}]
    assert service["selector"] == {"app.kubernetes.io/name": name}
    labels = manifests(overlay).get("Deployment", name)["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == name


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", [*kube.PROCESSES, *MIGRATIONS])
def test_each_process_gets_composes_variables_and_no_other(overlay: str, name: str) -> None:
    built = manifests(overlay)
    env = built.environment(container(built, name, workload_kind(name)))
    assert set(env) == set(SERVICES[name]["environment"])


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", kube.PROCESSES)
def test_each_setting_has_composes_value_but_where_the_cluster_says_why(
    overlay: str, name: str
) -> None:
    built = manifests(overlay)
    env = built.environment(container(built, name))
    dotenv = dotenv_values(ROOT / ".env.example")
    expected = {
        key: kube.interpolate(value, dotenv, lambda secret: secret)
        for key, value in SERVICES[name]["environment"].items()
        if not isinstance(env[key], tuple)
    }
    expected |= kube.K8S_SETTINGS.get(name, {})
    if overlay == "production":
        expected |= {k: v for k, v in SITE.items() if v is not None}
    assert {k: v for k, v in env.items() if not isinstance(v, tuple)} == expected


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", [*kube.PROCESSES, *MIGRATIONS])
def test_each_containers_configuration_is_valid_for_its_service(overlay: str, name: str) -> None:
    built = manifests(overlay)
    env = with_secrets(built.environment(container(built, name, workload_kind(name))))
    target = SERVICES[name]["build"]["target"]
    settings = settings_class(target)(**env)
    if name in MIGRATIONS:
        return
    assert (settings.http_host, settings.http_port) == ("0.0.0.0", 8000)
    assert settings.media_root == Path("/media")
    assert settings.is_production == (overlay == "production")
    if overlay == "production":
        assert settings.cookie_secure


# --- probes -------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", kube.PROCESSES)
def test_probes_ask_the_health_endpoints_on_the_http_port(overlay: str, name: str) -> None:
    k8s = container(manifests(overlay), name)
    assert k8s["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert k8s["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # what compose's healthcheck asks (videoflix-healthcheck /readyz)
    assert SERVICES[name]["healthcheck"]["test"] == ["CMD", "videoflix-healthcheck", "/readyz"]
    assert k8s["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def probe_paths(name: str) -> list[str]:
    k8s = container(manifests("production"), name)
    return [k8s[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe", "readinessProbe")]


@pytest.mark.parametrize("name", HTTP_SERVICES)
async def test_each_http_services_app_answers_its_probe_paths(name: str) -> None:
    """The service's own app, built from the cluster's configuration (no lifespan: the
    readiness checks it would register are its servers, not reachable here)."""
    built = manifests("dev")
    env = with_secrets(built.environment(container(built, name)))
    settings = settings_class(name)(**env)
    app = importlib.import_module(f"videoflix_{name}.app").create_app(settings)
    async with asgi_client(app) as client:
        for path in probe_paths(name):
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text)


@pytest.fixture
def dispatcher_process(common_env: dict[str, str], tmp_path: Path) -> Iterator[int]:
    """The real `videoflix-transcoder dispatcher` with the cluster's configuration, on this
    run's servers (their addresses replace the Secret's) under names of its own, so it
    consumes nothing another test publishes."""
    built = manifests("dev")
    k8s = container(built, "transcoder-dispatcher")
    config = {k: v for k, v in built.environment(k8s).items() if not isinstance(v, tuple)}
    port, own = free_port(), uuid.uuid4().hex[:8]
    names = {"NATS_SUBJECT_PREFIX": f"vftk8s{own}.", "NATS_STREAM_PREFIX": f"VFTK8S{own}_"}
    env = {
        **os.environ,
        **config,
        **common_env,
        **names,
        "REDIS_KEY_PREFIX": f"vftk8s:{own}:",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        "MEDIA_ROOT": str(tmp_path),
    }
    binary = Path(sys.executable).parent / k8s["args"][0]
    process = subprocess.Popen(
        [str(binary), *k8s["args"][1:]],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield port
    stop_process(process)
    delete_redis_keys(REDIS_URL, env["REDIS_KEY_PREFIX"])
    delete_nats_streams(NATS_URL, names)


def test_a_real_worker_process_answers_its_probe_paths(dispatcher_process: int) -> None:
    base = f"http://127.0.0.1:{dispatcher_process}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=30, what="dispatcher ready (NATS and Redis)")
    for path in probe_paths("transcoder-dispatcher"):
        assert httpx.get(f"{base}{path}", timeout=5).status_code == 200, path
    # every worker process serves its health port with the same shared app
    assert probe_paths("transcoder-dispatcher") == probe_paths("transcoder-worker")
    assert probe_paths("transcoder-dispatcher") == probe_paths("mailer")


# --- volumes ------------------------------------------------------------------------------


def compose_mounts(name: str) -> dict[str, str]:
    out = {}
    for spec in SERVICES[name].get("volumes", []):
        source, target, *mode = spec.split(":")
        out[target] = ":".join([source, *mode])
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", kube.PROCESSES)
def test_media_is_mounted_where_and_how_compose_mounts_it(overlay: str, name: str) -> None:
    spec = pod(manifests(overlay), name)
    claims = {
        v["name"]: v["persistentVolumeClaim"]
        for v in spec["volumes"]
        if "persistentVolumeClaim" in v
    }
    mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    compose = compose_mounts(name).get("/media")
    if compose is None:
        assert "/media" not in mounts
        return
    mount = mounts["/media"]
    assert claims[mount["name"]]["claimName"] == "media"
    read_only = compose.endswith(":ro")
    assert mount.get("readOnly", False) == read_only
    assert claims[mount["name"]].get("readOnly", False) == read_only


def test_auth_reads_its_signing_keys_where_compose_keeps_them() -> None:
    for overlay in OVERLAYS:
        built = manifests(overlay)
        keys_dir = with_secrets(built.environment(container(built, "auth")))["AUTH_KEYS_DIR"]
        assert keys_dir in compose_mounts("auth")
        mounts = {m["mountPath"]: m for m in container(built, "auth")["volumeMounts"]}
        volumes = {v["name"]: v for v in pod(built, "auth")["volumes"]}
        assert mounts[keys_dir]["readOnly"] is True
        assert volumes[mounts[keys_dir]["name"]]["secret"]["secretName"] == kube.SIGNING_KEYS_SECRET
