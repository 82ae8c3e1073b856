"""The launcher's commands (`python -m deploy.devstack up|down|infra|status|nats-config`):
argument parsing, the `up` sequence and its reports; the work is in the sibling modules."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
from pathlib import Path

import deploy.devstack
from deploy import privileges
from deploy.devstack.config import (
    MAIL_SINK_OFFSET,
    PROMETHEUS,
    ROOT,
    ensure_development_admin,
    log,
    setting,
    stack_env,
)
from deploy.devstack.observe import observing, prepare_prometheus, stop_observing
from deploy.devstack.provision import provision
from deploy.devstack.servers import ensure_infra, stop_private_infra
from deploy.devstack.supervise import (
    all_healthy,
    health,
    run_migrations,
    start_honcho,
    stop_honcho,
    wait_healthy,
    write_procfile,
)
from deploy.devstack.system import ensure_tools, port_open
from videoflix_shared.access import render_nats_authorization
from videoflix_shared.processes import pid_alive, wait_gone

DOWN_TIMEOUT = 40  # seconds `down` waits for the launcher to stop everything


def cmd_up(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pid_file = data_dir / "devstack.pid"
    if pid_file.exists() and pid_alive(int(pid_file.read_text())):
        log(f"the stack is already running (pid {pid_file.read_text()}); `make down` stops it")
        return 0
    if port_open("127.0.0.1", args.port_base):
        raise SystemExit(
            f"devstack: port {args.port_base} is taken by another program; set VIDEOFLIX_PORT_BASE"
        )
    pid_file.write_text(str(os.getpid()))
    ensure_tools()
    if args.observe:
        prepare_prometheus(data_dir, args.port_base)
    env = stack_env(data_dir, args.port_base)
    ensure_development_admin(env, data_dir)
    os.environ.update(env)
    # Explicit for SIGINT too: a launcher started in the background inherits SIGINT ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    honcho: subprocess.Popen[bytes] | None = None
    try:
        per_process = provision(env, data_dir, args.port_base)
        # what every process inherits: nothing with admin rights, no other process's secret
        shared_env = {k: v for k, v in os.environ.items() if k not in privileges.WITHHELD}
        run_migrations(shared_env, per_process)
        procfile = write_procfile(data_dir, args.port_base, per_process, observe=args.observe)
        honcho = start_honcho(procfile, shared_env)
        results = wait_healthy(args.port_base, honcho, observe=args.observe)
        _report(env, args.port_base, results)
        honcho.wait()
        return 0 if all_healthy(results) else 1
    except KeyboardInterrupt:
        log("stopping")
        return 0
    finally:
        if honcho is not None:
            stop_honcho(honcho)
        stop_observing(data_dir)
        stop_private_infra(data_dir)
        pid_file.unlink(missing_ok=True)
        log("stopped")


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _report(env: dict[str, str], port_base: int, results: dict[str, str]) -> None:
    """Each process's health and where a person goes next."""
    for name, state in results.items():
        log(f"{name:22s} {state}")
    base = f"http://127.0.0.1:{port_base}"
    cors = os.environ.get("CORS_ALLOWED_ORIGINS", "http://127.0.0.1:5500")
    log(f"gateway      {base}/api/   (JSON API; CORS for {cors})")
    log(f"admin page   {base}/admin/   (sign in as {setting(env, 'ADMIN_EMAIL', '?')})")
    log(
        f"dev mail     http://127.0.0.1:{port_base + MAIL_SINK_OFFSET}/messages"
        f"  (SMTP on {env['SMTP_HOST']}:{env['SMTP_PORT']})"
    )
    if "prometheus" in results:
        prometheus = f"http://127.0.0.1:{port_base + PROMETHEUS.port_offset}"
        log(f"prometheus   {prometheus}/targets   (alerts: {prometheus}/alerts)")
    log("stop with Ctrl-C or `make down`")


def cmd_down(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir.resolve()
    pid_file = data_dir / "devstack.pid"
    if pid_file.exists() and pid_alive(pid := int(pid_file.read_text())):
        log(f"stopping the stack (pid {pid})")
        os.kill(pid, signal.SIGTERM)  # the launcher stops what it started, then exits
        wait_gone(pid, timeout=DOWN_TIMEOUT)
    else:
        log("no stack running")
        stop_private_infra(data_dir)  # leftovers of a launcher that was killed
    return 0


def cmd_infra(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir.resolve()
    env = stack_env(data_dir, args.port_base)
    ensure_infra(env, data_dir)
    if args.print_env:
        pg = env["AUTH_DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
        print(f"export TEST_POSTGRES_URL={pg}")
        print(f"export TEST_REDIS_URL={env['REDIS_URL']}")
        print(f"export TEST_NATS_URL={env['NATS_URL']}")
    return 0


def cmd_nats_config(args: argparse.Namespace) -> int:
    """The `authorization` block with the per-service users, for an operator's nats-server."""
    env = stack_env(args.data_dir.resolve(), args.port_base)
    print(
        render_nats_authorization(
            privileges.nats_passwords(privileges.Credentials(args.data_dir.resolve())),
            subject_prefix=setting(env, "NATS_SUBJECT_PREFIX", ""),
            stream_prefix=setting(env, "NATS_STREAM_PREFIX", "VIDEOFLIX_"),
        ),
        end="",
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    results = health(args.port_base, observe=observing(args.data_dir.resolve()))
    for name, state in results.items():
        print(f"{name:22s} {state}")
    return 0 if all_healthy(results) else 1


COMMANDS = {
    "up": cmd_up,
    "down": cmd_down,
    "infra": cmd_infra,
    "status": cmd_status,
    "nats-config": cmd_nats_config,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="devstack",
        description=deploy.devstack.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=list(COMMANDS))
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("VIDEOFLIX_DATA_DIR", ROOT / ".data"))
    )
    parser.add_argument(
        "--port-base", type=int, default=int(os.environ.get("VIDEOFLIX_PORT_BASE", "8000"))
    )
    parser.add_argument(
        "--print-env", action="store_true", help="infra: print TEST_* exports for the test suite"
    )
    parser.add_argument(
        "--observe",
        action="store_true",
        help="up: also run Prometheus with the stack (docs/OBSERVABILITY.md)",
    )
    args = parser.parse_args(argv)
    return COMMANDS[args.command](args)
