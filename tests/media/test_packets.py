"""Packet-level forwarding (``forwarding="packet"``): real aiortc peers on loopback.

What each test checks is what the far peer or a decoder sees: the agent's receiver gets
the customer's RTP with the agent leg's SSRC and payload type and decodes it; a NACK is
answered; a REMB reaches the customer's sender; the recording decodes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci, unpack_remb_fci

from cloudcounter.hub.settings import SettingsError, media_forwarding
from cloudcounter.media import packets
from cloudcounter.media.call import CallMedia
from cloudcounter.media.client import ClientPeer
from cloudcounter.media.sources import EncodedFilePlayer, PatternVideoTrack, ToneAudioTrack

from conftest import connect, wait_for

pytestmark = pytest.mark.integration


def _transceiver(pc: Any, kind: str) -> tuple[RTCRtpSender, RTCRtpReceiver]:
    for transceiver in pc.getTransceivers():
        if transceiver.kind == kind:
            return transceiver.sender, transceiver.receiver
    raise AssertionError(f"no {kind} transceiver")


def _video(pc: Any) -> tuple[RTCRtpSender, RTCRtpReceiver]:
    return _transceiver(pc, "video")


class SeenRtp:
    """The RTP packets a peer's video receiver gets, as they arrive (decrypted)."""

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        self.packets: list[tuple[int, int, int, int]] = []  # ssrc, payload type, seq, ts
        self.rtx_of: list[int] = []  # original sequence numbers carried in RTX packets
        original = receiver._handle_rtp_packet

        async def handle(packet: Any, arrival_time_ms: int) -> None:
            self.packets.append((packet.ssrc, packet.payload_type, packet.sequence_number,
                                 packet.timestamp))
            if self.main_ssrc is not None and packet.ssrc != self.main_ssrc \
                    and len(packet.payload) >= 2:
                self.rtx_of.append(int.from_bytes(packet.payload[:2], "big"))
            await original(packet, arrival_time_ms)

        self.main_ssrc: int | None = None
        receiver._handle_rtp_packet = handle  # type: ignore[method-assign]


class SeenRemb:
    """The REMB bitrates a sender receives (RTCP from its peer)."""

    def __init__(self, sender: RTCRtpSender) -> None:
        self.bitrates: list[int] = []
        original = sender._handle_rtcp_packet

        async def handle(packet: Any) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                self.bitrates.append(unpack_remb_fci(packet.fci)[0])
            await original(packet)

        sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


def test_the_setting_defaults_to_frame_and_refuses_anything_else() -> None:
    assert media_forwarding({}) == "frame"  # until the soak and capacity runs (docs)
    assert media_forwarding({"CLOUDCOUNTER_MEDIA_FORWARDING": "Frame"}) == "frame"
    with pytest.raises(SettingsError):
        media_forwarding({"CLOUDCOUNTER_MEDIA_FORWARDING": "sfu"})


def test_the_aiortc_internals_are_where_packets_expects_them() -> None:
    packets.check()


def test_rembs_are_coalesced_but_a_fall_goes_at_once() -> None:
    relay = packets.RembRelay(interval_s=0.25, drop=0.9)
    assert relay.offer(1_000_000, 0.0)  # the first
    # an overused link's receiver sends one with every packet: held back ...
    assert not any(relay.offer(1_000_000 - i, 0.01 * i) for i in range(1, 20))
    assert relay.offer(950_000, 0.25)  # ... until the interval has passed
    assert relay.offer(800_000, 0.26)  # a fall of more than 10 %: at once
    assert not relay.offer(2_000_000, 0.30)  # a rise waits
    assert relay.offer(2_000_000, 0.51)
    assert (relay.relayed, relay.coalesced) == (4, 20)


def test_ntp_now_is_aiortcs_clock() -> None:
    from aiortc import clock
    before = clock.current_ntp_time()
    now = packets.ntp_now()
    after = clock.current_ntp_time()
    assert before - 2**22 <= now <= after + 2**22  # within a millisecond


