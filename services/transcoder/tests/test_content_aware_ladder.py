"""The content-aware ladder: a capped CRF per rung, decided once per title from a trial
encode (real ffmpeg on tiny generated clips), and what the playlists then declare."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import m3u8
import pytest

from videoflix_transcoder.ladder import LADDER, plan_renditions
from videoflix_transcoder.pipeline import encode_video
from videoflix_transcoder.playlists import read_media_playlist
from videoflix_transcoder.probe import probe_source
from videoflix_transcoder.ratecontrol import (
    GUARD_CRF_STEPS,
    PSNR_PER_CRF,
    TRIAL_CRF,
    RungTrial,
    Trial,
    capped,
    choose_crfs,
    plan_content,
    psnr_for_vmaf,
)
from videoflix_transcoder.settings import TranscoderSettings

from .test_ladder_and_playlists import source

FULL_HD = plan_renditions(source(1920, 1080))
TODAYS_MAXRATE = {rung.name: rung.maxrate_kbps for rung in LADDER}


@pytest.fixture(scope="module")
def noisy_clip(make_clip: Callable[..., Path]) -> Path:
    """Hard content: fresh noise in every frame, stored almost losslessly."""
    return make_clip(
        "noisy-cap.mp4",
        size="640x360",
        seconds=12,
        audio=None,
        video_args=("-vf", "noise=alls=60:allf=t+u", "-qp", "4"),
    )


@pytest.fixture(scope="module")
def cartoon_clip(make_clip: Callable[..., Path]) -> Path:
    return make_clip("cartoon.mp4", size="1280x720", seconds=3, audio=None)


def trial(kbps: dict[str, float], psnr: float = 42.0, halving: float = 5.0) -> Trial:
    return Trial(
        complexity=0.2,
        rungs=tuple(RungTrial(name, rate, psnr) for name, rate in kbps.items()),
        crf_per_halving=halving,
    )


def decide(measured: Trial, *, target: float = 94.0) -> dict[str, float]:
    return choose_crfs(measured, FULL_HD, vmaf_target=target, crf_min=18.0, crf_max=28.0)


def test_a_rung_that_spends_the_fixed_rate_at_the_trial_crf_goes_one_guard_step_past_it() -> None:
    # Each rung spends exactly its fixed rate at the trial CRF; the picture is far above
    # the target (high PSNR), so the guard decides.
    crfs = decide(trial({"480p": 1500, "720p": 3500, "1080p": 6500}, psnr=50.0))
    assert crfs == dict.fromkeys(("480p", "720p", "1080p"), TRIAL_CRF + GUARD_CRF_STEPS)


def test_easy_content_keeps_todays_quality_and_hard_content_gets_the_target() -> None:
    # Easy: a hundredth of the fixed rate at the trial CRF; today's rate buys far more
    # quality than any target, which the guard keeps (CRF_MIN: still few bits on it).
    easy = decide(trial({"480p": 15, "720p": 35, "1080p": 65}, psnr=60.0))
    assert easy == dict.fromkeys(("480p", "720p", "1080p"), 18.0)
    # Hard: a hundred times the fixed rate; the top rung's PSNR reaches the target's two CRF
    # steps above the trial's, so every rung aims there and the cap does the rest.
    psnr = psnr_for_vmaf(94.0) + 2 * PSNR_PER_CRF
    hard = decide(trial({"480p": 150_000, "720p": 350_000, "1080p": 650_000}, psnr=psnr))
    assert hard == dict.fromkeys(("480p", "720p", "1080p"), TRIAL_CRF + 2)


def test_the_bounds_hold_whatever_the_trial_measured() -> None:
    for kbps in (0.001, 1.0, 1e9):
        for psnr in (0.0, 40.0, 100.0):
            crfs = decide(trial(dict.fromkeys(("480p", "720p", "1080p"), kbps), psnr=psnr))
            assert all(18.0 <= crf <= 28.0 for crf in crfs.values()), (kbps, psnr, crfs)


def test_a_higher_vmaf_target_never_gives_a_higher_crf() -> None:
    measured = trial({"480p": 700, "720p": 1800, "1080p": 4000}, psnr=44.0)
    crfs = [decide(measured, target=target) for target in (90.0, 93.0, 95.0, 97.0)]
    for rung in ("480p", "720p", "1080p"):
        chosen = [c[rung] for c in crfs]
        assert chosen == sorted(chosen, reverse=True), rung
    assert crfs[0]["1080p"] > crfs[-1]["1080p"]


def test_capped_renditions_never_exceed_the_fixed_ladders_rates() -> None:
    crfs = decide(trial({"480p": 900, "720p": 2000, "1080p": 5000}))
    for fixed, content in zip(FULL_HD, capped(FULL_HD, crfs), strict=True):
        assert content.crf == crfs[fixed.name]
        assert content.maxrate_kbps <= fixed.video_kbps <= fixed.maxrate_kbps
        assert content.bufsize_kbps <= fixed.bufsize_kbps
        assert (content.width, content.height) == (fixed.width, fixed.height)


async def test_the_decision_is_deterministic_and_bounded_by_the_caps(
    cartoon_clip: Path, make_settings: Callable[..., TranscoderSettings]
) -> None:
    settings = make_settings(TRANSCODER_CRF_MIN="19", TRANSCODER_CRF_MAX="26")
    info = await probe_source(cartoon_clip)
    fixed = plan_renditions(info)
    plans = [
        await plan_content(source=cartoon_clip, info=info, renditions=fixed, settings=settings)
        for _ in range(2)
    ]
    assert plans[0] == plans[1]
    for rendition, nominal in zip(plans[0].renditions, fixed, strict=True):
        assert rendition.crf is not None
        assert 19 <= rendition.crf <= 26
        assert rendition.crf * 2 == int(rendition.crf * 2)  # half steps
        assert rendition.maxrate_kbps == nominal.video_kbps
        assert rendition.bufsize_kbps == nominal.video_kbps


async def test_fixed_rate_control_keeps_the_fixed_ladder(
    cartoon_clip: Path, make_settings: Callable[..., TranscoderSettings]
) -> None:
    settings = make_settings(TRANSCODER_RATE_CONTROL="fixed")
    info = await probe_source(cartoon_clip)
    fixed = plan_renditions(info)
    plan = await plan_content(source=cartoon_clip, info=info, renditions=fixed, settings=settings)
    assert plan.renditions == fixed


async def test_a_trial_that_cannot_run_falls_back_to_the_fixed_ladder(
    cartoon_clip: Path,
    make_settings: Callable[..., TranscoderSettings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    info = await probe_source(cartoon_clip)
    fixed = plan_renditions(info)
    settings = make_settings(TRANSCODER_FFMPEG="/nonexistent/ffmpeg")
    with caplog.at_level(logging.WARNING):
        plan = await plan_content(
            source=cartoon_clip, info=info, renditions=fixed, settings=settings
        )
    assert plan.renditions == fixed
    assert all(r.crf is None for r in plan.renditions)
    assert "fixed ladder" in caplog.text


def segment_rates(playlist: Path) -> list[float]:
    """Bits/s of every segment at least half the target duration long."""
    segments = read_media_playlist(playlist)
    longest = max(s.duration for s in segments)
    return [s.size_bytes * 8 / s.duration for s in segments if s.duration >= longest / 2]


async def test_hard_content_never_exceeds_todays_maxrate_and_bandwidth_covers_the_peak(
    tmp_path: Path, noisy_clip: Path, settings: TranscoderSettings
) -> None:
    out = tmp_path / "out"
    out.mkdir()

    result = await encode_video(source=noisy_clip, output_dir=out, generation=1, settings=settings)

    (rendition,) = plan_renditions(await probe_source(noisy_clip))
    rate = result.renditions_bitrate["480p"]
    assert rate["crf"] is not None
    # Today's ladder for this picture size: the same share of 480p's rates.
    share = rendition.video_kbps / LADDER[0].video_kbps
    todays_maxrate = TODAYS_MAXRATE["480p"] * share * 1000
    rates = segment_rates(out / "480p" / "index.m3u8")
    assert max(rates) <= todays_maxrate, (rates, todays_maxrate)
    assert rate["peak_bitrate"] <= todays_maxrate
    # The noise wants far more than the cap: the encoder ran at it, not far below.
    assert rate["average_bitrate"] >= 0.7 * rendition.video_kbps * 1000
    master = m3u8.load(str(out / "master.m3u8"))
    (variant,) = master.playlists
    assert variant.stream_info.bandwidth >= max(rates)
    assert variant.stream_info.bandwidth == rate["peak_bitrate"]
    assert variant.stream_info.average_bandwidth == rate["average_bitrate"]


async def test_every_rung_declares_its_measured_peak_and_average(
    tmp_path: Path, cartoon_clip: Path, make_settings: Callable[..., TranscoderSettings]
) -> None:
    settings = make_settings(TRANSCODER_SEGMENT_SECONDS="1")
    out = tmp_path / "out"
    out.mkdir()

    result = await encode_video(
        source=cartoon_clip, output_dir=out, generation=1, settings=settings
    )

    master = m3u8.load(str(out / "master.m3u8"))
    assert [p.uri for p in master.playlists] == ["480p/index.m3u8", "720p/index.m3u8"]
    for variant in master.playlists:
        name = variant.uri.split("/")[0]
        rates = segment_rates(out / variant.uri)
        assert variant.stream_info.bandwidth >= max(rates)
        assert variant.stream_info.average_bandwidth <= variant.stream_info.bandwidth
        assert result.renditions_bitrate[name]["peak_bitrate"] == variant.stream_info.bandwidth
        assert result.renditions_bitrate[name]["crf"] is not None
