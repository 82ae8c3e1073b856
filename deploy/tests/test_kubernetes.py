"""deploy/k8s, proved without a cluster: both overlays render with `kubectl kustomize`, and
every object they hold validates against the Kubernetes JSON schemas of a pinned version
(kubernetes-validate, strict: an unknown field fails) or, for custom resources, against the
schema their project publishes (KEDA's ScaledObject, Traefik's Middleware and
ServersTransport, from the kubernetes-models npm packages). What could not be checked is
listed at the end of the run (deploy/tests/conftest.py). Also: the generated files are
current, the overlays deploy where the Ingress annotations point, scaling and storage are
what docs/KUBERNETES.md says."""

from __future__ import annotations

import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from deploy import kube
from deploy.tests.k8s_manifests import (
    CRD_KINDS,
    K8S,
    K8S_VERSION,
    OVERLAYS,
    kubectl,
    kustomization,
    manifests,
    raw,
    render,
    report,
    validate_crds,
)
from gateway.generate import K8S_NAMESPACE

ROOT = Path(__file__).resolve().parents[2]
METRICS_CONTRACT_QUERY = (
    "sum(videoflix_transcode_queue_depth) + sum(videoflix_transcode_jobs_running)"
)


def not_checked(what: str) -> None:
    warnings.warn(f"NOT CHECKED: {what}", pytest.PytestWarning, stacklevel=2)


def schema_errors(document: dict[str, Any]) -> str | None:
    try:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{error.message} at {'/'.join(map(str, error.path))}"
    except kubernetes_validate.SchemaNotFoundError as error:
        return error.message
    return None


# --- rendering and schemas ----------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_with_kubectl_kustomize(overlay: str) -> None:
    if not kubectl():
        report(
            "render",
            "rendering NOT CHECKED: kubectl is missing; the files were validated as they are",
        )
        not_checked(f"kubectl kustomize deploy/k8s/overlays/{overlay} (kubectl is missing)")
        pytest.skip("kubectl is missing")
    documents = render(overlay)
    assert documents
    report(f"render-{overlay}", f"kubectl kustomize overlays/{overlay}: {len(documents)} objects")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_pinned_kubernetes_schemas(overlay: str) -> None:
    built = manifests(overlay)
    core = [d for d in built.documents if d["kind"] not in CRD_KINDS]
    errors = {f"{d['kind']}/{d['metadata']['name']}": schema_errors(d) for d in core}
    assert not {k: v for k, v in errors.items() if v}, errors
    kinds = Counter(d["kind"] for d in core)
    how = "rendered" if built.rendered else "the files as they are, not rendered"
    report(
        f"schemas-{overlay}",
        f"overlays/{overlay} ({how}): {len(core)} objects valid against Kubernetes "
        f"{K8S_VERSION} schemas, strict (kubernetes-validate {kubernetes_validate.__version__}): "
        + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())),
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_custom_resource_validates_against_its_published_schema(overlay: str) -> None:
    custom = [d for d in manifests(overlay).documents if d["kind"] in CRD_KINDS]
    results = validate_crds(custom)
    if results is None:
        names = ", ".join(sorted({d["kind"] for d in custom}))
        report(f"crds-{overlay}", f"overlays/{overlay}: {names} NOT VALIDATED (run make install)")
        not_checked(f"{names} of overlays/{overlay}: deploy/tests/crd-schemas is not installed")
        pytest.skip("the CRD schema packages are not installed (make install)")
    assert all(r["schema"] for r in results), [r for r in results if not r["schema"]]
    assert not [r for r in results if r["error"]], [r for r in results if r["error"]]
    kinds = Counter(r["kind"] for r in results)
    report(
        f"crds-{overlay}",
        f"overlays/{overlay}: {', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))} valid "
        "against the published CRD schemas (@kubernetes-models/keda 2.0.0, "
        "@kubernetes-models/traefik 2.0.0: types, required fields, enums; those schemas "
        "accept unknown fields, which the API server prunes: not checked)",
    )


def test_the_schema_checks_reject_what_a_cluster_would() -> None:
    deployment = dict(manifests("dev").get("Deployment", "auth"))
    misspelt = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    assert schema_errors(deployment) is None
    assert "replica" in (schema_errors(misspelt) or "")
    scaled = manifests("production").get("ScaledObject", "transcoder-worker")
    wrong = {**scaled, "spec": {**scaled["spec"], "minReplicaCount": "zero"}}
    results = validate_crds([scaled, wrong])
    if results is None:
        pytest.skip("the CRD schema packages are not installed (make install)")
    assert [r["error"] is None for r in results] == [True, False]


def test_the_files_as_they_are_hold_what_the_rendering_holds() -> None:
    """The fallback without kubectl reads the same objects (only patches and the
    namespace are kustomize's)."""
    if not kubectl():
        pytest.skip("kubectl is missing: nothing to compare the files with")
    for overlay in OVERLAYS:
        rendered = Counter((d["kind"], d["metadata"]["name"]) for d in render(overlay))
        files = Counter((d["kind"], d["metadata"]["name"]) for d in raw(overlay))
        unhash = {
            (k, re.sub(r"-[a-z0-9]{10}$", "", n) if k == "ConfigMap" else n) for k, n in rendered
        }
        assert unhash == set(files), overlay


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_deploys_into_the_namespace_the_ingress_annotations_name(overlay: str) -> None:
    assert kustomization(K8S / "overlays" / overlay)["namespace"] == K8S_NAMESPACE
    if not manifests(overlay).rendered:
        pytest.skip("kubectl is missing: the namespace transformer did not run")
    for document in render(overlay):
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == K8S_NAMESPACE, document["metadata"]
            labels = document["metadata"].get("labels", {})
            assert labels.get("app.kubernetes.io/part-of") == "videoflix", document["metadata"]
    assert set(manifests(overlay).all("Namespace")) == {K8S_NAMESPACE}


