"""deploy/k8s as the tests read it: each overlay rendered by `kubectl kustomize`, or, where
kubectl is missing, the files as they are (no patches applied, ConfigMaps made from the
generators' env files), plus the report of what was validated and what was not, which
deploy/tests/conftest.py prints at the end of the run."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "production")
K8S_VERSION = "1.32.0"  # the Kubernetes API the manifests are validated against (pinned)
CRD_KINDS = {"ScaledObject", "Middleware", "ServersTransport"}
CRD_VALIDATOR = ROOT / "deploy" / "tests" / "crd-schemas"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
GENERATOR_SUFFIX = re.compile(r"-[a-z0-9]{10}$")  # kustomize's content hash on a ConfigMap

# Lines for the end of the test run (deploy/tests/conftest.py prints them): what was
# validated against what, and what was not.
REPORT: dict[str, str] = {}


def report(topic: str, line: str) -> None:
    REPORT[topic] = line


def kubectl() -> str | None:
    return shutil.which("kubectl")


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize deploy/k8s/overlays/<overlay>`: what `kubectl apply -k` applies."""
    binary = kubectl()
    assert binary, "kubectl is missing"
    result = subprocess.run(
        [binary, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


def kustomization(directory: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return loaded


def resource_files(directory: Path) -> Iterator[Path]:
    """The YAML files a kustomization lists, its bases' first."""
    for entry in kustomization(directory).get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            yield from resource_files(path)
        else:
            yield path


def generated_config_maps(directory: Path) -> Iterator[dict[str, Any]]:
    for entry in kustomization(directory).get("resources", []):
        if (directory / entry).is_dir():
            yield from generated_config_maps((directory / entry).resolve())
    for generator in kustomization(directory).get("configMapGenerator", []):
        data: dict[str, str] = {}
        for env_file in generator.get("envs", []):
            data |= {k: v or "" for k, v in dotenv_values(directory / env_file).items()}
        for spec in generator.get("files", []):
            key, _, source = spec.partition("=")
            data[key] = (directory / (source or key)).read_text()
        yield {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": generator["name"]},
            "data": data,
        }


def raw(overlay: str) -> tuple[dict[str, Any], ...]:
    """The overlay's files as they are, without kustomize: every document of every listed
    file, and the generators' ConfigMaps (a merging generator replaces its base's)."""
    directory = K8S / "overlays" / overlay
    documents = [
        d for path in resource_files(directory) for d in yaml.safe_load_all(path.read_text()) if d
    ]
    maps: dict[str, dict[str, Any]] = {}
    for config_map in generated_config_maps(directory):
        name = config_map["metadata"]["name"]
        if name in maps:
            config_map["data"] = maps[name]["data"] | config_map["data"]
        maps[name] = config_map
    return (*documents, *maps.values())


@dataclass
class Manifests:
    """One overlay's objects, rendered if kubectl is here, else as the files are."""

    overlay: str
    documents: tuple[dict[str, Any], ...]
    rendered: bool
    by_kind: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for document in self.documents:
            kind, name = document["kind"], document["metadata"]["name"]
            assert name not in self.by_kind.setdefault(kind, {}), f"two {kind} {name}"
            self.by_kind[kind][name] = document

    def all(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.by_kind.get(kind, {})

    def get(self, kind: str, name: str) -> dict[str, Any]:
        """An object by name; a generated ConfigMap also by its name without the hash."""
        objects = self.all(kind)
        if name in objects:
            return objects[name]
        unhashed = GENERATOR_SUFFIX.sub("", name)
        matches = [o for n, o in objects.items() if GENERATOR_SUFFIX.sub("", n) == unhashed]
        assert len(matches) == 1, f"no single {kind} {name} in the {self.overlay} overlay"
        return matches[0]

    def workloads(self) -> dict[str, dict[str, Any]]:
        """Name -> pod spec of every Deployment, StatefulSet and Job."""
        return {
            name: document["spec"]["template"]["spec"]
            for kind in WORKLOAD_KINDS
            for name, document in self.all(kind).items()
        }

    def environment(self, container: dict[str, Any]) -> dict[str, Any]:
        """Variable -> value (from a ConfigMap or literal) or ("secret", name, key, optional)."""
        env: dict[str, Any] = {}
        for source in container.get("envFrom", []):
            assert set(source) == {"configMapRef"}, f"envFrom {source}: only ConfigMaps"
            env |= self.get("ConfigMap", source["configMapRef"]["name"])["data"]
        for variable in container.get("env", []):
            assert variable["name"] not in env, f"{variable['name']} set twice"
            if "value" in variable:
                env[variable["name"]] = variable["value"]
                continue
            ref = variable["valueFrom"].get("secretKeyRef")
            assert ref, f"{variable['name']}: only literal values and secretKeyRef"
            env[variable["name"]] = ("secret", ref["name"], ref["key"], ref.get("optional", False))
        return env


@functools.cache
def manifests(overlay: str) -> Manifests:
    if kubectl():
        return Manifests(overlay, render(overlay), rendered=True)
    return Manifests(overlay, raw(overlay), rendered=False)


def validate_crds(documents: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Each custom resource checked by validate.mjs; None when its packages are missing."""
    if not (CRD_VALIDATOR / "node_modules").is_dir() or not shutil.which("node"):
        return None
    result = subprocess.run(
        ["node", str(CRD_VALIDATOR / "validate.mjs")],
        input=json.dumps(documents),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    checked: list[dict[str, Any]] = json.loads(result.stdout)
    return checked