def test_vp8_descriptors_and_frame_assembly() -> None:
    # descriptor: X=1, I=1 with a 15-bit picture id, S=1 PID=0 → 4 bytes
    key = bytes([0x90, 0x80, 0x80, 0x01]) + bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + b"k" * 4
    assert packets.vp8_descriptor_size(key) == 4
    assert packets.is_frame_start(key) and packets.is_keyframe_start(key)
    delta = bytes([0x10, 0x01]) + b"d" * 9
    assert packets.is_frame_start(delta) and not packets.is_keyframe_start(delta)
    middle = bytes([0x00]) + b"m" * 5
    assert not packets.is_frame_start(middle)

    assembler = packets.FrameAssembler(window=1000)
    assert assembler.add(1, 100, True, delta) == []  # no key frame yet
    assert assembler.add(3, 200, True, middle) == []  # out of order: waits for its start
    assert assembler.add(2, 200, False, key) == [(200, key[4:] + middle[1:])]
    assert assembler.add(4, 300, True, delta) == [(300, delta[1:])]
    assert assembler.add(6, 400, True, delta) == []  # waits for packet 5 (a NACK)
    assert assembler.add(5, 350, True, delta) == [(350, delta[1:]), (400, delta[1:])]
    assert assembler.add(5, 350, True, delta) == []  # a duplicate, too late
    assert assembler.add(8, 500, True, delta) == []  # packet 7 never comes:
    assert assembler.add(9, 1600, True, delta) == []  # given up once 1000 ticks stale,
    assert assembler.broken  # and what follows is dropped
    assert assembler.add(10, 1700, True, key) == [(1700, key[4:])]  # until a key frame
    assert not assembler.broken
    assert assembler.dropped == 3  # 100, 500 and 1600


async def test_packets_are_forwarded_with_the_other_legs_headers_and_decode(
    make_call: Callable[..., CallMedia], make_peer: Callable[..., ClientPeer]
) -> None:
    call = make_call(forwarding="packet")
    customer = make_peer(audio=ToneAudioTrack(), video=PatternVideoTrack())
    agent = make_peer(audio=ToneAudioTrack(), video=PatternVideoTrack(320, 240))
    seen = SeenRtp(_video(agent.pc)[1])
    await connect(call, "customer", customer)
    await connect(call, "agent", agent)
    await wait_for(lambda: all(p.received.frames[k] >= 30 for p in (agent, customer)
                               for k in ("audio", "video")), 20, "audio and video both ways")

    assert agent.received.video_size == (640, 480)  # decoded by the agent's aiortc
    assert customer.received.video_size == (320, 240)
    hub_sender, _ = _video(call._legs["agent"].pc)
    customer_sender, _ = _video(customer.pc)
    vp8 = call._legs["agent"].outlets["video"].payload_type
    media = [(ssrc, seq) for ssrc, pt, seq, _ in seen.packets if pt == vp8]
    assert {ssrc for ssrc, _ in media} == {hub_sender._ssrc} != {customer_sender._ssrc}
    seqs = [seq for _, seq in media]
    steps = [(b - a) & 0xFFFF for a, b in zip(seqs, seqs[1:], strict=False)]
    assert steps.count(1) >= 0.95 * len(steps)  # one rewritten sequence
    stats = call.stats()
    assert stats.from_customer.forwarded_video >= 30 and stats.from_agent.forwarded_audio >= 30
    assert stats.tap_frames_decoded == 0
    # no jitter buffer: the hub's receiver never re-assembled a frame
    _, hub_receiver = _video(call._legs["customer"].pc)
    assert hub_receiver._RTCRtpReceiver__jitter_buffer._origin is None  # type: ignore[attr-defined]


async def test_a_nack_is_answered_from_the_sent_history(
    make_call: Callable[..., CallMedia], make_peer: Callable[..., ClientPeer]
) -> None:
    call = make_call(forwarding="packet")
    customer = make_peer(audio=ToneAudioTrack(), video=PatternVideoTrack())
    agent = make_peer(audio=ToneAudioTrack(), video=PatternVideoTrack(320, 240))
    agent_receiver = _video(agent.pc)[1]
    seen = SeenRtp(agent_receiver)
    await connect(call, "customer", customer)
    await connect(call, "agent", agent)
    await wait_for(lambda: agent.received.frames["video"] >= 10, 20, "video at the agent")
    hub_sender, _ = _video(call._legs["agent"].pc)
    seen.main_ssrc = hub_sender._ssrc
    lost = seen.packets[-3][2]
    await agent_receiver._send_rtcp_nack(hub_sender._ssrc, [lost])
    await wait_for(lambda: lost in seen.rtx_of, 10, "the retransmission of the NACKed packet")


