"""Every package of the workspace declares what it imports, and runs on that alone.

One uv environment holds every package, so a service importing something only another
package declares (through videoflix-shared, most often) works here and breaks wherever the
service is installed alone. `make test` runs this check, per workspace member and for the
root project (deploy/, gateway/):

1. Declarations (static, over the sources): every third-party module imported is provided by
   a distribution the package declares itself, and every declared distribution is imported
   somewhere, unless the package's `[tool.videoflix.package-check] used-without-import`
   lists it (with a comment saying why).
2. Installation (dynamic): `uv sync --frozen --package <name> --no-dev` into a throwaway
   environment of its own (`.data/pkgcheck/<name>`), then every module is imported there.

    uv run --frozen --all-packages python -m deploy.package_check [names...]

Stdlib only: the same file imports the modules inside each throwaway environment
(`--import-every-module`).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.metadata
import json
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
import traceback
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = ROOT / ".data" / "pkgcheck"
# Modules that act when imported: __main__ runs the program, Alembic's env.py a migration.
NOT_IMPORTABLE = re.compile(r"(^|\.)(__main__|migrations\.env)$")


@dataclass(frozen=True)
class Package:
    name: str  # distribution name, e.g. videoflix-catalog
    directory: Path  # where its pyproject.toml is
    sources: tuple[Path, ...]  # import roots: src/ of a member, the root for the project
    modules: tuple[str, ...]  # its own top-level modules
    declared: frozenset[str]  # normalised names of [project] dependencies and extras
    used_without_import: frozenset[str]
    is_root: bool = False

    @property
    def pyproject(self) -> str:
        return str((self.directory / "pyproject.toml").relative_to(ROOT))


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"unparsable requirement {requirement!r}"
    return normalise(match[1])


def load_package(directory: Path, *, is_root: bool = False) -> Package:
    data = tomllib.loads((directory / "pyproject.toml").read_text())
    project = data["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    check = data.get("tool", {}).get("videoflix", {}).get("package-check", {})
    if is_root:  # a virtual project: its code is deploy/ and gateway/
        sources: tuple[Path, ...] = (directory,)
        modules: tuple[str, ...] = ("deploy", "gateway")
    else:
        wheel = data["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
        sources = tuple(sorted({(directory / p).parent for p in wheel}))
        modules = tuple(Path(p).name for p in wheel)
    return Package(
        name=normalise(project["name"]),
        directory=directory,
        sources=sources,
        modules=modules,
        declared=frozenset(map(requirement_name, requirements)),
        used_without_import=frozenset(map(normalise, check.get("used-without-import", []))),
        is_root=is_root,
    )


def workspace() -> list[Package]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members = [
        directory
        for pattern in data["tool"]["uv"]["workspace"]["members"]
        for directory in sorted(ROOT.glob(pattern))
        if (directory / "pyproject.toml").is_file()
    ]
    return [load_package(ROOT, is_root=True), *map(load_package, members)]


def module_files(package: Package) -> dict[str, Path]:
    """Dotted module name -> file, for the package's runtime code (tests excluded)."""
    found = {}
    for source in package.sources:
        for top in package.modules:
            for path in sorted((source / top).rglob("*.py")):
                relative = path.relative_to(source)
                if "tests" in relative.parts:
                    continue
                parts = relative.with_suffix("").parts
                found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_top_levels(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"__future__"}


def providers(packages: list[Package]) -> dict[str, set[str]]:
    """Top-level module -> normalised names of the distributions that provide it."""
    provided: dict[str, set[str]] = defaultdict(set)
    for module, distributions in importlib.metadata.packages_distributions().items():
        provided[module].update(map(normalise, distributions))
    for package in packages:  # editable installs do not list their modules
        for module in package.modules:
            provided[module].add(package.name)
    return provided


