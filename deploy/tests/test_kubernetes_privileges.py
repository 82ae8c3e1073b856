"""Least privilege in deploy/k8s: every pod runs unprivileged (numeric non-root uid, no
privilege escalation, no capabilities, read-only root file system, no service-account
token, its own ServiceAccount without API rights); each process reads only its own Secret,
holding exactly its credentials (the per-process users of deploy/privileges.py), and no
ConfigMap holds one; the NetworkPolicies let only the ingress controller reach the HTTP
services, only the monitoring namespace the health ports, and, in the dev overlay, only
the processes of videoflix_shared.access that use them reach PostgreSQL, Redis and NATS."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import urlsplit

import pytest

from deploy import kube, privileges
from deploy.tests.k8s_manifests import OVERLAYS, WORKLOAD_KINDS, Manifests, manifests
from videoflix_shared.access import BY_NAME, PRINCIPALS

IMAGE_USER = 10001  # deploy/docker/Dockerfile's videoflix user
MIGRATIONS = {"auth-migrate": "auth", "catalog-migrate": "catalog"}
# Traefik's pods where its Helm chart usually runs them, or k3s does
INGRESS_CONTROLLER = {("namespace", "traefik"), ("namespace", "kube-system")}
MONITORING = ("namespace", "monitoring")


def pods(overlay: str) -> dict[str, dict[str, Any]]:
    return manifests(overlay).workloads()


def all_pods() -> list[tuple[str, str]]:
    return [(o, name) for o in OVERLAYS for name in pods(o)]


# --- pods ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("overlay", "name"), all_pods())
def test_every_pod_runs_unprivileged_with_a_read_only_root(overlay: str, name: str) -> None:
    spec = pods(overlay)[name]
    context = spec["securityContext"]
    assert context["runAsNonRoot"] is True
    assert isinstance(context["runAsUser"], int)
    assert context["runAsUser"] > 0
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    for container in spec["containers"]:
        own = container["securityContext"]
        assert own["allowPrivilegeEscalation"] is False
        assert own["readOnlyRootFilesystem"] is True
        assert own["capabilities"] == {"drop": ["ALL"]}
        assert "runAsUser" not in own, "the pod's uid holds for every container"
        assert container["resources"]["requests"]
        assert container["resources"]["limits"]["memory"]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", [*kube.PROCESSES, *MIGRATIONS])
def test_videoflix_pods_run_as_the_images_user_with_a_writable_tmp(overlay: str, name: str) -> None:
    spec = pods(overlay)[name]
    assert spec["securityContext"]["runAsUser"] == IMAGE_USER
    assert spec["securityContext"]["runAsGroup"] == IMAGE_USER
    volumes = {v["name"]: v for v in spec["volumes"]}
    (container,) = spec["containers"]
    tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1
    assert "emptyDir" in volumes[tmp[0]["name"]]


@pytest.mark.parametrize(("overlay", "name"), all_pods())
def test_every_pod_has_its_own_service_account_without_api_access(overlay: str, name: str) -> None:
    built = manifests(overlay)
    account = pods(overlay)[name]["serviceAccountName"]
    assert account == MIGRATIONS.get(name, name), "a migration runs as its service"
    assert built.get("ServiceAccount", account)["automountServiceAccountToken"] is False
    for kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"):
        assert not built.all(kind), f"no {kind}: no process talks to the Kubernetes API"


# --- Secrets ------------------------------------------------------------------------------


def secret_references(built: Manifests, name: str) -> dict[str, dict[str, bool]]:
    """Secret -> key -> optional, for everything a pod takes from Secrets."""
    spec = built.workloads()[name]
    refs: dict[str, dict[str, bool]] = {}
    for container in spec["containers"]:
        for source in container.get("envFrom", []):
            assert "secretRef" not in source, "whole Secrets hide which keys a process reads"
        for value in built.environment(container).values():
            if isinstance(value, tuple):
                refs.setdefault(value[1], {})[value[2]] = value[3]
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            refs.setdefault(volume["secret"]["secretName"], {})["<volume>"] = False
    return refs


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", kube.PROCESSES)
def test_each_process_reads_only_its_own_secret_and_all_of_its_keys(
    overlay: str, name: str
) -> None:
    refs = secret_references(manifests(overlay), name)
    own = kube.secret_name(name)
    allowed = {own} | ({kube.SIGNING_KEYS_SECRET} if name == "auth" else set())
    assert set(refs) == allowed
    expected = {key: not required for key, required in kube.secret_keys(name).items()}
    assert refs[own] == expected


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize(("job", "service"), MIGRATIONS.items())
def test_migrations_read_only_their_databases_address(overlay: str, job: str, service: str) -> None:
    refs = secret_references(manifests(overlay), job)
    assert refs == {kube.secret_name(service): {f"{service.upper()}_DATABASE_URL": False}}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_config_map_holds_a_secret(overlay: str) -> None:
    secret_keys = {k for p in kube.PROCESSES for k in kube.secret_keys(p)}
    secret_keys |= set(privileges.compose_secrets()) | {"POSTGRES_PASSWORD", "PGPASSWORD"}
    for name, config_map in manifests(overlay).all("ConfigMap").items():
        assert not set(config_map.get("data", {})) & secret_keys, name
        text = " ".join(config_map.get("data", {}).values())
        assert "://" not in text.replace("http://", "").replace("https://", ""), name
    assert not manifests(overlay).all("Secret"), "Secrets are made outside git"


def test_dev_secrets_hold_each_processs_own_users_and_nobody_elses() -> None:
    """As deploy/privileges.py's per-process users: the Redis ACL user, NATS user and
    database role of the process itself, passwords no other process's Secret holds (but
    MAIL_TOKEN_KEY, shared by auth and the mailer, videoflix_shared.access)."""
    values = kube.dev_secret_values()
    passwords: dict[str, set[str]] = {}
    for name in kube.PROCESSES:
        secret = values[kube.secret_name(name)]
        principal = BY_NAME[name]
        if principal.uses_redis:
            url = urlsplit(secret["REDIS_URL"])
            assert url.username == privileges.redis_username(
                principal, privileges.COMPOSE_KEY_PREFIX
            )
            passwords.setdefault(name, set()).add(url.password or "")
        if principal.database:
            url = urlsplit(secret[f"{principal.database.upper()}_DATABASE_URL"])
            assert url.username == f"videoflix_{principal.database}"
            passwords.setdefault(name, set()).add(url.password or "")
        if principal.uses_nats:
            config = manifests("dev").get("ConfigMap", f"{name}-config")["data"]
            assert config["NATS_USER"] == name
            passwords.setdefault(name, set()).add(secret["NATS_PASSWORD"])
    for a, b in itertools.combinations(passwords, 2):
        assert not passwords[a] & passwords[b], f"{a} and {b} share a password"
    holders = [n for n in kube.PROCESSES if "MAIL_TOKEN_KEY" in values[kube.secret_name(n)]]
    assert holders == [p.name for p in PRINCIPALS if "MAIL_TOKEN_KEY" in p.secrets]


def test_dev_servers_know_exactly_the_users_the_processes_log_in_as() -> None:
    values = kube.dev_secret_values()
    for name in kube.PROCESSES:
        secret, principal = values[kube.secret_name(name)], BY_NAME[name]
        if principal.uses_redis:
            key = privileges.compose_secret("REDIS", name)
            assert urlsplit(secret["REDIS_URL"]).password == values["redis-credentials"][key]
        if principal.uses_nats:
            key = privileges.compose_secret("NATS", name)
            assert secret["NATS_PASSWORD"] == values["nats-credentials"][key]
        if principal.database:
            key = privileges.compose_secret("POSTGRES", principal.database)
            url = secret[f"{principal.database.upper()}_DATABASE_URL"]
            assert urlsplit(url).password == values["postgres-roles-credentials"][key]


# --- NetworkPolicies ----------------------------------------------------------------------


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def pod_labels(built: Manifests) -> dict[str, dict[str, str]]:
    return {
        name: document["spec"]["template"]["metadata"]["labels"]
        for kind in WORKLOAD_KINDS
        for name, document in built.all(kind).items()
    }


def namespace_names(peer: dict[str, Any]) -> list[str]:
    """The namespaces a peer's namespaceSelector names (by kubernetes.io/metadata.name)."""
    selector = peer["namespaceSelector"]
    names = (
        [selector["matchLabels"]["kubernetes.io/metadata.name"]]
        if "matchLabels" in selector
        else []
    )
    for expression in selector.get("matchExpressions", []):
        assert (expression["key"], expression["operator"]) == ("kubernetes.io/metadata.name", "In")
        names += expression["values"]
    return names


