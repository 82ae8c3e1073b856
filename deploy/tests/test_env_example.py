""".env.example documents every environment variable the code reads, and reads the same in
docker compose as in the native launcher.

What the code reads is collected from the code itself: every pydantic-settings class of
the shared library and of every service (field aliases, or the field name), and every
literal `os.environ[...]` / `os.environ.get(...)` / `os.getenv(...)` in the shipped Python
(services, shared library, launcher, gateway renderer, container helpers). The test
harness's own TEST_* variables are not configuration and are left out, and so is what the
code sets for processes it starts (SET_BY_THE_CODE).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

from dotenv import dotenv_values
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / ".env.example"
PACKAGE_DIRS = [ROOT / "shared" / "src", *sorted((ROOT / "services").glob("*/src"))]
SCRIPT_DIRS = [ROOT / "deploy", ROOT / "deploy" / "docker", ROOT / "gateway"]
NOT_SHIPPED = ("tests", "testing", "migrations")  # test code, the test harness, alembic
# Read back by the processes the code itself starts with them set: not configuration.
# PROMETHEUS_MULTIPROC_DIR: videoflix_shared.metrics, a service's worker processes.
SET_BY_THE_CODE = {"PROMETHEUS_MULTIPROC_DIR"}


def shipped_modules() -> list[Path]:
    files = [f for d in PACKAGE_DIRS for f in d.rglob("*.py")]
    files += [f for d in SCRIPT_DIRS for f in d.glob("*.py")]
    return [f for f in files if not set(f.relative_to(ROOT).parts) & set(NOT_SHIPPED)]


def settings_env_names() -> dict[str, str]:
    """Env var -> where it is declared, for every BaseSettings subclass in the packages."""
    names: dict[str, str] = {}
    for path in shipped_modules():
        if not any(path.is_relative_to(d) for d in PACKAGE_DIRS):
            continue
        source = path.read_text()
        if not re.search(r"^class \w+\(.*Settings.*\):", source, re.MULTILINE):
            continue
        package_root = next(d for d in PACKAGE_DIRS if path.is_relative_to(d))
        module_name = ".".join(path.relative_to(package_root).with_suffix("").parts)
        module = importlib.import_module(module_name)
        for cls in vars(module).values():
            if inspect.isclass(cls) and issubclass(cls, BaseSettings) and cls is not BaseSettings:
                prefix = cls.model_config.get("env_prefix", "")
                for field_name, info in cls.model_fields.items():
                    for env in field_env_names(field_name, info, prefix):
                        names.setdefault(env.upper(), f"{cls.__module__}.{cls.__name__}")
    return names


def field_env_names(field_name, info, prefix: str) -> list[str]:
    alias = info.validation_alias or info.alias
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, AliasChoices):
        return [c for c in alias.choices if isinstance(c, str)]
    return [prefix + field_name]


def environ_reads(path: Path) -> set[str]:
    """Literal names read through os.environ / os.getenv in one file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        key = None
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("os.environ", "environ"):
            key = node.slice
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in (
            "os.environ.get",
            "environ.get",
            "os.getenv",
            "getenv",
            "os.environ.setdefault",
        ):
            key = node.args[0] if node.args else None
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            found.add(key.value)
    return found


def test_every_variable_the_code_reads_is_in_env_example():
    documented = set(dotenv_values(ENV_EXAMPLE))
    settings = settings_env_names()
    assert {"HTTP_PORT", "AUTH_DATABASE_URL", "CATALOG_DATABASE_URL"} <= set(settings)
    missing = {env: where for env, where in settings.items() if env not in documented}
    for path in shipped_modules():
        for env in environ_reads(path) - SET_BY_THE_CODE:
            if env not in documented:
                missing[env] = str(path.relative_to(ROOT))
    assert not missing, f"read by the code but not in .env.example: {missing}"


def test_settings_discovery_sees_every_service():
    declared_in = {where.split(".")[0] for where in settings_env_names().values()}
    services = {f"videoflix_{p.parent.name}" for p in (ROOT / "services").glob("*/src")}
    assert services | {"videoflix_shared"} <= declared_in


def compose_dotenv_value(raw: str) -> str:
    """How docker compose (compose-go's dotenv) reads the value part of `KEY=value`."""
    value = raw.lstrip()
    if value[:1] in ('"', "'"):
        end = value.index(value[0], 1)
        return value[1:end]
    value, _, _ = value.partition(" #")  # an inline comment needs a space before it
    return value.rstrip()


def test_env_example_reads_the_same_in_compose_and_in_the_launcher():
    python_values = dotenv_values(ENV_EXAMPLE)
    differences = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, raw = line.partition("=")
        key = key.strip()
        if compose_dotenv_value(raw) != python_values[key]:
            differences[key] = (compose_dotenv_value(raw), python_values[key])
    assert not differences, (
        "compose would read these differently from python-dotenv (compose, python); write an"
        f' empty value that a comment follows as "": {differences}'
    )
