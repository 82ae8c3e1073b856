"""Pure logic: which rungs a source gets, probe parsing, bandwidth maths, error summaries."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from videoflix_shared.events import TranscodeProgress
from videoflix_transcoder import events as events_module
from videoflix_transcoder.errors import TranscodeError, summarize_ffmpeg_errors
from videoflix_transcoder.events import ProgressReporter
from videoflix_transcoder.ffmpeg import ladder_command
from videoflix_transcoder.ladder import plan_renditions, thumbnail_seconds
from videoflix_transcoder.pipeline import encode_timeout
from videoflix_transcoder.playlists import (
    Segment,
    VariantRate,
    correct_master_bandwidth,
    peak_bitrate,
)
from videoflix_transcoder.probe import SourceInfo, source_info_from_probe
from videoflix_transcoder.settings import TranscoderSettings


def source(width: int, height: int, duration: float = 60.0) -> SourceInfo:
    return SourceInfo(
        duration_seconds=duration,
        width=width,
        height=height,
        rotation=0,
        frame_rate=30,
        pixel_format="yuv420p",
        has_audio=True,
        audio_channels=2,
    )


def sizes(info: SourceInfo) -> dict[str, tuple[int, int]]:
    return {r.name: (r.width, r.height) for r in plan_renditions(info)}


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (1920, 1080, {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}),
        (3840, 2160, {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}),
        (1280, 720, {"480p": (854, 480), "720p": (1280, 720)}),
        (1279, 719, {"480p": (854, 480)}),
        (640, 360, {"480p": (640, 360)}),
        (321, 241, {"480p": (320, 240)}),
        # Cinemascope: full width, less height; still the 1080p rung, not upscaled.
        (1920, 800, {"480p": (854, 356), "720p": (1280, 534), "1080p": (1920, 800)}),
        # Portrait phone video: the boxes turn upright.
        (1080, 1920, {"480p": (480, 854), "720p": (720, 1280), "1080p": (1080, 1920)}),
        (1440, 1080, {"480p": (640, 480), "720p": (960, 720), "1080p": (1440, 1080)}),
    ],
)
def test_ladder_keeps_aspect_ratio_even_sizes_and_never_upscales(
    width: int, height: int, expected: dict[str, tuple[int, int]]
) -> None:
    assert sizes(source(width, height)) == expected


def test_rungs_smaller_than_their_box_get_proportionally_fewer_bits() -> None:
    full = plan_renditions(source(1920, 1080))[0]
    tiny = plan_renditions(source(320, 240))[0]
    assert (full.video_kbps, full.maxrate_kbps, full.bufsize_kbps) == (1500, 1750, 3500)
    assert tiny.video_kbps == round(1500 * 0.35)
    assert tiny.maxrate_kbps < full.maxrate_kbps


def test_thumbnail_is_taken_at_five_seconds_or_ten_percent_of_a_short_video() -> None:
    assert thumbnail_seconds(600) == 5
    assert thumbnail_seconds(50) == 5
    assert thumbnail_seconds(20) == pytest.approx(2)
    assert thumbnail_seconds(3) == pytest.approx(0.3)


def test_encode_timeout_grows_with_the_duration_above_a_floor() -> None:
    settings = TranscoderSettings(TRANSCODER_TIMEOUT_FACTOR=10, TRANSCODER_MIN_TIMEOUT_SECONDS=300)
    assert encode_timeout(settings, 5) == 300
    assert encode_timeout(settings, 3600) == 36000


def test_probe_applies_rotation_and_pixel_aspect_and_ignores_cover_art() -> None:
    report = {
        "format": {"duration": "12.5"},
        "streams": [
            {
                "codec_type": "video",
                "width": 600,
                "height": 600,
                "disposition": {"attached_pic": 1},
            },
            {
                "codec_type": "video",
                "width": 720,
                "height": 576,
                "sample_aspect_ratio": "16:15",
                "avg_frame_rate": "25/1",
                "pix_fmt": "yuv420p",
                "side_data_list": [{"side_data_type": "Display Matrix", "rotation": -90}],
            },
            {"codec_type": "audio", "channels": 6},
        ],
    }
    info = source_info_from_probe(report)
    assert (info.width, info.height, info.rotation) == (576, 768, 270)
    assert info.duration_seconds == 12.5
    assert info.has_audio
    assert info.audio_channels == 6


@pytest.mark.parametrize(
    ("report", "message"),
    [
        ({"format": {"duration": "3"}, "streams": [{"codec_type": "audio"}]}, "no video stream"),
        (
            {"format": {}, "streams": [{"codec_type": "video", "width": 10, "height": 10}]},
            "duration",
        ),
        ({"format": {"duration": "3"}, "streams": [{"codec_type": "video"}]}, "picture size"),
    ],
)
def test_probe_rejects_unusable_uploads_permanently(report: dict, message: str) -> None:
    with pytest.raises(TranscodeError) as failure:
        source_info_from_probe(report)
    assert failure.value.permanent
    assert message in failure.value.reason


def test_peak_bitrate_follows_the_hls_definition_over_half_to_one_and_a_half_targets() -> None:
    # A tiny last segment must not count alone (0.5 s < half the 10 s target).
    segments = [
        Segment("seg_00000.ts", 10.0, 1_000_000),
        Segment("seg_00001.ts", 10.0, 2_000_000),
        Segment("seg_00002.ts", 0.5, 200_000),
    ]
    assert peak_bitrate(segments, 10) == int((2_000_000 + 200_000) * 8 / 10.5) + 1
    assert peak_bitrate([Segment("seg_00000.ts", 2.0, 100_000)], 10) == 400_001


def test_master_bandwidth_is_the_measured_peak_and_average_bandwidth_the_average(
    tmp_path: Path,
) -> None:
    # 480p: one 10 s segment of 3 MB (2.4 Mbit/s, above the declared rate); 720p: tiny
    # segments (a capped-CRF rung of easy content, far below the declared cap).
    for name, sizes in (("480p", [3_000_000]), ("720p", [10_000, 30_000])):
        (tmp_path / name).mkdir()
        entries = ""
        for index, size in enumerate(sizes):
            (tmp_path / name / f"seg_{index:05d}.ts").write_bytes(b"x" * size)
            entries += f"#EXTINF:10.0,\nseg_{index:05d}.ts\n"
        (tmp_path / name / "index.m3u8").write_text(f"#EXTM3U\n{entries}#EXT-X-ENDLIST\n")
    (tmp_path / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=1790800,RESOLUTION=854x480,CODECS="avc1.64001f,mp4a.40.2"\n480p/index.m3u8\n\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=3990800,RESOLUTION=1280x720,CODECS="avc1.64001f,mp4a.40.2"\n720p/index.m3u8\n'
    )

    rates = correct_master_bandwidth(tmp_path / "master.m3u8", 10)

    assert rates["480p/index.m3u8"] == VariantRate(2_400_001, 2_400_001)
    # The peak of 1 or 2 consecutive 10 s segments (0.5 to 1.5 target durations): 24 kbit/s;
    # the average over both: 16 kbit/s. Not the declared 3.99 Mbit/s.
    assert rates["720p/index.m3u8"] == VariantRate(24_001, 16_001)
    master = (tmp_path / "master.m3u8").read_text()
    assert "BANDWIDTH=2400001,RESOLUTION=854x480" in master
    assert "AVERAGE-BANDWIDTH=2400001" in master
    assert "BANDWIDTH=24001,RESOLUTION=1280x720" in master
    assert "AVERAGE-BANDWIDTH=16001" in master
    assert 'CODECS="avc1.64001f,mp4a.40.2"' in master


def test_ladder_command_decodes_once_and_maps_audio_only_when_there_is_some() -> None:
    renditions = plan_renditions(source(1920, 1080))
    common = dict(
        ffmpeg_bin="ffmpeg",
        source=Path("in.mp4"),
        output_dir=Path("out"),
        renditions=renditions,
        presets=["veryfast"] * 3,
    )
    with_audio = ladder_command(has_audio=True, **common)
    without = ladder_command(has_audio=False, **common)

    assert with_audio.count("-i") == 1
    assert "split=3" in with_audio[with_audio.index("-filter_complex") + 1]
    assert with_audio.count("0:a:0") == 3
    assert "v:0,a:0,name:480p v:1,a:1,name:720p v:2,a:2,name:1080p" in with_audio
    assert "0:a:0" not in without
    assert "-c:a" not in without
    assert "v:0,name:480p v:1,name:720p v:2,name:1080p" in without
    assert "expr:gte(t,n_forced*10)" in with_audio  # one key frame per 10 s segment


def test_ffmpeg_error_summary_is_short_and_free_of_pointers() -> None:
    lines = [
        "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d5c5a1b2c0] moov atom not found",
        "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d5c5a1b2c0] moov atom not found",
        "in.mp4: Invalid data found when processing input",
        "Conversion failed!",
    ]
    summary = summarize_ffmpeg_errors(lines)
    assert summary == (
        "[mov,mp4,m4a,3gp,3g2,mj2] moov atom not found; in.mp4: Invalid data found when processing input"
    )
    assert len(summarize_ffmpeg_errors(["x" * 2000])) <= 401


async def test_progress_is_published_every_five_percent_or_five_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    published: list[float] = []

    class RecordingBus:
        async def publish(self, event: TranscodeProgress, **_options: float) -> None:
            published.append(event.percent)

    clock = [100.0]
    monkeypatch.setattr(events_module.time, "monotonic", lambda: clock[0])
    reporter = ProgressReporter(
        RecordingBus(),  # type: ignore[arg-type]
        video_id=1,
        generation=1,
        step_percent=5,
        interval_seconds=5,
    )

    async def feed(percent: float, seconds_later: float) -> None:
        clock[0] += seconds_later
        reporter(percent)
        await asyncio.sleep(0)  # let the publish task run

    for percent in (1, 2, 4.9, 5.0, 6, 9.9, 10.5):
        await feed(percent, 0.2)
    await feed(11, 5.1)  # slow encode: 5 s passed with < 5 % done
    await feed(11, 6)  # no progress at all: nothing to say
    await reporter.close()

    assert published == [5.0, 10.5, 11.0]
