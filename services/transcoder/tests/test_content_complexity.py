"""The trial encode that picks the x264 preset: detailed content gets the detailed preset."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from videoflix_transcoder.ladder import plan_renditions
from videoflix_transcoder.probe import probe_source
from videoflix_transcoder.ratecontrol import plan_content, run_trial
from videoflix_transcoder.settings import TranscoderSettings


@pytest.fixture(scope="module")
def flat_clip(make_clip: Callable[..., Path]) -> Path:
    return make_clip("flat.mp4", size="640x360", seconds=3, source="smptebars", audio=None)


@pytest.fixture(scope="module")
def noisy_clip(make_clip: Callable[..., Path]) -> Path:
    return make_clip(
        "noisy.mp4",
        size="640x360",
        seconds=3,
        audio=None,
        video_args=("-vf", "noise=alls=40:allf=t+u", "-qp", "4"),
    )


async def check(clip: Path, settings: TranscoderSettings) -> bool:
    info = await probe_source(clip, ffprobe_bin=settings.ffprobe_bin)
    plan = await plan_content(
        source=clip, info=info, renditions=plan_renditions(info), settings=settings
    )
    return plan.detailed


async def test_noisy_content_measures_far_more_bits_per_pixel_than_flat_content(
    flat_clip: Path, noisy_clip: Path, settings: TranscoderSettings
) -> None:
    measured = {}
    for clip in (flat_clip, noisy_clip):
        info = await probe_source(clip, ffprobe_bin=settings.ffprobe_bin)
        trial = await run_trial(
            source=clip, info=info, renditions=plan_renditions(info), settings=settings
        )
        measured[clip.name] = trial.complexity
    assert 0 < measured["flat.mp4"] < settings.detailed_content_bpp < measured["noisy.mp4"]


async def test_noisy_content_is_detailed_and_flat_content_is_not(
    flat_clip: Path, noisy_clip: Path, settings: TranscoderSettings
) -> None:
    assert await check(noisy_clip, settings) is True
    assert await check(flat_clip, settings) is False


async def test_threshold_zero_switches_the_check_off(
    noisy_clip: Path, make_settings: Callable[..., TranscoderSettings]
) -> None:
    assert await check(noisy_clip, make_settings(TRANSCODER_DETAILED_CONTENT_BPP="0")) is False


async def test_a_check_that_cannot_run_falls_back_to_the_ordinary_preset(
    noisy_clip: Path,
    make_settings: Callable[..., TranscoderSettings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(TRANSCODER_FFMPEG="/nonexistent/ffmpeg")
    with caplog.at_level(logging.WARNING):
        assert await check(noisy_clip, settings) is False
    assert "complexity check" in caplog.text


def test_per_rung_preset_wins_over_the_content_choice(
    make_settings: Callable[..., TranscoderSettings],
) -> None:
    settings = make_settings(
        TRANSCODER_X264_PRESET="veryfast",
        TRANSCODER_X264_PRESET_DETAILED="faster",
        TRANSCODER_X264_PRESET_1080P="superfast",
    )
    assert settings.preset_for("720p") == "veryfast"
    assert settings.preset_for("720p", detailed=True) == "faster"
    assert settings.preset_for("1080p", detailed=True) == "superfast"


def test_one_key_frame_per_segment_unless_configured(
    make_settings: Callable[..., TranscoderSettings],
) -> None:
    assert make_settings(TRANSCODER_SEGMENT_SECONDS="6").keyframe_interval == 6
    configured = make_settings(TRANSCODER_SEGMENT_SECONDS="6", TRANSCODER_KEYFRAME_SECONDS="2")
    assert configured.keyframe_interval == 2
