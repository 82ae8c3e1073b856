"""`videoflix-transcoder dispatcher | worker`, each with its health port (HTTP_PORT)."""

from __future__ import annotations

import argparse

from videoflix_shared.app import run_worker
from videoflix_transcoder import dispatcher, worker
from videoflix_transcoder.settings import TranscoderSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="videoflix-transcoder")
    parser.add_argument("command", choices=["dispatcher", "worker"])
    args = parser.parse_args(argv)
    work = dispatcher.run if args.command == "dispatcher" else worker.run
    run_worker(service=f"transcoder-{args.command}", settings=TranscoderSettings(), work=work)