async def test_audio_lost_on_the_customers_link_reaches_the_agent_without_a_gap(
    make_call: Callable[..., CallMedia], make_peer: Callable[..., ClientPeer]
) -> None:
    """Audio is never retransmitted: the hub closes the gap a packet lost upstream leaves in
    the numbers (the timestamps keep it, for the decoder to conceal), so the agent's jitter
    buffer does not hold back the packets behind it."""
    call = make_call(forwarding="packet")
    customer = make_peer(audio=ToneAudioTrack(), video=PatternVideoTrack())
    agent = make_peer(audio=ToneAudioTrack(), video=PatternVideoTrack(320, 240))
    seen = SeenRtp(_transceiver(agent.pc, "audio")[1])
    await connect(call, "customer", customer)
    await connect(call, "agent", agent)
    await wait_for(lambda: agent.received.frames["audio"] >= 10, 20, "audio at the agent")
    _, hub_receiver = _transceiver(call._legs["customer"].pc, "audio")
    handle = hub_receiver._handle_rtp_packet
    arrived = [0]

    async def lossy(packet: Any, arrival_time_ms: int) -> None:
        arrived[0] += 1
        if arrived[0] % 7:  # every 7th packet lost on the customer's link
            await handle(packet, arrival_time_ms)

    hub_receiver._handle_rtp_packet = lossy  # type: ignore[method-assign]
    start = len(seen.packets)
    frames0 = agent.received.frames["audio"]
    forwarded0 = call.stats().from_customer.forwarded_audio
    await wait_for(lambda: arrived[0] >= 140, 20, "140 audio packets over the lossy link")
    forwarded = call.stats().from_customer.forwarded_audio - forwarded0
    await wait_for(lambda: agent.received.frames["audio"] - frames0 >= 0.9 * forwarded, 20,
                   "the agent playing what the hub forwarded")
    after = seen.packets[start:]
    seqs = [seq for _, _, seq, _ in after]
    steps = [(b - a) & 0xFFFF for a, b in zip(seqs, seqs[1:], strict=False)]
    assert steps and steps.count(1) >= 0.99 * len(steps), steps  # no gap in the numbers
    ts_steps = {(b[3] - a[3]) & 0xFFFFFFFF for a, b in zip(after, after[1:], strict=False)}
    assert 2 * 960 in ts_steps  # ... but the lost 20 ms are in the timestamps
    assert call._legs["agent"].outlets["audio"].late == 0


async def test_the_agents_remb_reaches_the_customers_sender(
    make_call: Callable[..., CallMedia], make_peer: Callable[..., ClientPeer]
) -> None:
    call = make_call(forwarding="packet")
    customer = make_peer(audio=ToneAudioTrack(), video=PatternVideoTrack())
    agent = make_peer(audio=ToneAudioTrack(), video=PatternVideoTrack(320, 240))
    customer_sender = _video(customer.pc)[0]
    at_customer = SeenRemb(customer_sender)
    agent_receiver = _video(agent.pc)[1]
    sent_by_agent: list[int] = []
    original_send = agent_receiver._send_rtcp

    async def send_rtcp(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            sent_by_agent.append(unpack_remb_fci(packet.fci)[0])
        await original_send(packet)

    agent_receiver._send_rtcp = send_rtcp  # type: ignore[method-assign]
    await connect(call, "customer", customer)
    await connect(call, "agent", agent)
    await wait_for(lambda: agent.received.frames["video"] >= 10, 20, "video at the agent")
    hub_sender, _ = _video(call._legs["agent"].pc)
    rtcp_ssrc = agent_receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
    await send_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0,
                                   fci=pack_remb_fci(150_000, [hub_sender._ssrc])))
    await wait_for(lambda: 150_000 in at_customer.bitrates, 10, "the REMB at the customer")
    encoder = customer_sender._RTCRtpSender__encoder  # type: ignore[attr-defined]
    assert encoder is not None and hasattr(encoder, "target_bitrate")
    # every REMB the customer got is one the agent sent: the hub adds no estimate of its own
    assert set(at_customer.bitrates) <= set(sent_by_agent)
    assert call.stats().remb_relayed.get("remb_to_customer", 0) >= 1


async def test_recordings_and_the_tap_get_frames_off_the_loop(
    make_call: Callable[..., CallMedia],
    make_peer: Callable[..., ClientPeer],
    vp8_clip: Path,
    tmp_path: Path,
) -> None:
    call = make_call(forwarding="packet")
    call.start_recording(tmp_path)
    tap = call.add_tap(maxsize=2, max_fps=5)
    player = EncodedFilePlayer(vp8_clip)
    customer = make_peer(audio=player.audio, video=player.video)
    agent = make_peer(audio=ToneAudioTrack(), video=PatternVideoTrack(320, 240))
    await connect(call, "customer", customer)
    await connect(call, "agent", agent)
    stats = call.stats()
    await wait_for(lambda: min(stats.from_customer.video_frames,
                               stats.from_agent.video_frames) >= 60, 30, "2 s of video each way")
    frame = await tap.recv()
    assert isinstance(frame, av.VideoFrame) and (frame.width, frame.height) == (640, 480)
    tap.close()
    infos = await call.close()
    assert set(infos) == {"customer", "agent"}
    for role, size in (("customer", (640, 480)), ("agent", (320, 240))):
        with av.open(str(infos[role].path)) as container:  # type: ignore[index]
            frames = list(container.decode(video=0))
        assert len(frames) >= 50, role
        assert (frames[0].width, frames[0].height) == size
