"""Packet-level forwarding (``CLOUDCOUNTER_MEDIA_FORWARDING=packet``): RTP in, RTP out.

::

    customer ─SRTP─▶ leg's DTLS transport (decrypts, parses) ─▶ PacketReceiver
        ─▶ Outlet (agent leg's sender): SSRC, payload type, sequence number and timestamp
           rewritten, header extensions the agent leg's (mid; the customer's abs-send-time
           and audio level passed on),
           kept in the sender's history (aiortc answers the agent's NACKs from it)
           ─▶ agent leg's DTLS transport (encrypts) ─SRTP─▶ agent
        └▶ PacketConsumer thread (bounded queue): VP8 depacketized into frames for the
           recorder and the vision tap, off the event loop

No jitter buffer, no frame re-assembly and no per-frame Python objects on the
forwarding path; aiortc's receive-side bandwidth estimator is not fed (nobody reads it):
the downstream peer's REMB is relayed to the upstream sender instead
(:func:`on_remb`, :func:`send_remb`). What aiortc's receiver still does for each packet:
receiver-report statistics and NACKs upstream for packets that never came.

Like :mod:`cloudcounter.media.seam`, this module reaches into aiortc 1.16.0's private
attributes; :func:`check` verifies each one (``tests/media/test_packets.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCRtpReceiver, RTCRtpSender, clock
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTP_HISTORY_SIZE,
    RtcpPsfbPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
    unwrap_rtx,
)

from . import seam, vp8
from .errors import SeamBroken

logger = logging.getLogger(__name__)

FORWARDING_MODES = ("packet", "frame")
# Packets a consumer (recorder, tap) may fall behind by before it drops and resyncs.
CONSUMER_QUEUE = 2000
#: how long a packet may stay missing before its NACK is repeated (about a round trip)
NACK_REPEAT_S = 0.3
#: how often (packets) the receiver's "active source" time is refreshed (PLIs use it)
_ACTIVE_EVERY = 32

PacketSink = Callable[[RtpPacket], Awaitable[None]]


# -- VP8 payload descriptor (RFC 7741 section 4.2) ----------------------------------------


def vp8_descriptor_size(payload: bytes) -> int:
    """Bytes of the VP8 payload descriptor at the start of an RTP payload."""
    size = 1
    if payload[0] & 0x80:  # X: extension byte follows
        ext = payload[1]
        size = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            size += 2 if payload[size] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            size += 1
        if ext & 0x30:  # T or K: TID/KEYIDX
            size += 1
    return size


def is_frame_start(payload: bytes) -> bool:
    """The packet starts a VP8 frame (S=1, partition index 0)."""
    return bool(payload) and payload[0] & 0x1F == 0x10


def is_keyframe_start(payload: bytes) -> bool:
    """The packet starts a VP8 key frame (frame start and the P bit of the frame tag 0)."""
    if not is_frame_start(payload):
        return False
    size = vp8_descriptor_size(payload)
    return len(payload) > size and not payload[size] & 0x01


# -- the receiving side ---------------------------------------------------------------------


def receive_packets(receiver: RTCRtpReceiver, sink: PacketSink) -> None:
    """Hand every RTP packet ``receiver`` gets to ``await sink(packet)``, decrypted and
    parsed, retransmissions (RTX) unwrapped, instead of aiortc's jitter buffer and decoder.

    Call it in the ``pc.on("track")`` handler, before the receiver starts. Receiver
    reports and NACKs for missing packets go on as in aiortc (a NACK is repeated every
    :data:`NACK_REPEAT_S` while the packet is missing); the receive-side bitrate estimator
    is skipped.
    """
    seam.passthrough(receiver, lambda packet: None)  # the decoder thread idles
    codecs: dict[int, Any] = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
    rtx_ssrc: dict[int, int] = receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]
    streams: dict[int, StreamStatistics] = (
        receiver._RTCRtpReceiver__remote_streams)  # type: ignore[attr-defined]
    active: dict[int, Any] = receiver._RTCRtpReceiver__active_ssrc  # type: ignore[attr-defined]
    nack = receiver._RTCRtpReceiver__nack_generator  # type: ignore[attr-defined]
    counter = [0]
    last_nack = [0.0]

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        if not receiver._enabled:
            return
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        stream = streams.get(packet.ssrc)
        if stream is None:
            stream = streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stream.add(packet)
        if codec.name.lower() == "rtx":
            original = rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original is None or len(packet.payload) < 2 or apt not in codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original)
        counter[0] += 1
        if counter[0] % _ACTIVE_EVERY == 1:
            active[packet.ssrc] = clock.current_datetime()
        if nack is not None:
            # aiortc NACKs a packet once, when the gap appears; a NACK or its answer lost
            # on the way loses the packet for good: still-missing ones are asked again
            now = time.monotonic()
            if nack.add(packet) or (nack.missing and now - last_nack[0] > NACK_REPEAT_S):
                last_nack[0] = now
                await receiver._send_rtcp_nack(packet.ssrc, sorted(nack.missing))
        try:
            await sink(packet)
        except Exception:  # never break aiortc's RTP handling
            logger.exception("packet sink failed")

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]


async def send_remb(receiver: RTCRtpReceiver, bitrate: int) -> bool:
    """Send a REMB (receiver estimated maximum bitrate) for ``receiver``'s sources to its
    remote sender. Returns False when nothing was sent (no media or RTCP SSRC yet)."""
    rtcp_ssrc = getattr(receiver, "_RTCRtpReceiver__rtcp_ssrc", None)
    sources = [s.source for s in receiver.getSynchronizationSources()]
    if rtcp_ssrc is None or not sources:
        return False
    packet = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0,
                            fci=pack_remb_fci(int(bitrate), sources))
    await receiver._send_rtcp(packet)
    return True


REMB_RELAY_INTERVAL_S = 0.25  # at most one relayed REMB per upstream in this time ...
REMB_RELAY_DROP = 0.9  # ... unless the estimate fell below this share of the last relayed


class RembRelay:
    """Which of a downstream peer's REMBs go upstream. A receiver's estimator sends one at
    every feedback interval and, while it sees its link overused, one with every packet:
    relayed one by one they cost the hub a task and an SRTCP packet each, most when it is
    busiest. A fall in the estimate goes on at once; anything else at most every
    :data:`REMB_RELAY_INTERVAL_S` (the next REMB carries the newest estimate)."""

    def __init__(self, interval_s: float = REMB_RELAY_INTERVAL_S,
                 drop: float = REMB_RELAY_DROP) -> None:
        self._interval_s = interval_s
        self._drop = drop
        self._last: tuple[float, int] | None = None  # (when, bitrate) last relayed
        self.relayed = 0
        self.coalesced = 0

    def offer(self, bitrate: int, now: float) -> bool:
        """True when ``bitrate``, heard at ``now``, is to be relayed."""
        last = self._last
        if (last is None or now - last[0] >= self._interval_s
                or bitrate < last[1] * self._drop):
            self._last = (now, bitrate)
            self.relayed += 1
            return True
        self.coalesced += 1
        return False


def ntp_now() -> int:
    """The current time as a 64-bit NTP timestamp (aiortc's ``clock.current_ntp_time``
    without its datetime objects: it runs once per forwarded packet)."""
    return int((time.time() + _NTP_EPOCH_OFFSET) * 4294967296.0)


_NTP_EPOCH_OFFSET = 2208988800  # 1900-01-01 to 1970-01-01, in seconds


def on_remb(sender: RTCRtpSender, callback: Callable[[int], None]) -> None:
    """Call ``callback(bitrate)`` whenever the remote peer sends a REMB for ``sender``."""
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        await original(packet)
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if sender._ssrc in ssrcs:
                try:
                    callback(bitrate)
                except Exception:  # never break aiortc's RTCP handling
                    logger.exception("REMB callback failed")

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


# -- the sending side -------------------------------------------------------------------


class Outlet:
    """One downstream sender, fed RTP packets with their headers rewritten.

    ``started()`` says whether the sender runs (its track was first read: ICE and DTLS
    are up). Video starts on a key frame (``on_need_keyframe`` asks upstream for one
    meanwhile); a new upstream source (the participant re-connected: new SSRC) continues
    the sequence numbers and timestamps where the old one stopped, from a key frame.
    Audio goes out numbered without gaps (it is never retransmitted, see :meth:`send`).
    """

    def __init__(self, sender: RTCRtpSender, kind: str, started: Callable[[], bool],
                 on_need_keyframe: Callable[[], None] | None = None) -> None:
        self.sender = sender
        self.kind = kind
        self._started = started
        self._on_need_keyframe = on_need_keyframe
        self._video = kind == "video"
        self.waiting = self._video
        self.payload_type: int | None = None
        self.clock_rate = 90000 if self._video else 48000
        self._extensions: Any = None
        self._mid: str | None = None
        self._history: dict[int, RtpPacket] = sender._RTCRtpSender__rtp_history  # type: ignore[attr-defined]
        self._source: int | None = None
        self._seq_offset = 0
        self._ts_offset = 0
        self._last_seq: int | None = None
        self._upstream_seq: int | None = None  # audio: the last upstream number passed on
        self._last_ts = 0
        self._last_at = 0.0
        self.sent = 0
        self.dropped = 0
        self.late = 0  # audio packets that came after a later one (not passed on)
        self._wrap_send()

    def _wrap_send(self) -> None:
        original = self.sender.send

        async def send(parameters: Any) -> None:
            self.payload_type = parameters.codecs[0].payloadType
            self.clock_rate = parameters.codecs[0].clockRate or self.clock_rate
            await original(parameters)
            self._extensions = self.sender._RTCRtpSender__rtp_header_extensions_map  # type: ignore[attr-defined]
            self._mid = self.sender._RTCRtpSender__mid  # type: ignore[attr-defined]

        self.sender.send = send  # type: ignore[method-assign]

    def _rebase(self, packet: RtpPacket) -> None:
        if self._last_seq is None:
            self._seq_offset = random.randint(0, 0xFFFF) - packet.sequence_number
            self._ts_offset = random.randint(0, 0xFFFFFFFF) - packet.timestamp
        else:
            gap = int((time.monotonic() - self._last_at) * self.clock_rate) or 1
            self._seq_offset = self._last_seq + 1 - packet.sequence_number
            self._ts_offset = self._last_ts + gap - packet.timestamp
            self.waiting = self._video
        self._source = packet.ssrc
        self._upstream_seq = None

    async def send(self, packet: RtpPacket) -> bool:
        """Pass ``packet`` on; False when it was not sent (not started, waiting for a key
        frame, the transport gone)."""
        if self._extensions is None or not self._started():
            return False
        if packet.ssrc != self._source:
            self._rebase(packet)
        if self.waiting:
            if not is_keyframe_start(packet.payload):
                self.dropped += 1
                if self._on_need_keyframe is not None:
                    self._on_need_keyframe()
                return False
            self.waiting = False
        if self._video:  # numbers kept: a retransmission fills its own gap downstream
            seq = (packet.sequence_number + self._seq_offset) & 0xFFFF
        else:
            # Audio is not retransmitted: a packet lost upstream would stay a gap in the
            # numbers for good, and a receiver's jitter buffer may hold the packets behind a
            # gap (aiortc's does, until its 16 places are full). The hub closes the gap; the
            # timestamps still show it, for the decoder to conceal. A packet that comes after
            # a later one is too late to play: dropped.
            last = self._upstream_seq
            if last is not None and not 0 < (packet.sequence_number - last) & 0xFFFF < 0x8000:
                self.late += 1
                return False
            if self._last_seq is None:
                seq = (packet.sequence_number + self._seq_offset) & 0xFFFF
            else:
                seq = (self._last_seq + 1) & 0xFFFF
        ts = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        out = RtpPacket(payload_type=self.payload_type or 0, marker=packet.marker,
                        sequence_number=seq, timestamp=ts, ssrc=self.sender._ssrc,
                        payload=packet.payload)
        ntp = ntp_now()
        out.extensions.mid = self._mid
        # the upstream sender's send time, passed through: the downstream peer's
        # bandwidth estimate (its REMB, relayed upstream) then covers both links
        send_time = packet.extensions.abs_send_time
        out.extensions.abs_send_time = (send_time if send_time is not None else
                                        (ntp >> 14) & 0x00FFFFFF)
        out.extensions.audio_level = packet.extensions.audio_level
        self._history[seq % RTP_HISTORY_SIZE] = out
        try:
            await self.sender.transport._send_rtp(out.serialize(self._extensions))
        except ConnectionError:
            return False
        if not self._video:
            self._upstream_seq = packet.sequence_number
        now = time.monotonic()
        if self._last_seq is None or (seq - self._last_seq) & 0xFFFF < 0x8000:
            self._last_seq, self._last_ts, self._last_at = seq, ts, now
        sender = self.sender
        sender._RTCRtpSender__ntp_timestamp = ntp  # type: ignore[attr-defined]
        sender._RTCRtpSender__rtp_timestamp = ts  # type: ignore[attr-defined]
        sender._RTCRtpSender__octet_count += len(packet.payload)  # type: ignore[attr-defined]
        sender._RTCRtpSender__packet_count += 1  # type: ignore[attr-defined]
        self.sent += 1
        return True


# -- the consumers: recorder and tap, off the loop ------------------------------------------


class _Pending:
    __slots__ = ("parts", "start", "end")

    def __init__(self) -> None:
        self.parts: dict[int, bytes] = {}  # sequence number → payload
        self.start: int | None = None  # sequence number of the frame's first packet
        self.end: int | None = None  # ... and of its last (marker)

    def complete(self) -> bool:
        return (self.start is not None and self.end is not None
                and len(self.parts) == ((self.end - self.start) & 0xFFFF) + 1)

    def data(self) -> bytes:
        assert self.start is not None
        seqs = [(self.start + i) & 0xFFFF for i in range(len(self.parts))]
        return b"".join(p[vp8_descriptor_size(p):] for p in (self.parts[s] for s in seqs))


def _newer(a: int, b: int) -> bool:
    """RTP timestamp ``a`` is after ``b`` (modulo 2**32)."""
    return a != b and (a - b) & 0xFFFFFFFF < 0x80000000


def newer_frame(ts: int, newest: list[int | None]) -> bool:
    """Whether RTP timestamp ``ts`` is a frame after ``newest[0]`` (None: the first)."""
    return newest[0] is None or _newer(ts, newest[0])


class FrameAssembler:
    """VP8 RTP packets → whole frames, in order, for the recorder and the tap.

    Packets may come out of order (a retransmission answers a NACK late): a frame is
    handed over once all its packets are in and it follows the last one handed over
    (or is a key frame). A frame still incomplete, or a gap before it, when frames
    ``window`` RTP ticks newer have arrived is given up: it is dropped, and so is what
    follows it until the next key frame (it would not decode).
    """

    def __init__(self, window: int = 180000) -> None:  # 2 s at 90 kHz: NACK round trips
        self._window = window
        self._pending: dict[int, _Pending] = {}  # RTP timestamp → frame
        self._next_seq: int | None = None  # where the next frame must start
        self._last_ts: int | None = None  # the last frame handed over or given up
        self._newest: int | None = None
        self.broken = True  # until the first key frame
        self.dropped = 0
        self.stalled = False  # a frame has waited half the window: ask for a key frame
        self.give_ups = 0
        self.stalls = 0
        self._stalled_ts: int | None = None

    def lost(self) -> None:
        """Packets were lost before they reached the assembler (a full queue)."""
        self._pending.clear()
        self._next_seq = None
        self.broken = True

    def restart(self) -> None:
        """A new source (the participant re-connected): new sequence and timestamps."""
        self.lost()
        self._last_ts = self._newest = None

    def add(self, seq: int, ts: int, marker: bool, payload: bytes) -> list[tuple[int, bytes]]:
        """The frames (RTP timestamp, data) that ``payload`` completes, oldest first."""
        if not payload or (self._last_ts is not None and not _newer(ts, self._last_ts)):
            return []  # late: its frame was handed over or given up
        frame = self._pending.get(ts)
        if frame is None:
            frame = self._pending[ts] = _Pending()
        frame.parts[seq] = payload
        if is_frame_start(payload):
            frame.start = seq
        if marker:
            frame.end = seq
        if self._newest is None or _newer(ts, self._newest):
            self._newest = ts
        return self._ready()

    def _ready(self) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        while self._pending:
            newest = self._newest if self._newest is not None else 0
            ts = max(self._pending, key=lambda t: (newest - t) & 0xFFFFFFFF)  # the oldest
            frame = self._pending[ts]
            stale = (newest - ts) & 0xFFFFFFFF > self._window
            if frame.complete():
                data = frame.data()
                keyframe = vp8.is_keyframe(data)
                follows = self._next_seq is None or frame.start == self._next_seq
                if not (follows or keyframe or stale):
                    self._stall(ts, newest)
                    break  # a frame before it may still come
                if not follows and not keyframe:
                    self.broken = True  # a whole frame never came
                    self.give_ups += 1
                self._take(ts, frame)
                if self.broken and not keyframe:
                    self.dropped += 1
                    continue
                self.broken = False
                out.append((ts, data))
            elif stale:
                self._take(ts, frame)
                self.broken = True
                self.dropped += 1
                self.give_ups += 1
            else:
                self._stall(ts, newest)
                break
        return out

    def _stall(self, ts: int, newest: int) -> None:
        if (newest - ts) & 0xFFFFFFFF > self._window // 2 and self._stalled_ts != ts:
            self._stalled_ts = ts  # what it waits for may never come: ask for a key frame
            self.stalled = True
            self.stalls += 1

    def _take(self, ts: int, frame: _Pending) -> None:
        del self._pending[ts]
        self._last_ts = ts
        if frame.end is not None:
            self._next_seq = (frame.end + 1) & 0xFFFF
        else:
            self._next_seq = None


class PacketConsumer:
    """A thread that turns forwarded packets into frames for recorders and taps.

    ``put`` (on the loop, never blocks, never wakes the thread) appends
    ``(role, kind, packet, arrival)`` to a bounded deque; the thread drains it every
    ``poll_s``, depacketizes video (:class:`FrameAssembler`) and calls
    ``deliver(role, kind, data, arrival, keyframe, pts)`` with each audio packet's
    payload and each whole video frame. ``on_broken(role)`` runs on the loop when a
    role's video lost a frame or waits for one (ask for a key frame).
    """

    def __init__(self, deliver: Callable[[str, str, bytes, float, bool, int], None],
                 on_broken: Callable[[str], None], maxsize: int = CONSUMER_QUEUE,
                 poll_s: float = 0.02) -> None:
        self._deliver = deliver
        self._on_broken = on_broken
        self._loop = asyncio.get_running_loop()
        self._items: deque[tuple[str, str, int, int, int, bool, bytes, float]] = deque()
        self._maxsize = maxsize
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._drain = True
        self._sources: dict[str, int] = {}  # role → SSRC of its video
        self._lost: set[str] = set()
        self._assemblers: dict[str, FrameAssembler] = {}
        self._first_ts: dict[str, int] = {}
        self.dropped = 0
        self.frames = 0
        self._thread: threading.Thread | None = threading.Thread(
            target=self._run, name="packet-consumer", daemon=True)
        self._thread.start()

    def put(self, role: str, kind: str, packet: RtpPacket, arrival: float) -> None:
        if self._thread is None:
            return
        if len(self._items) >= self._maxsize:  # the thread is behind
            self.dropped += 1
            if kind == "video":
                self._lost.add(role)
            return
        self._items.append((role, kind, packet.ssrc, packet.sequence_number,
                            packet.timestamp, bool(packet.marker), packet.payload, arrival))

    def _run(self) -> None:
        items = self._items
        while True:
            stopping = self._stop.wait(self._poll_s)
            if stopping and not self._drain:
                return
            while items:
                self._handle(*items.popleft())
            if stopping:
                return

    def _handle(self, role: str, kind: str, ssrc: int, seq: int, ts: int, marker: bool,
                payload: bytes, arrival: float) -> None:
        try:
            if kind != "video":
                self._deliver(role, kind, payload, arrival, True, ts)
                return
            assembler = self._assemblers.get(role)
            if assembler is None:
                assembler = self._assemblers[role] = FrameAssembler()
            if self._sources.get(role, ssrc) != ssrc:
                assembler.restart()
            self._sources[role] = ssrc
            if role in self._lost:
                self._lost.discard(role)
                assembler.lost()
            was_broken = assembler.broken
            frames = assembler.add(seq, ts, marker, payload)
            if (assembler.broken and not was_broken) or assembler.stalled:
                assembler.stalled = False
                self._loop.call_soon_threadsafe(self._on_broken, role)
            for frame_ts, data in frames:
                first = self._first_ts.setdefault(role, frame_ts)
                self.frames += 1
                self._deliver(role, kind, data, arrival, vp8.is_keyframe(data),
                              (frame_ts - first) & 0xFFFFFFFF)
        except Exception:
            logger.exception("packet consumer failed on a %s packet", kind)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait (blocking: call it in a thread) until what is queued has been delivered."""
        deadline = time.monotonic() + timeout
        while self._thread is not None and self._items and time.monotonic() < deadline:
            time.sleep(self._poll_s / 2)
        time.sleep(self._poll_s)  # the item being handled

    def drain_and_close(self, timeout: float = 10.0) -> None:
        """Stop the thread once it has delivered what is queued (blocks: call it in a
        thread)."""
        self._stop_thread(drain=True, timeout=timeout)
        for role, assembler in self._assemblers.items():
            logger.debug("packet consumer: %s video: %d frames given up or dropped, "
                        "%d give-ups, %d stalls", role, assembler.dropped,
                        assembler.give_ups, assembler.stalls)

    def close(self) -> None:
        """Stop the thread (what is queued is dropped)."""
        self._stop_thread(drain=False, timeout=5.0)

    def _stop_thread(self, drain: bool, timeout: float) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._drain = drain
        self._stop.set()
        thread.join(timeout)


