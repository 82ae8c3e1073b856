"""The encode itself with real ffmpeg: layout, ladder, playlists, odd and broken uploads."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import m3u8
import pytest

from videoflix_transcoder.errors import TranscodeError
from videoflix_transcoder.pipeline import encode_video
from videoflix_transcoder.playlists import peak_bitrate, read_media_playlist
from videoflix_transcoder.settings import TranscoderSettings

pytestmark = pytest.mark.slow

SEGMENT = re.compile(r"^seg_[0-9]{5}\.ts$")


def ffprobe(path: Path, *args: str) -> dict:
    output = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", *args, str(path)],
        check=True,
        capture_output=True,
    ).stdout
    return json.loads(output)


def video_stream(path: Path) -> dict:
    streams = ffprobe(path, "-show_streams")["streams"]
    return next(s for s in streams if s["codec_type"] == "video")


def key_frame_times(path: Path) -> list[float]:
    frames = ffprobe(
        path, "-select_streams", "v:0", "-skip_frame", "nokey", "-show_entries", "frame=pts_time"
    )["frames"]
    return [round(float(f["pts_time"]), 2) for f in frames]


async def encode(
    tmp_path: Path, clip: Path, settings: TranscoderSettings, progress: list[float] | None = None
):
    out = tmp_path / "out"
    out.mkdir()
    result = await encode_video(
        source=clip,
        output_dir=out,
        generation=1,
        settings=settings,
        on_progress=progress.append if progress is not None else None,
    )
    return out, result


async def test_1080p_upload_gets_three_renditions_with_aligned_segments_and_honest_bandwidth(
    tmp_path: Path, make_clip: Callable[..., Path], make_settings: Callable[..., TranscoderSettings]
) -> None:
    clip = make_clip("hd.mp4", size="1920x1080", seconds=4, rate=30)
    settings = make_settings(TRANSCODER_SEGMENT_SECONDS="2")
    progress: list[float] = []

    out, result = await encode(tmp_path, clip, settings, progress)

    assert result.renditions == ["480p", "720p", "1080p"]
    assert (result.width, result.height) == (1920, 1080)
    assert result.duration_seconds == pytest.approx(4, abs=0.1)
    assert progress
    assert progress[-1] == pytest.approx(100, abs=3)

    master = m3u8.load(str(out / "master.m3u8"))
    variants = {p.uri: p.stream_info for p in master.playlists}
    assert list(variants) == ["480p/index.m3u8", "720p/index.m3u8", "1080p/index.m3u8"]
    expected_sizes = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
    segment_lists = []
    for name, size in expected_sizes.items():
        info = variants[f"{name}/index.m3u8"]
        assert info.resolution == size
        assert info.codecs.startswith("avc1.")
        assert "mp4a.40.2" in info.codecs
        segments = read_media_playlist(out / name / "index.m3u8")
        assert all(SEGMENT.match(s.uri) for s in segments)
        assert info.bandwidth >= peak_bitrate(segments, 2)
        assert info.average_bandwidth <= info.bandwidth
        segment_lists.append([round(s.duration, 2) for s in segments])
        stream = video_stream(out / name / segments[0].uri)
        assert (stream["width"], stream["height"]) == size
        assert stream["pix_fmt"] == "yuv420p"
        assert stream["codec_name"] == "h264"
    # Every rung is cut at the same times, and each segment starts with a key frame.
    assert segment_lists[0] == segment_lists[1] == segment_lists[2]
    assert len(segment_lists[0]) == 2
    first_keys = [key_frame_times(out / name / "seg_00001.ts")[0] for name in expected_sizes]
    assert len(set(first_keys)) == 1
    thumb = video_stream(out / "thumbnail.jpg")
    assert (thumb["width"], thumb["height"]) == (854, 480)


async def test_small_upload_gets_only_480p_at_its_own_size_without_upscaling(
    tmp_path: Path, make_clip: Callable[..., Path], settings: TranscoderSettings
) -> None:
    out, result = await encode(tmp_path, make_clip("small.mp4"), settings)

    assert result.renditions == ["480p"]
    assert sorted(p.name for p in out.iterdir()) == ["480p", "master.m3u8", "thumbnail.jpg"]
    segment = next((out / "480p").glob("seg_*.ts"))
    stream = video_stream(segment)
    assert (stream["width"], stream["height"]) == (320, 240)
    audio = ffprobe(segment, "-show_streams")["streams"]
    assert any(s["codec_type"] == "audio" and s["channels"] == 2 for s in audio)
    playlist = (out / "480p" / "index.m3u8").read_text()
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in playlist
    assert "#EXT-X-ENDLIST" in playlist
    assert "/" not in "".join(line for line in playlist.splitlines() if not line.startswith("#"))


ODD_UPLOADS = {
    "odd_dimensions": dict(size="321x241"),
    "rotated_phone_video": dict(size="640x360", output_args=("-metadata:s:v:0", "rotate=90")),
    "variable_frame_rate": dict(
        video_args=("-vf", "select='lt(n,10)+not(mod(n,3))'", "-fps_mode", "vfr"), rate=30
    ),
    "shorter_than_five_seconds": dict(seconds=0.6),
    "no_audio": dict(audio=None),
    "surround_audio": dict(audio="5.1"),
    "ten_bit_444": dict(video_args=("-pix_fmt", "yuv444p10le")),
}


@pytest.mark.parametrize("kind", ODD_UPLOADS)
async def test_odd_uploads_become_playable_hls(
    kind: str,
    tmp_path: Path,
    make_clip: Callable[..., Path],
    settings: TranscoderSettings,
) -> None:
    options = ODD_UPLOADS[kind]
    if kind == "rotated_phone_video":
        plain = make_clip("landscape.mp4", size="640x360")
        clip = plain.with_name("rotated.mp4")
        subprocess.run(
            [
                *("ffmpeg", "-loglevel", "error", "-y", "-i", str(plain), "-c", "copy"),
                *("-metadata:s:v:0", "rotate=90", str(clip)),
            ],
            check=True,
        )
    else:
        clip = make_clip(f"{kind}.mp4", **options)

    out, result = await encode(tmp_path, clip, settings)

    segment = next((out / "480p").glob("seg_*.ts"))
    stream = video_stream(segment)
    assert stream["pix_fmt"] == "yuv420p"
    assert stream["width"] % 2 == 0
    assert stream["height"] % 2 == 0
    assert (out / "thumbnail.jpg").stat().st_size > 0
    streams = ffprobe(segment, "-show_streams")["streams"]
    audio = [s for s in streams if s["codec_type"] == "audio"]
    if kind == "no_audio":
        assert audio == []
    else:
        assert [s["channels"] for s in audio] == [2]
    if kind == "rotated_phone_video":
        assert (result.width, result.height) == (360, 640)
        assert (stream["width"], stream["height"]) == (360, 640)
        thumb = video_stream(out / "thumbnail.jpg")
        assert thumb["height"] > thumb["width"]
    if kind == "odd_dimensions":
        assert (stream["width"], stream["height"]) == (320, 240)
    if kind == "shorter_than_five_seconds":
        assert result.duration_seconds < 1


async def test_truncated_upload_fails_permanently_with_a_clear_reason(
    tmp_path: Path, make_clip: Callable[..., Path], settings: TranscoderSettings
) -> None:
    whole = make_clip("faststart.mp4", seconds=6, output_args=("-movflags", "+faststart"))
    truncated = tmp_path / "truncated.mp4"
    data = whole.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])

    with pytest.raises(TranscodeError) as failure:
        await encode(tmp_path, truncated, settings)

    assert failure.value.permanent
    assert "truncated" in failure.value.reason


async def test_upload_cut_before_its_index_fails_as_unreadable(
    tmp_path: Path, make_clip: Callable[..., Path], settings: TranscoderSettings
) -> None:
    whole = make_clip("small.mp4")
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(whole.read_bytes()[:20_000])

    with pytest.raises(TranscodeError) as failure:
        await encode(tmp_path, truncated, settings)

    assert failure.value.permanent
    assert "not a readable video" in failure.value.reason
    assert "moov atom not found" in failure.value.reason


async def test_audio_only_upload_fails_because_it_has_no_video(
    tmp_path: Path, settings: TranscoderSettings
) -> None:
    audio = tmp_path / "song.m4a"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=duration=1", str(audio)],
        check=True,
    )

    with pytest.raises(TranscodeError) as failure:
        await encode(tmp_path, audio, settings)

    assert failure.value.permanent
    assert "no video stream" in failure.value.reason
