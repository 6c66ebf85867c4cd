"""Real aiortc peers on loopback through one CallMedia: encoded forwarding both ways."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import av
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender

from cloudcounter.media import seam
from cloudcounter.media.call import CallMedia
from cloudcounter.media.client import ClientPeer
from cloudcounter.media.errors import InvalidOffer, MediaStateError, UnsupportedCodec
from cloudcounter.media.sources import EncodedFilePlayer, PatternVideoTrack, ToneAudioTrack
from cloudcounter.media.tap import Tap

from conftest import LOOPBACK, connect, wait_for

pytestmark = pytest.mark.integration


async def test_media_flows_both_ways_and_a_late_agent_sees_video_within_2s(
    make_call: Callable[..., CallMedia], make_peer: Callable[..., ClientPeer]
) -> None:
    call = make_call()
    # The customer's encoder (aiortc's VP8) makes a key frame only on request:
    # the late agent's first picture proves the PLI reaches the customer.
    customer = make_peer(audio=ToneAudioTrack(), video=PatternVideoTrack())
    await connect(call, "customer", customer)
    await wait_for(lambda: call.stats().from_customer.video_frames > 30, 5, "customer video")

    agent = make_peer(audio=ToneAudioTrack(), video=PatternVideoTrack(320, 240))
    await connect(call, "agent", agent)
    await wait_for(lambda: agent.received.frames["video"] > 0, 2.0, "the agent's first frame")
    delay = agent.first_video_delay()
    assert delay is not None and delay < 2.0

    await wait_for(
        lambda: all(
            p.received.frames[k] >= 20 for p in (agent, customer) for k in ("audio", "video")
        ),
        5,
        "audio and video at both ends",
    )
    assert agent.received.video_size == (640, 480)  # decoded at the agent: the customer's
    assert customer.received.video_size == (320, 240)  # and the agent's, not re-encoded
    stats = call.stats()
    assert stats.keyframe_requests.get("to_customer", 0) >= 1
    assert stats.from_customer.forwarded_video > 0 and stats.from_agent.forwarded_audio > 0
    assert stats.tap_frames_decoded == 0  # no tap, no decoding on the hub


async def test_pre_encoded_file_is_forwarded(
    make_call: Callable[..., CallMedia],
    make_peer: Callable[..., ClientPeer],
    vp8_clip: Path,
) -> None:
    call = make_call()
    player = EncodedFilePlayer(vp8_clip)
    customer = make_peer(audio=player.audio, video=player.video)
    agent = make_peer(audio=ToneAudioTrack(), video=None, decode=False)
    await connect(call, "customer", customer)
    await connect(call, "agent", agent)
    await wait_for(lambda: agent.received.frames["video"] >= 30, 5, "30 frames at the agent")
    await wait_for(lambda: agent.received.frames["audio"] >= 30, 5, "audio at the agent")
    assert agent.received.keyframes >= 1
    assert customer.received.frames["video"] == 0  # the agent sends no video


async def test_downstream_pli_is_relayed_to_the_upstream_sender(
    make_call: Callable[..., CallMedia], make_peer: Callable[..., ClientPeer]
) -> None:
    call = make_call()
    customer = make_peer(audio=None, video=PatternVideoTrack(320, 240))
    agent = make_peer(audio=None, video=None)
    requests: list[int] = []
    video_sender = next(s for s in customer.pc.getSenders() if s.kind == "video")
    seam.on_keyframe_request(video_sender, lambda: requests.append(1))
    await connect(call, "customer", customer)
    await connect(call, "agent", agent)
    await wait_for(lambda: agent.received.frames["video"] > 5, 5, "video at the agent")
    await asyncio.sleep(0.6)  # past the throttle interval
    before = len(requests)
    receiver = next(r for r in agent.pc.getReceivers() if r.track.kind == "video")
    assert await seam.send_pli(receiver)
    await wait_for(lambda: len(requests) > before, 2, "the relayed PLI at the customer")


async def test_offer_without_vp8_is_refused_with_a_code(
    make_call: Callable[..., CallMedia],
) -> None:
    call = make_call()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver("video")
        transceiver.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("video").codecs if c.name == "H264"]
        )
        with seam.host_addresses(LOOPBACK):
            await pc.setLocalDescription(await pc.createOffer())
        with pytest.raises(UnsupportedCodec) as info:
            await call.answer("customer", pc.localDescription.sdp)
        assert info.value.code == "unsupported_codec"
        assert info.value.details["kind"] == "video"
    finally:
        await pc.close()
    with pytest.raises(InvalidOffer):
        await call.answer("customer", "v=0\r\n")
    # The leg can still be answered properly afterwards.
    assert call.leg_state("customer") is None


async def test_leg_answered_twice_or_after_close_is_refused(
    make_call: Callable[..., CallMedia], make_peer: Callable[..., ClientPeer]
) -> None:
    call = make_call()
    customer = make_peer(audio=ToneAudioTrack(), video=None)
    await connect(call, "customer", customer)
    with pytest.raises(MediaStateError):
        await call.answer("customer", await make_peer(audio=None, video=None).offer())
    await call.close()
    with pytest.raises(MediaStateError):
        await call.answer("agent", await make_peer(audio=None, video=None).offer())


async def test_tap_gets_decoded_frames_and_drops_the_oldest(
    make_call: Callable[..., CallMedia], make_peer: Callable[..., ClientPeer]
) -> None:
    call = make_call()
    customer = make_peer(audio=None, video=PatternVideoTrack(320, 240))
    await connect(call, "customer", customer)
    await wait_for(lambda: call.stats().from_customer.video_frames > 10, 5, "customer video")
    tap = call.add_tap(maxsize=3)
    frame = await asyncio.wait_for(tap.recv(), 3)
    assert isinstance(frame, av.VideoFrame) and (frame.width, frame.height) == (320, 240)
    # a consumer that does not keep up: it holds the 3 newest, the rest were dropped
    await wait_for(lambda: tap.offered > 10, 10, "frames offered to the tap")
    assert tap.dropped >= tap.offered - 4
    kept = [tap.get_nowait() for _ in range(5)]
    assert sum(f is not None for f in kept) == 3
    newest = kept[2]
    assert newest is not None and newest.pts is not None
    # a rate-limited tap sees a subset of the same frames (the rule itself, with its
    # clock, is tested in test_tap_rate_limit_uses_the_frames_times)
    before = tap.offered
    slow = call.add_tap(maxsize=1, max_fps=2)
    await wait_for(lambda: slow.offered >= 1 and tap.offered - before >= 20, 10, "slow tap")
    assert slow.offered < tap.offered - before
    tap.close()
    slow.close()
    decoded = call.stats().tap_frames_decoded
    await asyncio.sleep(0.3)
    assert call.stats().tap_frames_decoded == decoded  # no tap left: decoding stopped


def test_tap_rate_limit_uses_the_frames_times() -> None:
    """A tap with ``max_fps`` takes a frame only when 1/max_fps has passed since the last one
    it took, on the times it is given; the oldest frame goes when it is full."""
    tap = Tap(maxsize=2, max_fps=2, on_close=lambda t: None)
    frames = [av.VideoFrame(16, 16, "yuv420p") for _ in range(12)]
    for i, frame in enumerate(frames):  # 30 fps for 0.4 s, then a gap
        tap.offer(frame, now=100.0 + (i / 30 if i < 11 else 1.0))
    assert tap.offered == 2 and tap.dropped == 0  # t=100.0 and t=101.0
    assert tap.get_nowait() is frames[0] and tap.get_nowait() is frames[11]
    for i, frame in enumerate(frames[:3]):
        tap.offer(frame, now=200.0 + i)
    assert tap.offered == 5 and tap.dropped == 1
    assert [tap.get_nowait() for _ in range(3)] == [frames[1], frames[2], None]


async def test_peer_closing_ends_its_leg(
    make_call: Callable[..., CallMedia], make_peer: Callable[..., ClientPeer]
) -> None:
    ended: list[tuple[str, str]] = []
    call = make_call(on_ended=lambda role, reason: ended.append((role, reason.value)))
    customer = make_peer(audio=ToneAudioTrack(), video=None)
    agent = make_peer(audio=ToneAudioTrack(), video=None)
    await connect(call, "customer", customer)
    await connect(call, "agent", agent)
    await wait_for(lambda: agent.received.frames["audio"] > 5, 5, "audio at the agent")
    await agent.close()
    await wait_for(lambda: bool(ended), 5, "on_ended")
    assert ended == [("agent", "connection_closed")]
    await call.close()
    assert ended == [("agent", "connection_closed")]  # close() itself reports nothing
