"""One call's media: the customer leg, the agent leg and encoded forwarding between them.

::

    customer ──▶ customer leg ─┬─ PacketTrack ─▶ agent leg ──▶ agent
                               ├─ recorder (customer.webm)
                               └─ TapDecoder ─▶ taps (decoded customer video)
    customer ◀── customer leg ◀─ PacketTrack ─┬─ agent leg ◀── agent
                                              └─ recorder (agent.webm)

Each leg is an aiortc ``RTCPeerConnection`` whose receivers yield encoded
``av.Packet``s (see :mod:`cloudcounter.media.seam`); one pump task per incoming
track passes each packet to the other leg's :class:`PacketTrack`, to the
participant's recorder and, for the customer's video, to the tap decoder.
Nothing decodes or encodes on the forwarding path.

That is ``forwarding="frame"`` (``CLOUDCOUNTER_MEDIA_FORWARDING=frame``, the default).
``packet`` passes RTP packets instead, headers rewritten, without re-assembling frames;
the recorders and the tap get frames depacketized on a thread of their own
(:mod:`cloudcounter.media.packets`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp

from cloudcounter.media.modes import MEDIA_FORWARDING_MODES, media_forwarding
from cloudcounter.recordings.writer import RecordingInfo, RecordingWriter

from . import packets, seam, vp8
from .errors import InvalidOffer, MediaStateError, RecordingFailed, UnsupportedCodec
from .health import LegFlow
from .keyframes import KeyframeThrottle
from .sdp import check_complete, parse_offer
from .tap import Tap, TapDecoder
from .tracks import PacketTrack

logger = logging.getLogger(__name__)

Role = Literal["customer", "agent"]
ROLES: tuple[Role, Role] = ("customer", "agent")
OTHER: dict[Role, Role] = {"customer": "agent", "agent": "customer"}
# The only codecs either leg negotiates: both legs must agree for packets to pass.
CODECS = {"audio": ("audio/opus",), "video": ("video/vp8", "video/rtx")}
REQUIRED = {"audio": "opus", "video": "vp8"}

IceServers = Sequence[RTCIceServer | Mapping[str, Any]]


class EndReason(str, Enum):
    """Why a leg ended on its own (the hub maps it onto the call's end reason)."""

    ICE_FAILED = "ice_failed"  # never connected
    CONNECTION_LOST = "connection_lost"  # connected, then ICE consent expired (peer gone)
    # The transport closed: the peer closed DTLS (hang-up without signalling) or
    # its port vanished (ICMP port unreachable, e.g. the app was killed).
    CONNECTION_CLOSED = "connection_closed"


class LegState(str, Enum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ENDED = "ended"


@dataclass
class DirectionStats:
    """Packets from one participant, as received and as forwarded to the other."""

    audio_packets: int = 0
    video_frames: int = 0
    video_keyframes: int = 0
    forwarded_audio: int = 0
    forwarded_video: int = 0
    dropped_video: int = 0
    broken_video: int = 0  # not whole (a receive buffer's leftovers), and what followed
    first_packet_at: float | None = None
    last_packet_at: float | None = None  # arrival (monotonic) of the latest packet
    last_video_at: float | None = None  # ... and of the latest video frame


@dataclass
class CallMediaStats:
    from_customer: DirectionStats = field(default_factory=DirectionStats)
    from_agent: DirectionStats = field(default_factory=DirectionStats)
    keyframe_requests: dict[str, int] = field(default_factory=dict)
    tap_frames_decoded: int = 0
    remb_relayed: dict[str, int] = field(default_factory=dict)  # packet forwarding
    last_remb_bps: dict[str, int] = field(default_factory=dict)  # relayed, per upstream
    remb_coalesced: dict[str, int] = field(default_factory=dict)  # heard, not relayed


def ice_configuration(ice_servers: IceServers, relay_only: bool = False) -> RTCConfiguration:
    """An explicit server list: ``[]`` means no STUN/TURN at all (aiortc's default is Google's).
    ``relay_only``: gather and use relay (TURN) candidates only (``iceTransportPolicy:
    "relay"``), as a client behind a firewall that lets nothing but its TURN server out."""
    servers = []
    for server in ice_servers:
        if isinstance(server, RTCIceServer):
            servers.append(server)
        else:
            servers.append(
                RTCIceServer(
                    urls=server["urls"],
                    username=server.get("username"),
                    credential=server.get("credential"),
                )
            )
    policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)


def check_offer(offer_sdp: str) -> set[str]:
    """The media kinds of an offer; raises :class:`InvalidOffer` if it is malformed
    (checked strictly before aiortc parses it: :func:`cloudcounter.media.sdp.validate_offer`)
    and :class:`UnsupportedCodec` if a kind lacks its codec (VP8, Opus)."""
    offer = parse_offer(offer_sdp)
    try:
        description = aiortc_sdp.SessionDescription.parse(offer_sdp)
    except Exception as exc:  # aiortc raises ValueError, KeyError, IndexError...
        raise InvalidOffer(f"cannot parse the SDP offer: {exc}") from exc
    kinds: set[str] = set()
    for media in description.media:
        if media.kind not in REQUIRED or media.port == 0:
            continue
        names = {codec.name.lower() for codec in media.rtp.codecs}
        if REQUIRED[media.kind] not in names:
            raise UnsupportedCodec(
                f"the offer's {media.kind} has none of the hub's codecs "
                f"({REQUIRED[media.kind]}); offered: {sorted(names) or 'none'}",
                kind=media.kind,
                offered=sorted(names),
            )
        kinds.add(media.kind)
    if not kinds:
        raise InvalidOffer("the offer has neither audio nor video")
    check_complete(offer)  # after the codecs: "no VP8" says more than "no fingerprint"
    return kinds


def _started(track: PacketTrack) -> Callable[[], bool]:
    """Whether the sender of ``track`` runs (it read the track once)."""
    return lambda: track.started


class _Leg:
    def __init__(self, role: Role, pc: RTCPeerConnection, kinds: set[str]) -> None:
        self.role = role
        self.pc = pc
        self.kinds = kinds  # what the participant's offer sends
        self.answered_at = time.monotonic()
        self.state = LegState.NEW
        self.outgoing: dict[str, PacketTrack] = {}
        self.outlets: dict[str, packets.Outlet] = {}  # packet forwarding
        self.receivers: dict[str, RTCRtpReceiver] = {}
        self.throttle = KeyframeThrottle()
        self.ended_reason: EndReason | None = None


class _Monitor:
    """A receive-only peer watching one participant: a team lead's silent monitoring (one
    per participant watched). Its two senders carry that participant's audio and video."""

    def __init__(self, monitor_id: str, role: Role, pc: RTCPeerConnection) -> None:
        self.id = monitor_id
        self.role = role
        self.pc = pc
        self.outgoing: dict[tuple[Role, str], PacketTrack] = {}
        self.outlets: dict[tuple[Role, str], packets.Outlet] = {}  # packet forwarding


#: the sections of a monitor's offer, in order
MONITOR_KINDS = ("audio", "video")


class CallMedia:
    """Both legs of one call. Create one per call on the event loop; ``close()`` it.

    :param ice_servers: STUN/TURN servers from the settings (dicts with ``urls``,
        ``username``, ``credential``, or ``RTCIceServer``); ``[]`` in tests. Never
        ``None``: aiortc would fall back to a public STUN server.
    :param host_addresses: the addresses to gather host candidates on
        (``settings.media_host_addresses``; 127.0.0.1 is allowed). ``None`` keeps
        aioice's default (every interface except loopback).
    :param on_ended: ``on_ended(role, reason)`` when a leg ends on its own
        (ICE failure, consent expiry, the peer closing); the hub then ends the
        call and calls ``close()``. Called at most once per leg, never after ``close()``.
    :param origin: ``time.monotonic()`` at the call's start, the recordings' time origin.
    :param forwarding: ``"frame"`` or ``"packet"``; ``None`` reads
        ``CLOUDCOUNTER_MEDIA_FORWARDING`` (:func:`cloudcounter.media.modes.media_forwarding`).
    """

    def __init__(
        self,
        *,
        call_id: str,
        ice_servers: IceServers,
        host_addresses: Sequence[str] | None,
        on_ended: Callable[[Role, EndReason], None] | None = None,
        origin: float | None = None,
        queue_size: int = 30,  # per outgoing track: ~1 s of video; beyond, drop and resync
        forwarding: str | None = None,
    ) -> None:
        seam.install()
        self.forwarding = media_forwarding() if forwarding is None else forwarding
        if self.forwarding not in MEDIA_FORWARDING_MODES:
            raise ValueError(f"forwarding must be one of {MEDIA_FORWARDING_MODES}")
        self._packet_mode = self.forwarding == "packet"
        self._consumer: packets.PacketConsumer | None = None
        self.call_id = call_id
        self.origin = time.monotonic() if origin is None else origin
        self._config_servers = list(ice_servers)
        self._host_addresses = list(host_addresses) if host_addresses is not None else None
        self._on_ended = on_ended
        self._queue_size = queue_size
        self._legs: dict[Role, _Leg] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._remb_relays: dict[str, packets.RembRelay] = {}  # per upstream (packet mode)
        self._recorders: dict[Role, RecordingWriter] = {}
        self._recording_infos: dict[Role, RecordingInfo] = {}
        self._on_recording_failed: Callable[[Role, RecordingFailed], None] | None = None
        self._tap_decoder: TapDecoder | None = None
        self._stats = CallMediaStats()
        self._closed = False
        self._monitors: dict[str, _Monitor] = {}

    # -- signalling ----------------------------------------------------------------

    async def answer(self, role: Role, offer_sdp: str) -> str:
        """Answer a complete (non-trickle) offer for ``role``'s leg; returns the answer SDP.

        The answer carries all the hub's candidates. Raises
        :class:`UnsupportedCodec` (code ``unsupported_codec``) when the offer's
        audio lacks Opus or its video lacks VP8, :class:`InvalidOffer`, or
        :class:`MediaStateError` when the call is closed or the leg was answered.
        """
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        if self._closed:
            raise MediaStateError("the call's media is closed")
        if role in self._legs:
            raise MediaStateError(f"the {role} leg was already answered")
        kinds = check_offer(offer_sdp)

        pc = RTCPeerConnection(ice_configuration(self._config_servers))
        leg = _Leg(role, pc, kinds)
        self._legs[role] = leg
        try:
            pc.on("track", lambda track: self._on_track(leg, track))
            pc.on("connectionstatechange", lambda: self._on_connection_state(leg))
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            for transceiver in pc.getTransceivers():
                kind = transceiver.kind
                caps = RTCRtpSender.getCapabilities(kind)
                transceiver.setCodecPreferences(
                    [c for c in caps.codecs if c.mimeType.lower() in CODECS[kind]]
                )
                track = PacketTrack(
                    kind,
                    maxsize=self._queue_size,
                    on_start=self._starter(leg, kind),
                    on_need_keyframe=lambda: self.request_keyframe(OTHER[role]),
                )
                sender = pc.addTrack(track)
                leg.outgoing[kind] = track
                if self._packet_mode:
                    leg.outlets[kind] = packets.Outlet(
                        sender, kind, _started(track),
                        on_need_keyframe=lambda: self.request_keyframe(OTHER[role]))
                if kind == "video":
                    seam.on_keyframe_request(
                        sender, lambda: self._relay_keyframe_request(role)
                    )
                    if self._packet_mode:
                        packets.on_remb(sender, lambda bitrate: self._relay_remb(role, bitrate))
            with seam.host_addresses(self._host_addresses):
                answer = await pc.createAnswer()
                await pc.setLocalDescription(answer)
            if self._closed:
                raise MediaStateError("the call's media was closed during the answer")
            leg.state = LegState.CONNECTING
            return pc.localDescription.sdp
        except (MediaStateError, asyncio.CancelledError):
            self._legs.pop(role, None)
            await self._close_leg(leg)
            raise
        except Exception as exc:  # aiortc choked on the client's offer: the offer's fault
            self._legs.pop(role, None)
            await self._close_leg(leg)
            logger.debug("call %s: %s offer not answerable", self.call_id, role, exc_info=True)
            raise InvalidOffer(f"the offer cannot be answered ({type(exc).__name__})") from None
        except BaseException:
            self._legs.pop(role, None)
            await self._close_leg(leg)
            raise

    async def reset_leg(self, role: Role) -> bool:
        """Close ``role``'s leg so that the participant can offer again (its browser lost
        its peer connection). The other leg and both recordings go on; packets of the new
        leg flow into the same outgoing tracks and files. Returns whether a leg was closed."""
        leg = self._legs.pop(role, None)
        if leg is None:
            return False
        await self._close_leg(leg)
        return True

    # -- silent monitoring ---------------------------------------------------------

    async def add_monitor(self, monitor_id: str, role: Role, offer_sdp: str) -> str:
        """Answer a monitor's offer to watch ``role``: two ``recvonly`` sections, audio then
        video, fed the very packets ``role`` sends (nothing decoded or re-encoded); neither
        participant sees the monitor. A lead watching both participants opens two monitors
        (ids distinct). Returns the answer SDP."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        if self._closed:
            raise MediaStateError("the call's media is closed")
        if monitor_id in self._monitors:
            raise MediaStateError(f"monitor {monitor_id} is already watching")
        check_complete(parse_offer(offer_sdp))
        try:
            description = aiortc_sdp.SessionDescription.parse(offer_sdp)
        except Exception as exc:  # aiortc raises ValueError, KeyError, IndexError...
            raise InvalidOffer(f"cannot parse the SDP offer: {exc}") from exc
        kinds = tuple(m.kind for m in description.media)
        if kinds != MONITOR_KINDS or any(m.direction not in ("recvonly", None)
                                         for m in description.media):
            raise InvalidOffer("a monitor offers two recvonly sections: audio, then video")
        pc = RTCPeerConnection(ice_configuration(self._config_servers))
        mon = _Monitor(monitor_id, role, pc)
        self._monitors[monitor_id] = mon
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            for transceiver in pc.getTransceivers():
                kind = transceiver.kind
                caps = RTCRtpSender.getCapabilities(kind)
                transceiver.setCodecPreferences(
                    [c for c in caps.codecs if c.mimeType.lower() in CODECS[kind]])

                def keyframe() -> None:
                    self.request_keyframe(role)
                track = PacketTrack(kind, maxsize=self._queue_size,
                                    on_start=keyframe if kind == "video" else None,
                                    on_need_keyframe=keyframe)
                sender = pc.addTrack(track)
                mon.outgoing[(role, kind)] = track
                if self._packet_mode:
                    mon.outlets[(role, kind)] = packets.Outlet(
                        sender, kind, _started(track),
                        on_need_keyframe=keyframe)
            with seam.host_addresses(self._host_addresses):
                answer = await pc.createAnswer()
                await pc.setLocalDescription(answer)
            return pc.localDescription.sdp
        except Exception as exc:
            self._monitors.pop(monitor_id, None)
            await self._close_monitor(mon)
            if isinstance(exc, (MediaStateError, InvalidOffer, asyncio.CancelledError)):
                raise
            logger.debug("call %s: monitor offer not answerable", self.call_id, exc_info=True)
            raise InvalidOffer(f"the offer cannot be answered ({type(exc).__name__})") from None

    async def remove_monitor(self, monitor_id: str) -> bool:
        mon = self._monitors.pop(monitor_id, None)
        if mon is None:
            return False
        await self._close_monitor(mon)
        return True

    @property
    def monitors(self) -> list[str]:
        return list(self._monitors)

    def monitor_sent(self, monitor_id: str) -> dict[str, int]:
        """Packets sent to a monitor per ``role/kind`` (tests, stats)."""
        mon = self._monitors.get(monitor_id)
        if mon is None:
            return {}
        if self._packet_mode:
            return {k: o.sent for (_, k), o in mon.outlets.items()}
        return {k: t.sent for (_, k), t in mon.outgoing.items()}

    async def _close_monitor(self, mon: _Monitor) -> None:
        for track in mon.outgoing.values():
            track.stop()
        await mon.pc.close()

    # -- forwarding ----------------------------------------------------------------

    def _on_track(self, leg: _Leg, track: MediaStreamTrack) -> None:
        for transceiver in leg.pc.getTransceivers():
            if transceiver.receiver.track is track:
                leg.receivers[track.kind] = transceiver.receiver
                if self._packet_mode:
                    packets.receive_packets(
                        transceiver.receiver, self._packet_forwarder(leg.role, track.kind))
                else:
                    seam.passthrough(
                        transceiver.receiver, self._forwarder(leg.role, track.kind)
                    )

    def _packet_forwarder(self, role: Role, kind: str) -> packets.PacketSink:
        """The sink for one incoming stream in packet mode: each RTP packet, on the loop."""
        stats = self._direction(role)
        other = OTHER[role]
        is_video = kind == "video"
        tap_source = is_video and role == "customer"
        monitored = (role, kind)
        newest: list[int | None] = [None]  # the newest RTP timestamp seen (video)

        async def forward(packet: packets.RtpPacket) -> None:
            if self._closed:
                return
            now = time.monotonic()
            if stats.first_packet_at is None:
                stats.first_packet_at = now
            stats.last_packet_at = now
            # a frame counts once, at its first packet in order (not a retransmission)
            frame_end = is_video and packets.newer_frame(packet.timestamp, newest)
            if is_video:
                if frame_end:
                    newest[0] = packet.timestamp
                stats.last_video_at = now
                stats.video_frames += frame_end
                if packets.is_keyframe_start(packet.payload):
                    stats.video_keyframes += 1
            else:
                stats.audio_packets += 1
            other_leg = self._legs.get(other)
            outlet = other_leg.outlets.get(kind) if other_leg is not None else None
            if outlet is not None:
                if await outlet.send(packet):
                    if not is_video:
                        stats.forwarded_audio += 1
                    elif frame_end:
                        stats.forwarded_video += 1
                elif is_video and frame_end and outlet.waiting:
                    stats.dropped_video += 1
            if self._monitors:
                for mon in list(self._monitors.values()):  # silent monitoring
                    watched = mon.outlets.get(monitored)
                    if watched is not None:
                        await watched.send(packet)
            consumer = self._consumer
            if consumer is not None and (role in self._recorders
                                         or (tap_source and self._tap_decoder is not None)):
                consumer.put(role, kind, packet, now)

        return forward

    def _consumer_started(self) -> packets.PacketConsumer:
        """The thread that depacketizes for the recorders and the tap (packet mode)."""
        if self._consumer is None:
            self._consumer = packets.PacketConsumer(self._deliver, self._consumer_broken)
        return self._consumer

    def _deliver(self, role: str, kind: str, data: bytes, arrival: float, keyframe: bool,
                 pts: int) -> None:
        """A whole frame (audio packet) from the consumer thread: to the recorder and tap."""
        recorder = self._recorders.get(role)  # type: ignore[call-overload]
        if recorder is not None:
            recorder.write(kind, data, arrival, keyframe)
        tap = self._tap_decoder
        if tap is not None and kind == "video" and role == "customer":
            tap.feed(data, keyframe, pts)

    def _consumer_broken(self, role: str) -> None:
        if role in ROLES:
            self.request_keyframe(role)  # type: ignore[arg-type]

    def _relay_remb(self, downstream: Role, bitrate: int) -> None:
        """The ``downstream`` participant's bandwidth estimate (REMB): to the upstream
        sender, so that a participant on a slow link gets a lower bitrate."""
        upstream = self._legs.get(OTHER[downstream])
        if upstream is None or self._closed or "video" not in upstream.receivers:
            return
        key = f"remb_to_{OTHER[downstream]}"
        relay = self._remb_relays.get(key)
        if relay is None:
            relay = self._remb_relays[key] = packets.RembRelay()
        if not relay.offer(bitrate, time.monotonic()):
            self._stats.remb_coalesced[key] = relay.coalesced
            return
        self._stats.remb_relayed[key] = relay.relayed
        self._stats.last_remb_bps[OTHER[downstream]] = bitrate
        self._spawn(packets.send_remb(upstream.receivers["video"], bitrate),
                    f"remb-{OTHER[downstream]}")

    def _direction(self, role: Role) -> DirectionStats:
        return self._stats.from_customer if role == "customer" else self._stats.from_agent

    def _forwarder(self, role: Role, kind: str) -> Callable[[av.Packet], None]:
        """The sink for one incoming track: called on the loop with each encoded frame."""
        stats = self._direction(role)
        other = OTHER[role]
        is_video = kind == "video"
        tap_source = is_video and role == "customer"
        broken = [False]  # a broken frame was seen: nothing passes until a key frame

        def forward(packet: av.Packet) -> None:
            if self._closed:
                return
            keyframe = bool(packet.is_keyframe)
            if is_video and not self._whole(role, packet, keyframe, broken, stats):
                return
            arrived = seam.arrival_time(packet)
            if stats.first_packet_at is None:
                stats.first_packet_at = arrived
            stats.last_packet_at = arrived
            if is_video:
                stats.last_video_at = arrived
                stats.video_frames += 1
                stats.video_keyframes += keyframe
            else:
                stats.audio_packets += 1
            other_leg = self._legs.get(other)
            out = other_leg.outgoing.get(kind) if other_leg is not None else None
            if out is not None and out.started:
                before = out.dropped
                out.push(packet)
                if out.dropped != before:
                    stats.dropped_video += is_video
                elif is_video:
                    stats.forwarded_video += 1
                else:
                    stats.forwarded_audio += 1
            for mon in self._monitors.values():  # silent monitoring: the same packets
                watched = mon.outgoing.get((role, kind))
                if watched is not None and watched.started:
                    watched.push(packet)
            recorder = self._recorders.get(role)
            tap = self._tap_decoder if tap_source else None
            if recorder is not None or tap is not None:
                data = bytes(packet)
                if recorder is not None:
                    recorder.write(kind, data, arrived, keyframe)
                if tap is not None:
                    tap.feed(data, keyframe, packet.pts)

        return forward

    def _whole(self, role: Role, packet: av.Packet, keyframe: bool, broken: list[bool],
               stats: DirectionStats) -> bool:
        """Whether a video frame may go on (to the other leg, the recording, the taps).

        Under loss, aiortc's receive buffer can give up on a missing packet and hand over
        the rest of a frame as a frame: forwarded or recorded, it would be undecodable,
        and so would every frame that refers to it. Such a frame is dropped, the
        sender is asked for a key frame, and nothing passes until one arrives."""
        if not vp8.is_plausible(bytes(memoryview(packet)[:10]), packet.size):
            broken[0] = True
        elif broken[0] and keyframe:
            broken[0] = False
        if broken[0]:
            stats.broken_video += 1
            self.request_keyframe(role)
            return False
        return True

    def _starter(self, leg: _Leg, kind: str) -> Callable[[], None]:
        def started() -> None:
            logger.debug("call %s: %s leg sends %s", self.call_id, leg.role, kind)
            if kind == "video":
                # The downstream starts now: its picture needs a key frame from upstream.
                self.request_keyframe(OTHER[leg.role])

        return started

    # -- key frames ----------------------------------------------------------------

    def request_keyframe(self, role: Role) -> None:
        """Ask ``role``'s sender (the customer's or agent's encoder) for a key frame."""
        leg = self._legs.get(role)
        if leg is None or self._closed or "video" not in leg.receivers:
            return
        if not leg.throttle.allow(time.monotonic()):
            return
        key = f"to_{role}"
        self._stats.keyframe_requests[key] = self._stats.keyframe_requests.get(key, 0) + 1
        self._spawn(seam.send_pli(leg.receivers["video"]), f"pli-{role}")

    def _relay_keyframe_request(self, downstream: Role) -> None:
        """A PLI/FIR from ``downstream``'s peer: pass it to the upstream sender."""
        self.request_keyframe(OTHER[downstream])

    # -- leg state -----------------------------------------------------------------

    def _on_connection_state(self, leg: _Leg) -> None:
        state = leg.pc.connectionState
        if state == "connected":
            leg.state = LegState.CONNECTED
            return
        if state not in ("failed", "closed") or self._closed or leg.state == LegState.ENDED:
            return
        if leg.state != LegState.CONNECTED:
            reason = EndReason.ICE_FAILED
        elif state == "failed" or seam.consent_expired(leg.pc):
            reason = EndReason.CONNECTION_LOST
        else:
            reason = EndReason.CONNECTION_CLOSED
        leg.state = LegState.ENDED
        leg.ended_reason = reason
        logger.info("call %s: %s leg ended: %s", self.call_id, leg.role, reason.value)
        if self._on_ended is not None:
            self._on_ended(leg.role, reason)

    def leg_state(self, role: Role) -> LegState | None:
        leg = self._legs.get(role)
        return leg.state if leg is not None else None

    def flow(self, role: Role) -> LegFlow | None:
        """What reaches the hub on ``role``'s leg, for :func:`~.health.assess`; ``None``
        without a live leg."""
        leg = self._legs.get(role)
        if leg is None or leg.state is LegState.ENDED or self._closed:
            return None
        d = self._direction(role)
        return LegFlow(answered_at=leg.answered_at, expects_video="video" in leg.kinds,
                       last_packet_at=d.last_packet_at, last_video_at=d.last_video_at)

    # -- taps ------------------------------------------------------------------------

    def add_tap(self, maxsize: int = 2, max_fps: float | None = None) -> Tap:
        """Decoded frames (``av.VideoFrame``) of the customer's video, for analysis.

        Decoding runs on its own thread while at least one tap is open; the tap
        keeps at most ``maxsize`` frames, dropping the oldest, and at most
        ``max_fps`` frames per second. Close it with ``tap.close()``;
        ``close()`` on the call closes every tap.
        """
        if self._closed:
            raise MediaStateError("the call's media is closed")
        if self._tap_decoder is None:
            if self._packet_mode:  # fed on the consumer thread
                loop = asyncio.get_running_loop()

                def need_keyframe() -> None:
                    loop.call_soon_threadsafe(self.request_keyframe, "customer")

                self._tap_decoder = TapDecoder(need_keyframe)
                self._consumer_started()
            else:
                self._tap_decoder = TapDecoder(lambda: self.request_keyframe("customer"))
        return self._tap_decoder.add_tap(maxsize, max_fps)

    # -- recording -----------------------------------------------------------------

    def start_recording(
        self,
        directory: Path,
        *,
        on_failed: Callable[[Role, RecordingFailed], None] | None = None,
        key: bytes | None = None,
    ) -> dict[Role, Path]:
        """Record each participant into ``directory/<call_id>-<role>.webm`` (sealed with
        ``key`` into ``.webm.enc`` when one is given: recordings at rest).

        ``on_failed(role, error)`` runs on the event loop if a file cannot be
        written (unwritable directory, disk full); that recording stops and the
        call goes on. Returns the paths.
        """
        if self._closed:
            raise MediaStateError("the call's media is closed")
        if self._recorders:
            raise MediaStateError("the call is already being recorded")
        self._on_recording_failed = on_failed
        paths: dict[Role, Path] = {}
        for role in ROLES:
            path = Path(directory) / f"{self.call_id}-{role}.webm{'.enc' if key else ''}"
            self._recorders[role] = RecordingWriter(
                path, origin=self.origin, on_failed=self._recording_failed_cb(role), key=key
            )
            paths[role] = path
        if self._packet_mode:
            self._consumer_started()
        return paths

    def _recording_failed_cb(self, role: Role) -> Callable[[Exception], None]:
        def failed(exc: Exception) -> None:
            error = RecordingFailed(f"recording the {role} failed: {exc}", role=role)
            if self._on_recording_failed is not None:
                self._on_recording_failed(role, error)

        return failed

    async def stop_recording(self) -> dict[Role, RecordingInfo]:
        """Finish the files; returns what was recorded per participant (none if failed/empty)."""
        if self._consumer is not None and self._recorders:  # what is queued goes in first
            await asyncio.to_thread(self._consumer.flush)
        recorders, self._recorders = self._recorders, {}
        for role, recorder in recorders.items():
            info = await recorder.close()
            if info is not None:
                self._recording_infos[role] = info
        return dict(self._recording_infos)

    # -- statistics ------------------------------------------------------------------

    def stats(self) -> CallMediaStats:
        if self._tap_decoder is not None:
            self._stats.tap_frames_decoded = self._tap_decoder.decoded
        return self._stats

    # -- lifecycle -------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        if self._closed:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro, name=f"call-{self.call_id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("call %s: task %s failed", self.call_id, task.get_name(),
                         exc_info=task.exception())

    async def _close_leg(self, leg: _Leg) -> None:
        leg.state = LegState.ENDED
        for track in leg.outgoing.values():
            track.stop()
        await leg.pc.close()

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> dict[Role, RecordingInfo]:
        """Close both legs, stop the taps and the recording; returns the recordings."""
        if self._closed:
            return dict(self._recording_infos)
        self._closed = True
        if self._tap_decoder is not None:
            self._tap_decoder.close()
        await asyncio.gather(*(self._close_leg(leg) for leg in self._legs.values()),
                             *(self._close_monitor(m) for m in self._monitors.values()))
        self._monitors.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._consumer is not None:  # what it holds goes into the files first
            await asyncio.to_thread(self._consumer.drain_and_close)
            self._consumer = None
        return await self.stop_recording()