def allowed_sources(built: Manifests, target: str) -> set[tuple[str, str]]:
    """Who may connect to the pods of `target`: ("pod", name) in the namespace or
    ("namespace", name) for a whole other namespace (its selected pods)."""
    labels = pod_labels(built)[target]
    sources: set[tuple[str, str]] = set()
    policies = [p["spec"] for p in built.all("NetworkPolicy").values()]
    selecting = [p for p in policies if selects(p["podSelector"], labels)]
    assert any(p["podSelector"] == {} and not p.get("ingress") for p in selecting), (
        "no default deny"
    )
    for policy in selecting:
        assert policy["policyTypes"] == ["Ingress"]
        for rule in policy.get("ingress", []):
            for peer in rule["from"]:
                if "namespaceSelector" in peer:
                    sources |= {("namespace", n) for n in namespace_names(peer)}
                else:
                    sources |= {
                        ("pod", name)
                        for name, other in pod_labels(built).items()
                        if selects(peer["podSelector"], other)
                    }
    return sources


def expected_sources(target: str) -> set[tuple[str, str]]:
    http = INGRESS_CONTROLLER | {MONITORING}
    expected = {
        "auth": http | {("pod", "catalog"), ("pod", "streaming")},  # JWKS: who verifies tokens
        "catalog": http,
        "streaming": http,
        "transcoder-dispatcher": {MONITORING, ("pod", "catalog")},  # /jobs: the admin panel
        "transcoder-worker": {MONITORING},
        "mailer": {MONITORING},
        "mailpit": {("pod", "mailer")},
        "postgres": {("pod", p.name) for p in PRINCIPALS if p.database}
        | {("pod", job) for job in MIGRATIONS}
        | {("pod", "postgres-roles")},
        "redis": {("pod", p.name) for p in PRINCIPALS if p.uses_redis},
        "nats": {("pod", p.name) for p in PRINCIPALS if p.uses_nats},
    }
    return expected.get(target, set())  # one-shots: nobody


@pytest.mark.parametrize(("overlay", "name"), all_pods())
def test_only_those_who_need_a_pod_may_reach_it(overlay: str, name: str) -> None:
    assert allowed_sources(manifests(overlay), name) == expected_sources(name)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ingress_controller_and_monitoring_reach_only_the_http_port(overlay: str) -> None:
    for policy in manifests(overlay).all("NetworkPolicy").values():
        for rule in policy["spec"].get("ingress", []):
            namespaces = [p for p in rule["from"] if "namespaceSelector" in p]
            if namespaces:
                assert rule["ports"] == [{"port": "http"}]
            for peer in namespaces:
                if "traefik" in namespace_names(peer):  # its pods, not all of kube-system
                    assert peer["podSelector"] == {
                        "matchLabels": {"app.kubernetes.io/name": "traefik"}
                    }
