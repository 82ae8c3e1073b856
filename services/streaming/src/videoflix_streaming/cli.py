"""`videoflix-streaming serve`."""

from __future__ import annotations

import argparse

from videoflix_shared.app import run_http_service
from videoflix_streaming.settings import StreamingSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="videoflix-streaming")
    parser.add_argument("command", choices=["serve"])
    parser.parse_args(argv)
    run_http_service("videoflix_streaming.app:create_app", StreamingSettings())
