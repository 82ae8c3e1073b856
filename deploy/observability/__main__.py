"""`python -m deploy.observability write | prometheus --port-base N` (see the package doc)."""

from __future__ import annotations

import argparse
import sys

from deploy.observability import dashboard, scrape


def write() -> None:
    """Rewrite the committed generated files (the tests check they are current)."""
    for path, text in (
        (scrape.COMPOSE_CONFIG, scrape.render_compose()),
        (dashboard.DASHBOARD_FILE, dashboard.render()),
    ):
        path.write_text(text)
        print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.observability")
    parser.add_argument("command", choices=["write", "prometheus"])
    parser.add_argument("--port-base", type=int, default=8000, help="prometheus: native ports")
    args = parser.parse_args(argv)
    if args.command == "write":
        write()
    else:
        sys.stdout.write(scrape.render_native(args.port_base))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
