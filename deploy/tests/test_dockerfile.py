"""deploy/docker/Dockerfile, read statically: one small, non-root image per service.

The Dockerfile is parsed into stages (instructions with line continuations joined), then
each service's target is followed back through its `FROM` chain: pinned base image, only
its own workspace member installed from uv.lock, ffmpeg only where it is used, an
unprivileged user, its console script as the command, and a build context that carries
every file the COPY lines need (and not the virtualenv or media).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / "deploy" / "docker" / "Dockerfile.dockerignore"
SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))
USES_FFMPEG = {"catalog", "transcoder"}  # ffprobe validates uploads; ffmpeg encodes


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (KEYWORD, arguments)


def parse_dockerfile(text: str) -> tuple[dict[str, str], dict[str, Stage]]:
    """Global ARG defaults and the stages by name."""
    logical, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            m = re.fullmatch(r"(\S+) AS (\S+)", rest)
            assert m, f"every stage is named: {line}"
            stage = stages[m[2]] = Stage(m[2], m[1])
        elif stage is None:
            assert keyword == "ARG", f"only ARG may precede the first FROM: {line}"
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stage.instructions.append((keyword, rest))
    return args, stages


ARGS, STAGES = parse_dockerfile(DOCKERFILE.read_text())


def chain(target: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    out = []
    name = target
    while name in STAGES:
        out.append(STAGES[name])
        name = STAGES[name].base
    return out


def base_image(target: str) -> str:
    base = chain(target)[-1].base
    if m := re.fullmatch(r"\$\{(\w+)\}", base):
        return ARGS[m[1]]
    return base


def run_commands(stages: list[Stage]) -> list[str]:
    return [args for stage in stages for keyword, args in stage.instructions if keyword == "RUN"]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), "CMD uses the exec form (signals reach the process)"
    return value


def test_base_images_are_pinned():
    assert re.fullmatch(
        r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", ARGS["PYTHON_IMAGE"]
    )
    assert re.fullmatch(
        r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+(@sha256:[0-9a-f]{64})?", ARGS["UV_IMAGE"]
    )
    for stage in STAGES.values():
        assert stage.base in STAGES or stage.base in ("${PYTHON_IMAGE}", "${UV_IMAGE}"), stage.name


def workspace_members() -> list[str]:
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    return [
        path.parent.relative_to(ROOT).as_posix()
        for pattern in workspace["members"]
        for path in sorted(ROOT.glob(f"{pattern}/pyproject.toml"))
    ]


def test_every_workspace_member_is_visible_to_uv_in_the_builder():
    copied = {args for keyword, args in STAGES["builder"].instructions if keyword == "COPY"}
    members = workspace_members()
    assert {"shared", "shared-testing", *(f"services/{s}" for s in SERVICES)} <= set(members)
    for member in members:
        assert f"{member}/pyproject.toml {member}/" in copied, member
    assert "pyproject.toml uv.lock ./" in copied


def test_no_image_carries_the_test_helpers():
    """videoflix-testing's metadata is in the builder (uv resolves the whole workspace), its
    code in no stage: no service depends on it, so `uv sync --package` never installs it."""
    sources = [args for stage in STAGES.values() for k, args in stage.instructions if k == "COPY"]
    assert not [s for s in sources if "shared-testing/src" in s or s.startswith("shared-testing ")]
    for service in SERVICES:
        pyproject = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
        assert not any("videoflix-testing" in d for d in pyproject["project"]["dependencies"])
    shared = tomllib.loads((ROOT / "shared" / "pyproject.toml").read_text())["project"]
    assert not any("videoflix-testing" in d for d in shared["dependencies"])
    assert not (ROOT / "shared" / "src" / "videoflix_shared" / "testing").exists()


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_image_installs_only_its_own_package_from_the_lock(service):
    build = STAGES[f"build-{service}"]
    assert build.base == "builder"
    syncs = [shlex.split(cmd) for cmd in run_commands([build])]
    syncs = [cmd[cmd.index("uv") :] for cmd in syncs if "uv" in cmd]
    assert syncs, f"build-{service} runs no uv sync"
    for cmd in syncs:
        assert cmd[:2] == ["uv", "sync"]
        assert {"--frozen", "--no-dev"} <= set(cmd)
        assert cmd[cmd.index("--package") + 1] == f"videoflix-{service}"
    assert "--no-editable" in syncs[-1], "the image must not need the source tree"
    sources = [a for k, a in build.instructions if k == "COPY"]
    assert sources == ["shared/src shared/src", f"services/{service}/src services/{service}/src"]
    final = STAGES[service]
    copies = [a for k, a in final.instructions if k == "COPY"]
    assert copies == [f"--from=build-{service} /opt/venv /opt/venv"]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_image_runs_as_an_unprivileged_user(service):
    users = [args for stage in chain(service) for k, args in stage.instructions if k == "USER"]
    assert users, f"{service} runs as root"
    assert users[0].split(":")[0] not in ("root", "0")
    created = " ".join(run_commands(chain(service)))
    assert "useradd --system --uid 10001 --gid videoflix" in created


@pytest.mark.parametrize("service", SERVICES)
def test_ffmpeg_is_installed_only_where_it_is_used(service):
    installs = [cmd for cmd in run_commands(chain(service)) if "apt-get install" in cmd]
    has_ffmpeg = any("ffmpeg" in shlex.split(cmd) for cmd in installs)
    assert has_ffmpeg == (service in USES_FFMPEG)
    assert all("--no-install-recommends" in cmd for cmd in installs)
    assert all("rm -rf /var/lib/apt/lists/*" in cmd for cmd in installs)


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_image_starts_its_console_script(service):
    pyproject = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    cmds = [args for k, args in STAGES[service].instructions if k == "CMD"]
    assert len(cmds) == 1
    command = exec_form(cmds[0])
    assert command[0] in pyproject["project"]["scripts"]
    assert base_image(service) == ARGS["PYTHON_IMAGE"]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern decides; `!` re-includes."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!")
        if fnmatch.fnmatchcase(path, glob) or (glob.endswith("/**") and path == glob[:-3]):
            result = not negate
    return result


def test_build_context_carries_every_copied_file_and_nothing_heavy():
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        source
        for stage in STAGES.values()
        for keyword, args in stage.instructions
        if keyword == "COPY" and not args.startswith("--from")
        for source in [t for t in args.split() if not t.startswith("--")][:-1]
    ]
    assert "deploy/docker/healthcheck.py" in sources
    for source in sources:
        for path in [ROOT / source, *((ROOT / source).rglob("*"))]:
            relative = path.relative_to(ROOT).as_posix()
            if path.is_file() and "__pycache__" not in relative:
                assert not ignored(relative, patterns), f"{relative} is COPYed but ignored"
    for heavy in (".venv/bin/python", ".data/media/x.ts", ".git/HEAD", "tests/e2e/test_x.py"):
        assert ignored(heavy, patterns), heavy
