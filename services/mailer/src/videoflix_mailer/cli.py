"""`videoflix-mailer consume | sink` (skeleton; the mailer issue fills it in)."""

from __future__ import annotations

import argparse
import asyncio

from fastapi import FastAPI

from videoflix_mailer.settings import MailerSettings
from videoflix_shared.app import run_worker


async def idle(app: FastAPI, stop: asyncio.Event) -> None:
    await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="videoflix-mailer")
    parser.add_argument("command", choices=["consume", "sink"])
    args = parser.parse_args(argv)
    run_worker(service=f"mailer-{args.command}", settings=MailerSettings(), work=idle)
