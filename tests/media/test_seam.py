"""The aiortc seam: if an aiortc upgrade moves it, these fail with a clear message."""

from __future__ import annotations

import fractions
import queue

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.jitterbuffer import JitterFrame

from cloudcounter.media import seam, vp8
from cloudcounter.media.errors import SeamBroken


def test_aiortc_internals_are_where_the_seam_expects_them() -> None:
    # Fails with SeamBroken("aiortc/aioice moved the seam ...: <what>") after an upgrade.
    seam.check_seam()
    seam.install()


def test_a_moved_decoder_worker_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    seam.install()

    def moved(loop: object, input_q: object, output_q: object) -> None: ...

    monkeypatch.setattr(seam, "_original_decoder_worker", moved)
    with pytest.raises(SeamBroken, match="decoder_worker") as info:
        seam.check_seam()
    assert info.value.code == "media_seam_broken"
    assert "before upgrading" in str(info.value)


def test_another_aiortc_version_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiortc

    monkeypatch.setattr(aiortc, "__version__", "2.0.0")
    with pytest.raises(SeamBroken, match="aiortc is 2.0.0"):
        seam.check_seam()


def _vp8_frames(count: int) -> list[bytes]:
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = 320, 240, "yuv420p"
    enc.time_base = fractions.Fraction(1, 30)
    enc.gop_size = 1000
    out: list[bytes] = []
    for i in range(count):
        img = np.full((240, 320, 3), (i * 7) % 255, np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out += [bytes(p) for p in enc.encode(frame)]
    out += [bytes(p) for p in enc.encode(None)]
    return out


def test_vp8_keyframe_and_size_from_the_payload_header() -> None:
    frames = _vp8_frames(5)
    assert vp8.is_keyframe(frames[0])
    assert vp8.dimensions(frames[0]) == (320, 240)
    assert not any(vp8.is_keyframe(f) for f in frames[1:])
    assert vp8.dimensions(frames[1]) is None
    assert not vp8.is_keyframe(b"")


async def test_passthrough_receiver_yields_packets_others_still_decode() -> None:
    """Feed frames the way RTCRtpReceiver._handle_rtp_packet does, on both kinds of receiver."""
    import asyncio
    import threading

    from aiortc import rtcrtpreceiver
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters
    from aiortc.rtcrtpreceiver import RemoteStreamTrack

    seam.install()
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
    frames = _vp8_frames(3)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        receiver = pc.addTransceiver("video").receiver
        receiver._track = RemoteStreamTrack(kind="video")  # as setRemoteDescription does
        sunk: list[av.Packet] = []
        seam.passthrough(receiver, sunk.append)
        assert seam.is_passthrough(receiver)
        decoder_queue = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
        for i, data in enumerate(frames):
            decoder_queue.put((codec, JitterFrame(data=data, timestamp=i * 3000)))
        decoder_queue.put(None)  # the receiver stops: the track ends
        assert await receiver.track._queue.get() is None
    finally:
        await pc.close()
    assert [type(p) for p in sunk] == [av.Packet] * 3
    assert [p.pts for p in sunk] == [0, 3000, 6000]
    assert sunk[0].time_base == fractions.Fraction(1, 90000)
    assert [p.is_keyframe for p in sunk] == [True, False, False]
    assert bytes(sunk[1]) == frames[1]
    assert seam.arrival_time(sunk[0]) <= seam.arrival_time(sunk[2])

    # A receiver nobody registered still decodes, through aiortc's own worker.
    loop = asyncio.get_running_loop()
    track = RemoteStreamTrack(kind="video")
    input_q: queue.Queue[object] = queue.Queue()
    for i, data in enumerate(frames):
        input_q.put((codec, JitterFrame(data=data, timestamp=i * 3000)))
    input_q.put(None)
    worker = threading.Thread(
        target=rtcrtpreceiver.decoder_worker,
        args=(loop, input_q, track._queue, threading.Event()),
    )
    worker.start()
    decoded = []
    while (item := await track._queue.get()) is not None:
        decoded.append(item)
    worker.join()
    assert len(decoded) == 3 and all(isinstance(f, av.VideoFrame) for f in decoded)


async def test_host_addresses_scope_gathering_to_loopback() -> None:
    async def candidates(addresses: list[str] | None) -> set[str]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("audio")
        try:
            with seam.host_addresses(addresses):
                await pc.setLocalDescription(await pc.createOffer())
            return {
                line.split()[4]
                for line in pc.localDescription.sdp.splitlines()
                if line.startswith("a=candidate:")
            }
        finally:
            await pc.close()

    assert await candidates(["127.0.0.1"]) == {"127.0.0.1"}
    assert "127.0.0.1" not in await candidates(None)  # aioice's default, untouched


async def test_udp_receive_buffer_applies_to_new_ice_sockets() -> None:
    import socket

    import aioice.turn

    previous = aioice.turn.UDP_SOCKET_BUFFER_SIZE
    seam.set_udp_receive_buffer(1 << 20)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio")
        with seam.host_addresses(["127.0.0.1"]):
            await pc.setLocalDescription(await pc.createOffer())
        dtls = pc.getTransceivers()[0].receiver.transport
        protocols = dtls.transport.iceGatherer._connection._protocols
        sizes = [
            p.transport.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            for p in protocols
        ]
        assert sizes and all(size >= 1 << 20 for size in sizes)  # Linux doubles it
    finally:
        seam.set_udp_receive_buffer(previous)
        await pc.close()
