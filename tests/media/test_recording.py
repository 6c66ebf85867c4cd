"""Recordings: one WebM per participant from the forwarded packets, crash-safe."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import pytest

from cloudcounter.media.call import CallMedia
from cloudcounter.media.client import ClientPeer
from cloudcounter.media.errors import RecordingFailed
from cloudcounter.media.sources import EncodedFilePlayer, PatternVideoTrack, ToneAudioTrack
from cloudcounter.recordings.writer import RecordingWriter

from conftest import HERE, connect, wait_for

pytestmark = pytest.mark.integration


def read_packets(path: Path) -> dict[str, list[float]]:
    """Packet times (s) per stream type, as a player would demux them."""
    times: dict[str, list[float]] = {"audio": [], "video": []}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.size and packet.pts is not None:
                times[packet.stream.type].append(float(packet.pts * packet.time_base))
    return times


def decode_video(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(f.time) for f in container.decode(video=0) if f.time is not None]


async def test_each_participant_is_recorded_in_sync(
    make_call: Callable[..., CallMedia],
    make_peer: Callable[..., ClientPeer],
    vp8_clip: Path,
    tmp_path: Path,
) -> None:
    call = make_call()
    start = time.monotonic()
    paths = call.start_recording(tmp_path)
    player = EncodedFilePlayer(vp8_clip)
    customer = make_peer(audio=player.audio, video=player.video)
    agent = make_peer(audio=ToneAudioTrack(), video=PatternVideoTrack(320, 240))
    await connect(call, "customer", customer)
    await connect(call, "agent", agent)
    stats = call.stats()
    await wait_for(lambda: min(stats.from_customer.video_frames,
                               stats.from_agent.video_frames) >= 60, 30, "2 s of video each way")
    infos = await call.close()
    call_duration = time.monotonic() - start

    assert set(infos) == {"customer", "agent"}
    for role, info in infos.items():
        d = stats.from_customer if role == "customer" else stats.from_agent
        assert d.first_packet_at is not None and d.last_packet_at is not None
        assert info.path == paths[role] and info.path.exists()
        assert info.codecs == ("vp8", "opus")
        assert info.sha256 == hashlib.sha256(info.path.read_bytes()).hexdigest()
        assert info.size_bytes == info.path.stat().st_size
        # the file holds what arrived, timed by arrival on the call's clock
        assert abs(info.duration_s - (d.last_packet_at - d.first_packet_at)) < 0.05, (role, info)
        assert abs(info.start_s - (d.first_packet_at - call.origin)) < 0.05, (role, info)
        assert info.start_s + info.duration_s <= call_duration
        with av.open(str(info.path)) as container:
            kinds = sorted(s.type for s in container.streams)
            assert kinds == ["audio", "video"]
            assert container.duration is not None
            assert abs(container.duration / 1e6 - (info.start_s + info.duration_s)) < 0.1
        times = read_packets(info.path)
        assert len(times["video"]) == d.video_frames and len(times["audio"]) == d.audio_packets
        # Arrival times on one clock: the streams start and end together.
        assert abs(times["audio"][0] - times["video"][0]) < 0.5, (role, times["audio"][:3])
        assert abs(times["audio"][-1] - times["video"][-1]) < 0.5
        assert len(decode_video(info.path)) == len(times["video"])  # every frame decodes
    # Both files share the call's time origin (start_s above is measured from it).


async def test_unwritable_directory_is_reported_and_forwarding_goes_on(
    make_call: Callable[..., CallMedia],
    make_peer: Callable[..., ClientPeer],
    tmp_path: Path,
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    failures: list[tuple[str, RecordingFailed]] = []
    call = make_call()
    call.start_recording(not_a_dir / "recordings", on_failed=lambda r, e: failures.append((r, e)))
    customer = make_peer(audio=ToneAudioTrack(), video=PatternVideoTrack(320, 240))
    agent = make_peer(audio=ToneAudioTrack(), video=PatternVideoTrack(320, 240))
    await connect(call, "customer", customer)
    await connect(call, "agent", agent)
    await wait_for(lambda: len(failures) == 2, 5, "both recordings to fail")
    assert {role for role, _ in failures} == {"customer", "agent"}
    assert all(e.code == "recording_failed" for _, e in failures)
    before = agent.received.frames["video"]
    await wait_for(lambda: agent.received.frames["video"] > before + 20, 5, "forwarding")
    assert await call.close() == {}


async def test_disk_full_stops_the_recorder(tmp_path: Path) -> None:
    target = tmp_path / "full.webm"
    target.symlink_to("/dev/full")  # every write fails with ENOSPC
    failures: list[Exception] = []
    writer = RecordingWriter(target, origin=time.monotonic(), on_failed=failures.append)
    frame = bytes.fromhex("9002009d012a4001f000") + bytes(200)  # a VP8 key frame header
    for i in range(200):
        writer.write("audio", b"\xfc" + bytes(60), time.monotonic(), True)
        writer.write("video", frame, time.monotonic(), True)
        await asyncio.sleep(0.005)
    await wait_for(lambda: bool(failures), 5, "the ENOSPC report")
    assert await writer.close() is None
    assert "No space left" in str(failures[0]) or "ENOSPC" in repr(failures[0])


async def test_sigkill_mid_call_leaves_decodable_recordings(
    vp8_clip: Path, tmp_path: Path
) -> None:
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, str(HERE / "run_call.py"), str(tmp_path), str(vp8_clip)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        assert line.startswith("READY"), line
        ready_at = float(line.split()[1])
        written_at = ready_at
        while written_at < ready_at + 3.0:  # 3 s of media recorded (as the child reports)
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
            assert line.startswith("AT"), line
            written_at = float(line.split()[1])
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
        killed_at = written_at  # media up to here had reached the recorders
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    for role in ("customer", "agent"):
        path = tmp_path / f"killed-{role}.webm"
        times = read_packets(path)
        frames = decode_video(path)
        assert times["audio"] and frames, role
        # Clusters are flushed at least every second: little is lost at the kill.
        assert frames[-1] > killed_at - 1.6, (role, frames[-1], killed_at)
        assert times["audio"][-1] > killed_at - 1.6
