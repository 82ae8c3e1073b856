"""What streaming counts of the media it sends: bytes per kind, and the body cache's hits and
misses (a miss is a GET whose bytes had to be read from the file), as `/metrics` shows them."""

from __future__ import annotations

from videoflix_testing.metrics import Scrape, scrape

SEGMENT = "480p/seg_00000.ts"


def lookups(before: Scrape, after: Scrape, kind: str, result: str) -> float:
    name = "videoflix_streaming_body_cache_lookups_total"
    labels = {"kind": kind, "result": result}
    return after.value(name, labels) - before.value(name, labels)


def sent(before: Scrape, after: Scrape, kind: str) -> float:
    name = "videoflix_streaming_sent_bytes_total"
    return after.value(name, {"kind": kind}) - before.value(name, {"kind": kind})


def test_bytes_sent_and_body_cache_hits_and_misses_are_counted(
    client, streaming_server, auth, make_video
):
    video = make_video(71)  # nobody asked for its files yet: not in memory
    segment = video.file(SEGMENT).read_bytes()
    thumbnail = video.file("thumbnail.jpg").read_bytes()
    base = f"/api/video/{video.video_id}"
    before = scrape(streaming_server.url)

    first = client.get(f"{base}/{SEGMENT}", headers=auth)  # read from the file: a miss
    assert first.content == segment
    assert client.get(f"{base}/{SEGMENT}", headers=auth).content == segment  # a hit
    ranged = client.get(f"{base}/{SEGMENT}", headers={**auth, "Range": "bytes=0-99"})
    assert ranged.status_code == 206  # from memory too: a hit
    etag = first.headers["etag"]
    assert client.head(f"{base}/{SEGMENT}", headers=auth).status_code == 200  # no bytes
    not_modified = client.get(f"{base}/{SEGMENT}", headers={**auth, "If-None-Match": etag})
    assert not_modified.status_code == 304  # no bytes, no lookup
    assert client.get(f"{base}/thumbnail.jpg").content == thumbnail  # a miss
    assert client.get(f"{base}/thumbnail.jpg").content == thumbnail  # a hit
    master = client.get(f"{base}/master.m3u8", headers=auth)
    assert master.status_code == 200

    after = scrape(streaming_server.url)
    assert lookups(before, after, "segment", "miss") == 1
    assert lookups(before, after, "segment", "hit") == 2
    assert lookups(before, after, "thumbnail", "miss") == 1
    assert lookups(before, after, "thumbnail", "hit") == 1
    assert sent(before, after, "segment") == 2 * len(segment) + 100
    assert sent(before, after, "thumbnail") == 2 * len(thumbnail)
    assert sent(before, after, "playlist") == len(master.content)
    assert after.value("videoflix_streaming_body_cache_bytes") >= len(segment) + len(thumbnail)


def test_every_media_series_is_exported_from_the_start(client):
    metrics = Scrape(client.get("/metrics").text)
    for kind in ("segment", "thumbnail"):
        for result in ("hit", "miss"):
            labels = {"kind": kind, "result": result}
            assert metrics.has("videoflix_streaming_body_cache_lookups_total", labels)
    for kind in ("playlist", "segment", "thumbnail"):
        assert metrics.has("videoflix_streaming_sent_bytes_total", {"kind": kind})
