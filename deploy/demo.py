"""`make demo`: fill a running stack's catalog with sample videos through the real API.

    python -m deploy.demo [--base-url http://127.0.0.1:8000] [--data-dir .data]

Signs in as the admin (ADMIN_EMAIL / ADMIN_PASSWORD from the environment or `.env`, else the
development admin `make up` generated in `<data dir>/dev-admin.json`), generates short clips
with ffmpeg (test patterns of different sizes and shapes, with a tone; nothing is
downloaded or committed), uploads each through `POST /api/admin/videos/upload/` exactly as
the admin page does (published as soon as it is transcoded), and waits until every one is listed by `GET /api/video/`,
printing progress. Videos whose title is already in the catalog are skipped, so running it
twice adds nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from deploy.devstack.config import ROOT, stack_env

ADMIN_FILE = "dev-admin.json"
READY_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class Sample:
    title: str
    description: str
    category: str
    source: str  # an ffmpeg lavfi video source
    size: str  # width x height of the source
    seconds: int


SAMPLES = (
    Sample(
        "Colour Bars at Dawn",
        "A calm test card in full HD with a steady tone.",
        "Documentary",
        "testsrc2",
        "1920x1080",
        12,
    ),
    Sample(
        "The Mandelbrot Descent",
        "A zoom into the set that never ends, in 720p.",
        "Drama",
        "mandelbrot",
        "1280x720",
        10,
    ),
    Sample(
        "Game of Life",
        "Cells are born and die: a small 360p clip, as a phone would film it.",
        "Action",
        "life=mold=10:ratio=0.4:death_color=#101010:life_color=#40c040",
        "640x360",
        10,
    ),
    Sample(
        "Vertical Story",
        "A portrait clip (9:16), like a story from a phone.",
        "Romance",
        "testsrc",
        "720x1280",
        8,
    ),
    Sample(
        "Cellular Comedy",
        "Rule 110 draws itself, line after line.",
        "Comedy",
        "cellauto=rule=110",
        "1280x720",
        10,
    ),
)


def log(message: str) -> None:
    print(f"demo | {message}", flush=True)


def admin_credentials(env: dict[str, str], data_dir: Path) -> tuple[str, str]:
    if env.get("ADMIN_EMAIL") and env.get("ADMIN_PASSWORD"):
        return env["ADMIN_EMAIL"], env["ADMIN_PASSWORD"]
    generated = data_dir / ADMIN_FILE
    if generated.exists():
        admin = json.loads(generated.read_text())
        return admin["email"], admin["password"]
    raise SystemExit(
        "demo | no admin: set ADMIN_EMAIL and ADMIN_PASSWORD (environment or .env), or start "
        f"the stack once with `make up` so it creates a development admin in {generated}"
    )


def make_clip(sample: Sample, directory: Path) -> Path:
    path = directory / f"{sample.title.lower().replace(' ', '-')}.mp4"
    width, height = sample.size.split("x")
    separator = ":" if "=" in sample.source else "="
    source = f"{sample.source}{separator}size={sample.size}:rate=25"
    subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-loglevel", "error", "-y"),
            *("-f", "lavfi", "-i", source),
            *(
                "-f",
                "lavfi",
                "-i",
                f"sine=frequency=330:sample_rate=48000:duration={sample.seconds}",
            ),
            *("-t", str(sample.seconds), "-vf", f"scale={width}:{height},format=yuv420p"),
            *("-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-c:a", "aac"),
            *("-movflags", "+faststart", str(path)),
        ],
        check=True,
    )
    return path


def sign_in(client: httpx.Client, email: str, password: str) -> None:
    response = client.post("/api/login/", json={"email": email, "password": password})
    if response.status_code != 200:
        raise SystemExit(f"demo | the admin {email} cannot sign in: {response.text}")


def csrf(client: httpx.Client) -> dict[str, str]:
    return {"X-CSRFToken": client.cookies.get("csrftoken") or ""}


def upload(client: httpx.Client, sample: Sample, clip: Path) -> int:
    with clip.open("rb") as source:
        response = client.post(
            "/api/admin/videos/upload/",
            data={
                "title": sample.title,
                "description": sample.description,
                "category": sample.category,
                "publish_when_ready": "true",
            },
            files={"file": (clip.name, source, "video/mp4")},
            headers=csrf(client),
            timeout=300,
        )
    if response.status_code != 202:
        raise SystemExit(f"demo | upload of {sample.title!r} refused: {response.text}")
    return int(response.json()["id"])


def wait_until_listed(client: httpx.Client, pending: dict[int, str]) -> None:
    """Show progress until every video (published by catalog once ready) is listed."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    last_line = ""
    while pending:
        if time.monotonic() > deadline:
            raise SystemExit(f"demo | not playable after {READY_TIMEOUT_SECONDS}s: {pending}")
        states = []
        for video_id, title in list(pending.items()):
            video = client.get(f"/api/admin/videos/{video_id}/").json()
            if video["status"] == "failed":
                raise SystemExit(f"demo | {title!r} failed: {video['failure_reason']}")
            states.append(f"{title} {video['status']} {video['progress']:.0f}%")
        listed = {v["id"] for v in client.get("/api/video/").json()}
        for video_id in listed & set(pending):
            log(f"playable: {pending.pop(video_id)} (id {video_id})")
        line = "; ".join(states)
        if pending and line != last_line:
            log(line)
            last_line = line
        time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("VIDEOFLIX_DATA_DIR", ROOT / ".data"))
    )
    parser.add_argument("--base-url", default=None, help="the gateway (default PUBLIC_BASE_URL)")
    args = parser.parse_args(argv)
    port_base = int(os.environ.get("VIDEOFLIX_PORT_BASE", "8000"))
    env = stack_env(args.data_dir.resolve(), port_base)
    base_url = args.base_url or env["PUBLIC_BASE_URL"]
    email, password = admin_credentials(env, args.data_dir.resolve())
    with httpx.Client(base_url=base_url, timeout=30) as client:
        try:
            sign_in(client, email, password)
        except httpx.TransportError as exc:
            raise SystemExit(
                f"demo | no stack answers at {base_url} ({exc}); run `make up` first"
            ) from None
        existing = {v["title"] for v in client.get("/api/admin/videos/").json()}
        pending: dict[int, str] = {}
        with tempfile.TemporaryDirectory(prefix="videoflix-demo-") as tmp:
            for sample in SAMPLES:
                if sample.title in existing:
                    log(f"already in the catalog: {sample.title}")
                    continue
                log(f"generating {sample.title} ({sample.size}, {sample.seconds}s) and uploading")
                pending[upload(client, sample, make_clip(sample, Path(tmp)))] = sample.title
        wait_until_listed(client, pending)
        count = len(client.get("/api/video/").json())
    log(f"done: {count} playable videos at {base_url}/api/video/ (sign in on {base_url}/admin/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