@pytest.mark.parametrize("path", sorted(kube.generated_files()), ids=lambda p: p.name)
def test_generated_files_are_current(path: Path) -> None:
    assert path.read_text() == kube.generated_files()[path](), "run `make k8s`"


def test_kustomizations_list_every_manifest_file() -> None:
    """No file lies around unused: what is in a directory is in its kustomization."""
    for directory in [K8S / "base", *(K8S / "overlays" / o for o in OVERLAYS)]:
        listed = {p for p in kustomization(directory)["resources"] if (directory / p).is_file()}
        present = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
        assert present == listed, directory


# --- scaling ------------------------------------------------------------------------------


def test_http_services_scale_on_cpu_in_production_only() -> None:
    production = manifests("production").all("HorizontalPodAutoscaler")
    assert set(production) == {"auth", "catalog", "streaming"}
    for name, hpa in production.items():
        spec = hpa["spec"]
        assert spec["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        (metric,) = spec["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert spec["minReplicas"] >= 2
        container = manifests("production").get("Deployment", name)["spec"]["template"]["spec"][
            "containers"
        ][0]
        assert container["resources"]["requests"]["cpu"], "CPU utilisation needs a request"
        assert "replicas" not in manifests("production").get("Deployment", name)["spec"]
    assert not manifests("dev").all("HorizontalPodAutoscaler")


def test_transcoder_workers_scale_on_the_agreed_queue_query_from_zero() -> None:
    scaled = manifests("production").get("ScaledObject", "transcoder-worker")["spec"]
    assert scaled["scaleTargetRef"] == {"name": "transcoder-worker"}
    assert scaled["minReplicaCount"] == 0
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["query"] == METRICS_CONTRACT_QUERY
    # one worker per job: each runs TRANSCODER_MAX_JOBS of them
    config = manifests("production").get("ConfigMap", "transcoder-worker-config")["data"]
    assert trigger["metadata"]["threshold"] == config["TRANSCODER_MAX_JOBS"] == "1"
    assert trigger["metadata"]["activationThreshold"] == "0"
    # no answer from Prometheus is not "no work": keep a worker rather than none
    assert trigger["metadata"]["ignoreNullValues"] == "false"
    assert scaled["fallback"]["replicas"] >= 1
    assert "replicas" not in manifests("production").get("Deployment", "transcoder-worker")["spec"]
    assert not manifests("dev").all("ScaledObject")


def test_one_dispatcher_so_the_queue_metric_is_counted_once() -> None:
    for overlay in OVERLAYS:
        spec = manifests(overlay).get("Deployment", "transcoder-dispatcher")["spec"]
        assert spec["replicas"] == 1
        assert spec["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_a_stopping_worker_has_time_to_finish_a_chunk_and_hand_back() -> None:
    for overlay in OVERLAYS:
        pod = manifests(overlay).get("Deployment", "transcoder-worker")["spec"]["template"]["spec"]
        config = manifests(overlay).get("ConfigMap", "transcoder-worker-config")["data"]
        grace = float(config["TRANSCODER_SHUTDOWN_GRACE_SECONDS"])
        assert grace >= 2 * 104, "twice the 60 s 1080p ladder's 104 s on 2 cores (a chunk: less)"
        assert pod["terminationGracePeriodSeconds"] >= grace + 20, "room for the hand-back"
        (container,) = pod["containers"]
        cpu = container["resources"]["limits"]["cpu"]
        assert config["TRANSCODER_FFMPEG_THREADS"] == cpu, "x264's threads follow the CPU limit"


def test_every_process_has_a_disruption_budget() -> None:
    for overlay in OVERLAYS:
        budgets = manifests(overlay).all("PodDisruptionBudget")
        for name in kube.PROCESSES:
            assert budgets[name]["spec"]["selector"]["matchLabels"] == {
                "app.kubernetes.io/name": name
            }
            assert budgets[name]["spec"]["maxUnavailable"] == 1


# --- storage ------------------------------------------------------------------------------


def test_media_is_read_write_many_except_on_the_single_node_dev_cluster() -> None:
    assert manifests("production").get("PersistentVolumeClaim", "media")["spec"]["accessModes"] == [
        "ReadWriteMany"
    ]
    if manifests("dev").rendered:
        assert manifests("dev").get("PersistentVolumeClaim", "media")["spec"]["accessModes"] == [
            "ReadWriteOnce"
        ]
    text = (K8S / "base" / "media.yaml").read_text()
    for storage in ("NFS", "CephFS", "EFS", "Filestore", "ReadWriteOnce"):
        assert storage in text, f"media.yaml should name {storage}"


def test_the_mail_sink_runs_only_in_dev() -> None:
    assert "mailpit" in manifests("dev").all("Deployment")
    assert "mailpit" not in manifests("production").all("Deployment")
    assert not set(manifests("production").all("StatefulSet")), "production's servers are outside"