def declaration_problems(package: Package, provided: dict[str, set[str]]) -> list[str]:
    problems = []
    importers: dict[str, list[str]] = defaultdict(list)
    for name, path in module_files(package).items():
        for top in imported_top_levels(path):
            importers[top].append(name)
    for top, names in sorted(importers.items()):
        distributions = provided.get(top, set())
        if top in package.modules or distributions & package.declared:
            continue
        wanted = " or ".join(f'"{d}"' for d in sorted(distributions)) or "(nothing installed)"
        problems.append(
            f"{package.name}: {names[0]} imports {top}, which it does not declare: "
            f"add {wanted} to [project] dependencies in {package.pyproject}"
        )
    imported = {d for top in importers for d in provided.get(top, set())}
    for unused in sorted(package.declared - imported - package.used_without_import):
        problems.append(
            f"{package.name}: declares {unused} but no module imports it: remove it from "
            f"{package.pyproject}, or list it under [tool.videoflix.package-check] "
            "used-without-import with a comment saying why"
        )
    return problems


def sync_alone(package: Package, uv: list[str]) -> tuple[Path, str]:
    """The package and only what it declares, in an environment of its own."""
    environment = ENVIRONMENTS / package.name
    selection = [] if package.is_root else ["--package", package.name]
    result = subprocess.run(
        [*uv, "sync", "--frozen", "--no-dev", "--all-extras", "--quiet", *selection],
        cwd=ROOT,
        env=os.environ | {"UV_PROJECT_ENVIRONMENT": str(environment)},
        capture_output=True,
        text=True,
        check=False,
    )
    return environment, result.stdout + result.stderr if result.returncode else ""


def installation_problems(
    package: Package, provided: dict[str, set[str]], uv: list[str]
) -> list[str]:
    environment, failure = sync_alone(package, uv)
    if failure:
        return [f"{package.name}: `uv sync --package {package.name}` failed:\n{failure}"]
    result = subprocess.run(
        [
            str(environment / "bin" / "python"),
            "-m",
            "deploy.package_check",
            "--import-every-module",
            *module_files(package),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        return [f"{package.name}: the import run failed:\n{result.stdout}{result.stderr}"]
    problems = []
    for failure_line in result.stdout.splitlines():
        module, missing, error = json.loads(failure_line)
        if missing is None or missing.split(".")[0] in package.modules:
            problems.append(f"{package.name}: importing {module} alone fails:\n{error}")
            continue
        wanted = " or ".join(sorted(provided.get(missing.split(".")[0], {missing})))
        problems.append(
            f"{package.name}: importing {module} alone fails: No module named {missing!r}. "
            f"Installed on its own, {package.name} lacks it: add {wanted} to [project] "
            f"dependencies in {package.pyproject}"
        )
    return problems


def import_every_module(names: list[str]) -> int:
    """Inside a throwaway environment: one JSON line [module, missing, error] per failure."""
    for name in names:
        if NOT_IMPORTABLE.search(name):
            continue
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            print(json.dumps([name, exc.name, str(exc)]))
        except Exception:
            print(json.dumps([name, None, traceback.format_exc(limit=3)]))
    return 0


def check(package: Package, provided: dict[str, set[str]], uv: list[str]) -> list[str]:
    started = time.monotonic()
    problems = declaration_problems(package, provided)
    problems += installation_problems(package, provided, uv)
    verdict = "FAILED" if problems else "ok"
    count, seconds = len(module_files(package)), time.monotonic() - started
    print(f"package-check | {package.name:22} {verdict:6} {count:3} modules {seconds:4.1f}s")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("names", nargs="*", help="packages to check (default: all)")
    parser.add_argument("--uv", default="uv", help='how to run uv (e.g. "python3 -m uv")')
    parser.add_argument("--import-every-module", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.import_every_module:
        return import_every_module(args.names)
    packages = workspace()
    provided = providers(packages)
    selected = [p for p in packages if not args.names or p.name in map(normalise, args.names)]
    # The work is in subprocesses (uv, python), so threads keep every core busy.
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        uv = shlex.split(args.uv)
        results = list(pool.map(lambda package: check(package, provided, uv), selected))
    problems = [problem for found in results for problem in found]
    for problem in problems:
        print(f"package-check | {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
