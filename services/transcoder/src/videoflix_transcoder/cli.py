"""`videoflix-transcoder dispatcher | worker` (skeleton; the transcoder issue fills it in)."""

from __future__ import annotations

import argparse
import asyncio

from fastapi import FastAPI

from videoflix_shared.app import run_worker
from videoflix_transcoder.settings import TranscoderSettings


async def idle(app: FastAPI, stop: asyncio.Event) -> None:
    await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="videoflix-transcoder")
    parser.add_argument("command", choices=["dispatcher", "worker"])
    args = parser.parse_args(argv)
    run_worker(service=f"transcoder-{args.command}", settings=TranscoderSettings(), work=idle)