# -- checks -----------------------------------------------------------------------------


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise SeamBroken(
            f"aiortc moved an internal cloudcounter.media.packets relies on: {what}. "
            f"It was written for aiortc {seam.AIORTC_VERSION}; adapt packets.py.")


def check() -> None:
    """Raise :class:`SeamBroken` if an aiortc internal this module uses has moved."""
    seam.check_seam()
    init = inspect.getsource(RTCRtpReceiver.__init__)
    for name in ("__codecs", "__rtx_ssrc", "__remote_streams", "__active_ssrc",
                 "__nack_generator", "__rtcp_ssrc"):
        _require(f"self.{name}" in init, f"RTCRtpReceiver.{name}")
    handle = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    _require("unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)" in handle
             and "self.__nack_generator.add(packet)" in handle,
             "RTCRtpReceiver._handle_rtp_packet unwraps RTX and feeds the NACK generator")
    sender_init = inspect.getsource(RTCRtpSender.__init__)
    for name in ("__rtp_history", "__rtp_header_extensions_map", "__mid", "__ntp_timestamp",
                 "__rtp_timestamp", "__octet_count", "__packet_count"):
        _require(f"self.{name}" in sender_init, f"RTCRtpSender.{name}")
    _require("self.__rtp_history.get(sequence_number % RTP_HISTORY_SIZE)"
             in inspect.getsource(RTCRtpSender._retransmit),
             "RTCRtpSender._retransmit answers NACKs from __rtp_history")
    _require("self.__rtp_task = asyncio.ensure_future(self._run_rtp(parameters.codecs[0]))"
             in inspect.getsource(RTCRtpSender.send),
             "RTCRtpSender.send(parameters) sends parameters.codecs[0]")
    _require(_params(RTCRtpReceiver._send_rtcp_nack) == ["self", "media_ssrc", "lost"]
             and _params(RTCRtpReceiver._send_rtcp) == ["self", "packet"],
             "RTCRtpReceiver._send_rtcp_nack(media_ssrc, lost) / _send_rtcp(packet)")


def _params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)
