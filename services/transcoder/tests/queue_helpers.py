"""Helpers for the tests of the queue's visibility: scraping a health port's /metrics,
running `videoflix-transcoder jobs`, and an ffmpeg that holds its encodes at a gate."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .conftest import CLI

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> tuple[str, Samples]:
    """A health port's /metrics: the text and every sample by (name, labels)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def promtool_lint(text: str) -> str:
    """`promtool check metrics` on an exposition: the format and the naming conventions."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (Debian: prometheus)"
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    return checked.stdout + checked.stderr


def jobs_cli(
    env: Mapping[str, str], *args: str, expect: int = 0
) -> subprocess.CompletedProcess[str]:
    """`videoflix-transcoder jobs ...` with `env` (the stack's settings), as an operator."""
    done = subprocess.run(
        [str(CLI), "jobs", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == expect, (done.returncode, done.stdout, done.stderr)
    return done


# Stands in for ffmpeg. An encode (a run with -progress: the single pass's ladder, a
# film's chunk or audio) first leaves a half-written file at its output, as a killed
# ffmpeg does, then waits until the gate file exists, then runs the real ffmpeg.
GATED_FFMPEG = """#!/bin/sh
case " $* " in
  *" -progress "*)
    for output; do :; done
    printf 'half-written' > "$output" 2>/dev/null || true
    while [ ! -e "{gate}" ]; do sleep 0.1; done
    ;;
esac
exec ffmpeg "$@"
"""


def gated_ffmpeg(directory: Path) -> tuple[Path, Path]:
    """The gated ffmpeg script and its gate (create the gate to let encodes run)."""
    gate = directory / "gate-open"
    script = directory / "ffmpeg-gated.sh"
    script.write_text(GATED_FFMPEG.format(gate=gate))
    script.chmod(0o755)
    return script, gate
