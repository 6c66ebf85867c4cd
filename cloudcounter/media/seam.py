"""The one module that adapts aiortc and aioice internals (aiortc 1.16.0, aioice 0.13).

aiortc has no public way to take the encoded frames from a receiver (see aiortc
issues 55, 116 and 449: the maintainer suggests "an API which hands you
re-assembled (but not decoded) frames", which does not exist). What it has:

* ``RTCRtpReceiver.receive()`` starts a thread running the module-level function
  ``aiortc.rtcrtpreceiver.decoder_worker(loop, input_q, output_q, decode_error)``,
  looked up at call time, where ``input_q`` yields ``(codec, JitterFrame)``
  (the jitter buffer's re-assembled, depayloaded frame, timestamp already mapped
  to start at 0) and ``output_q`` is the ``asyncio.Queue`` of the receiver's
  ``RemoteStreamTrack`` (``track._queue``); ``None`` ends the track.
* ``RTCRtpSender._next_encoded_frame`` calls ``encoder.pack(packet)`` without
  encoding when the track yields an ``av.Packet`` instead of a frame.
* ``RTCRtpSender._handle_rtcp_packet`` calls ``self._send_keyframe()`` for a
  PLI or FIR; ``RTCRtpReceiver._send_rtcp_pli(media_ssrc)`` sends a PLI.
* ``aioice.ice.Connection.gather_candidates`` calls the module-level
  ``aioice.ice.get_host_addresses(use_ipv4, use_ipv6)``, which skips 127.0.0.1.
* ``aioice.ice.Connection.connect`` starts ``query_consent()`` as a task once
  the check list completes. If ``close()`` runs between the check list
  completing and ``connect()`` resuming (a call closed just as ICE connects),
  that task starts after the close and never ends (nothing is nominated any
  more): a leaked task per leg. The wrapper returns at once on a closed connection.

:func:`passthrough` replaces a chosen receiver's decoder queue (the private
``RTCRtpReceiver.__decoder_queue``) before it starts, so each frame becomes an
``av.Packet`` inline on the event loop; :func:`install` wraps ``decoder_worker``
so the thread aiortc starts for such a receiver just idles, and wraps
``get_host_addresses``. Both wrappers delegate to the originals unless asked
otherwise, so peers that are not the hub's (simulators, test peers) keep
decoding and keep aioice's default addresses. :func:`check_seam` verifies every assumption above;
``tests/media/test_seam.py`` runs it so an aiortc upgrade fails loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fractions
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import aioice.ice
import aioice.turn
import av
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc import rtcrtpreceiver as _rtcrtpreceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.utils import uint16_add, uint16_gt

from . import vp8
from .errors import SeamBroken

logger = logging.getLogger(__name__)

AIORTC_VERSION = "1.16.0"
VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
# How many packets a hub receiver holds behind a missing one (aiortc: 512): a key frame
# and a retransmission's round trip fit; an unrecoverable loss costs about 2 s, not 8.
VIDEO_RECEIVE_PACKETS = 128
AUDIO_TIME_BASE = fractions.Fraction(1, 48000)

_original_decoder_worker: Callable[..., None] | None = None
_original_get_host_addresses: Callable[..., list[str]] | None = None
_original_query_consent: Callable[..., Any] | None = None
_install_lock = threading.Lock()

# Host addresses to gather, for the peer connections created in this context.
_host_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "cloudcounter_media_host_addresses", default=None
)


# -- encoded frames out of a receiver ----------------------------------------------------


def _packet_from(codec: Any, frame: Any) -> av.Packet:
    packet = av.Packet(frame.data)
    packet.pts = frame.timestamp
    packet.dts = frame.timestamp
    if codec.mimeType.lower().startswith("video/"):
        packet.time_base = VIDEO_TIME_BASE
        packet.is_keyframe = codec.name.upper() == "VP8" and vp8.is_keyframe(frame.data)
    else:
        packet.time_base = fractions.Fraction(1, codec.clockRate or 48000)
        packet.is_keyframe = True
    # Arrival time (monotonic, seconds), for recording and statistics.
    packet.opaque = time.monotonic()
    return packet


class _WholeFrames(JitterBuffer):
    """aiortc's video receive buffer, which also tells whether each frame it hands over
    is whole and follows the previous one without a gap.

    aiortc's buffer holds up to 512 packets behind one that never arrives (its
    retransmission lost too): seconds of frozen video on a lossy link. Then it drops
    packets, and may hand over the rest of a frame whose start it dropped, or a frame
    that refers to one it dropped: both undecodable. Here the buffer is smaller
    (:data:`VIDEO_RECEIVE_PACKETS`) and each frame gets ``cc_whole``: it starts with a
    VP8 partition-0 start packet (payload descriptor S=1, PID=0) and, unless it is the
    first, right after the last packet of the frame before it. A key frame that starts
    properly is whole even after a gap (it refers to nothing).
    """

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity=capacity, is_video=True)
        self._starts: dict[int, int] = {}  # RTP timestamp → sequence number of its start
        self._ends: dict[int, int] = {}  # RTP timestamp → highest sequence number seen
        self._next: int | None = None  # where the next frame must start

    def add(self, packet: Any) -> tuple[bool, Any]:
        ts, seq, payload = packet.timestamp, packet.sequence_number, packet.payload
        if payload and payload[0] & 0x10 and not payload[0] & 0x07:
            self._starts[ts] = seq
        end = self._ends.get(ts)
        if end is None or uint16_gt(seq, end):
            self._ends[ts] = seq
        pli, frame = super().add(packet)
        if frame is not None:
            start = self._starts.get(frame.timestamp)
            end = self._ends.get(frame.timestamp)
            frame.cc_whole = start is not None and (  # type: ignore[attr-defined]
                self._next is None or start == self._next or vp8.is_keyframe(frame.data))
            if end is not None:
                self._next = uint16_add(end, 1)
            for table in (self._starts, self._ends):  # forget this frame and older ones
                for old in [t for t in table if (frame.timestamp - t) % (1 << 32) < 1 << 31]:
                    del table[old]
        return pli, frame


class _InlineFrames:
    """Stands in for a passthrough receiver's decoder ``queue.Queue``.

    ``RTCRtpReceiver._handle_rtp_packet`` calls ``put((codec, JitterFrame))`` on
    the event loop for every re-assembled frame: the frame becomes an
    ``av.Packet`` right there, handed to ``sink`` (or to the track's queue),
    with no thread hop. ``put(None)`` (the receiver stopping) ends the track
    and lets the idle worker thread aiortc started return.
    """

    def __init__(
        self, output_q: asyncio.Queue[Any], sink: Callable[[av.Packet], None] | None
    ) -> None:
        self.output_q = output_q
        self.sink = sink
        self.done = threading.Event()

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            if not self.done.is_set():
                self.done.set()
                self.output_q.put_nowait(None)
            return
        if self.done.is_set():
            return
        codec, frame = item
        if getattr(frame, "cc_whole", True) is False:
            # not whole, or after a gap: an empty packet says "frames are missing here"
            frame = JitterFrame(data=b"", timestamp=frame.timestamp)
        packet = _packet_from(codec, frame)
        if self.sink is None:
            self.output_q.put_nowait(packet)
            return
        try:
            self.sink(packet)
        except Exception:  # never break aiortc's RTP handling
            logger.exception("passthrough sink failed")


def _decoder_worker(
    loop: asyncio.AbstractEventLoop,
    input_q: Any,
    output_q: asyncio.Queue[Any],
    decode_error: threading.Event,
) -> None:
    if isinstance(input_q, _InlineFrames):
        input_q.done.wait()  # frames are handled inline on the loop
    else:
        assert _original_decoder_worker is not None
        _original_decoder_worker(loop, input_q, output_q, decode_error)


def passthrough(
    receiver: RTCRtpReceiver, sink: Callable[[av.Packet], None] | None = None
) -> None:
    """Make ``receiver`` hand over its frames encoded, as ``av.Packet``s, never decoding.

    Each packet goes to ``sink(packet)`` on the event loop if given, else to
    the receiver's track (``await receiver.track.recv()`` returns packets).
    Packets carry pts (RTP timestamp from 0), time_base 1/90000 (video) or
    1/clock rate (audio), ``is_keyframe`` (VP8 header) and the arrival time
    (:func:`arrival_time`). Call it in the ``pc.on("track")`` handler, before
    the receiver starts (when the transport connects).
    """
    install()
    track = receiver.track
    output_q = getattr(track, "_queue", None)
    if not isinstance(output_q, asyncio.Queue):
        raise SeamBroken("a remote track has no asyncio.Queue named _queue")
    if getattr(receiver, "_RTCRtpReceiver__decoder_thread", None) is not None:
        raise SeamBroken("passthrough() after the receiver started: call it on 'track'")
    receiver._RTCRtpReceiver__decoder_queue = _InlineFrames(output_q, sink)  # type: ignore[attr-defined]
    if track.kind == "video":
        receiver._RTCRtpReceiver__jitter_buffer = _WholeFrames(  # type: ignore[attr-defined]
            VIDEO_RECEIVE_PACKETS)


def is_passthrough(receiver: RTCRtpReceiver) -> bool:
    queue_ = getattr(receiver, "_RTCRtpReceiver__decoder_queue", None)
    return isinstance(queue_, _InlineFrames)


def arrival_time(packet: av.Packet) -> float:
    """The monotonic time at which the packet's frame was re-assembled."""
    value = packet.opaque
    return float(value) if isinstance(value, float) else time.monotonic()


# -- keyframe requests ---------------------------------------------------------------


async def send_pli(receiver: RTCRtpReceiver) -> bool:
    """Send a Picture Loss Indication to the remote sender of ``receiver``.

    Returns False when nothing was sent (no media seen yet on that receiver).
    """
    sources = receiver.getSynchronizationSources()
    for source in sources:
        await receiver._send_rtcp_pli(source.source)
    return bool(sources)


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` whenever the remote peer sends a PLI or FIR to ``sender``."""
    original = sender._send_keyframe

    def _send_keyframe() -> None:
        original()
        try:
            callback()
        except Exception:  # never break aiortc's RTCP handling
            logger.exception("keyframe request callback failed")

    sender._send_keyframe = _send_keyframe  # type: ignore[method-assign]


# -- host candidates -----------------------------------------------------------------


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    addresses = _host_addresses.get()
    if addresses is not None:
        return [a for a in addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]
    assert _original_get_host_addresses is not None
    return _original_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)


@contextlib.contextmanager
def host_addresses(addresses: Sequence[str] | None) -> Iterator[None]:
    """Gather host candidates on exactly ``addresses`` (127.0.0.1 allowed) in this block.

    aioice reads the addresses when a peer connection gathers, which aiortc
    does in ``setLocalDescription``: wrap that call. ``None`` keeps aioice's
    default (every interface but loopback). Scoped with a context variable, so
    concurrent calls and other peers in the process are not affected.
    """
    install()
    token = _host_addresses.set(tuple(addresses) if addresses is not None else None)
    try:
        yield
    finally:
        _host_addresses.reset(token)


# -- UDP receive buffers ---------------------------------------------------------------


def set_udp_receive_buffer(nbytes: int) -> None:
    """SO_RCVBUF for the UDP sockets ICE opens from now on, in this process.

    aioice asks for 256 KiB (``aioice.turn.UDP_SOCKET_BUFFER_SIZE``, read when
    gathering). A hub carrying many calls needs more: when its event loop is
    late by a few hundred ms (a GC pause, a busy machine), a key frame burst
    overflows the buffer and the lost packets stall the receivers' jitter
    buffers until retransmitted. The kernel caps the value at
    ``net.core.rmem_max``.
    """
    aioice.turn.UDP_SOCKET_BUFFER_SIZE = int(nbytes)


# -- aioice consent task after close ------------------------------------------------


async def _query_consent(self: aioice.ice.Connection) -> None:
    if self._closing:
        return
    assert _original_query_consent is not None
    await _original_query_consent(self)
    # It only returns (rather than being cancelled) when consent expired.
    self._cloudcounter_consent_expired = True  # type: ignore[attr-defined]


def consent_expired(pc: RTCPeerConnection) -> bool:
    """True if a transport of ``pc`` closed because ICE consent expired (RFC 7675).

    Tells a peer that vanished (no answer to consent checks for about 30 s)
    from one that closed its connection or whose port went away.
    """
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        connection = getattr(getattr(dtls.transport, "iceGatherer", None), "_connection", None)
        if getattr(connection, "_cloudcounter_consent_expired", False):
            return True
    return False


# -- installation and checks -----------------------------------------------------------


def install() -> None:
    """Wrap aiortc's decoder worker and aioice's host addresses (idempotent)."""
    global _original_decoder_worker, _original_get_host_addresses, _original_query_consent
    with _install_lock:
        if _original_decoder_worker is not None:
            return
        check_seam()
        _original_decoder_worker = _rtcrtpreceiver.decoder_worker
        _original_get_host_addresses = aioice.ice.get_host_addresses
        _original_query_consent = aioice.ice.Connection.query_consent
        _rtcrtpreceiver.decoder_worker = _decoder_worker
        aioice.ice.get_host_addresses = _get_host_addresses
        aioice.ice.Connection.query_consent = _query_consent  # type: ignore[method-assign]


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise SeamBroken(
            f"aiortc/aioice moved the seam cloudcounter.media.seam relies on: {what}. "
            f"It was written for aiortc {AIORTC_VERSION}; re-read rtcrtpreceiver.py and "
            "rtcrtpsender.py and adapt seam.py before upgrading."
        )


def _params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


def check_seam() -> None:
    """Raise :class:`SeamBroken` if an aiortc internal the seam uses has moved."""
    import aiortc
    from aiortc import jitterbuffer

    _require(aiortc.__version__ == AIORTC_VERSION, f"aiortc is {aiortc.__version__}")
    worker = _original_decoder_worker or _rtcrtpreceiver.decoder_worker
    _require(
        _params(worker) == ["loop", "input_q", "output_q", "decode_error"],
        "aiortc.rtcrtpreceiver.decoder_worker(loop, input_q, output_q, decode_error)",
    )
    receive_src = inspect.getsource(RTCRtpReceiver.receive)
    _require(
        "target=decoder_worker" in receive_src and "self._track._queue" in receive_src,
        "RTCRtpReceiver.receive starts decoder_worker with the track's _queue",
    )
    _require(
        "self.__decoder_queue: queue.Queue = queue.Queue()"
        in inspect.getsource(RTCRtpReceiver.__init__)
        and "self.__decoder_thread: Optional[threading.Thread] = None"
        in inspect.getsource(RTCRtpReceiver.__init__),
        "RTCRtpReceiver.__decoder_queue / __decoder_thread set in __init__",
    )
    _require(
        "self.__decoder_queue.put(None)" in inspect.getsource(RTCRtpReceiver),
        "RTCRtpReceiver stops its decoder with __decoder_queue.put(None)",
    )
    _require(
        "self.__jitter_buffer = JitterBuffer(capacity=512, is_video=True)"
        in inspect.getsource(RTCRtpReceiver.__init__)
        and _params(jitterbuffer.JitterBuffer.__init__)
        == ["self", "capacity", "prefetch", "is_video"],
        "RTCRtpReceiver.__jitter_buffer = JitterBuffer(capacity, prefetch, is_video)",
    )
    _require(
        "pli_flag, encoded_frame = self.__jitter_buffer.add(packet)"
        in inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
        and "def _remove_frame" in inspect.getsource(jitterbuffer.JitterBuffer),
        "RTCRtpReceiver._handle_rtp_packet: pli_flag, frame = __jitter_buffer.add(packet)",
    )
    _require(
        _params(jitterbuffer.JitterFrame.__init__) == ["self", "data", "timestamp"],
        "aiortc.jitterbuffer.JitterFrame(data, timestamp)",
    )
    _require(
        _params(RTCRtpReceiver._send_rtcp_pli) == ["self", "media_ssrc"],
        "RTCRtpReceiver._send_rtcp_pli(media_ssrc)",
    )
    _require(
        hasattr(RTCRtpReceiver, "getSynchronizationSources"),
        "RTCRtpReceiver.getSynchronizationSources()",
    )
    _require(
        "self._send_keyframe()" in inspect.getsource(RTCRtpSender._handle_rtcp_packet),
        "RTCRtpSender._handle_rtcp_packet calls self._send_keyframe() on PLI/FIR",
    )
    next_src = inspect.getsource(RTCRtpSender._next_encoded_frame)
    _require(
        "self.__encoder.pack(data)" in next_src and "isinstance(data, Frame)" in next_src,
        "RTCRtpSender._next_encoded_frame packs an av.Packet without encoding",
    )
    _require(
        "self.__decoder_queue.put((codec, encoded_frame))"
        in inspect.getsource(RTCRtpReceiver._handle_rtp_packet),
        "RTCRtpReceiver._handle_rtp_packet queues (codec, JitterFrame)",
    )
    host_fn = _original_get_host_addresses or aioice.ice.get_host_addresses
    _require(
        _params(host_fn) == ["use_ipv4", "use_ipv6"],
        "aioice.ice.get_host_addresses(use_ipv4, use_ipv6)",
    )
    _require(
        "get_host_addresses(" in inspect.getsource(aioice.ice.Connection.gather_candidates),
        "aioice.ice.Connection.gather_candidates calls get_host_addresses",
    )
    consent = _original_query_consent or aioice.ice.Connection.query_consent
    _require(
        _params(consent) == ["self"]
        and "self._query_consent_task = asyncio.create_task(self.query_consent())"
        in inspect.getsource(aioice.ice.Connection.connect)
        and "self._closing = True" in inspect.getsource(aioice.ice.Connection.close),
        "aioice.ice.Connection.connect starts query_consent(); close() sets _closing",
    )
    from aiortc.rtcicetransport import RTCIceGatherer

    _require(
        isinstance(getattr(aioice.turn, "UDP_SOCKET_BUFFER_SIZE", None), int)
        and "turn.UDP_SOCKET_BUFFER_SIZE"
        in inspect.getsource(aioice.ice.Connection.get_component_candidates),
        "aioice sets SO_RCVBUF from aioice.turn.UDP_SOCKET_BUFFER_SIZE when gathering",
    )

    _require(
        "self._connection = Connection(" in inspect.getsource(RTCIceGatherer.__init__),
        "RTCIceGatherer keeps its aioice Connection in _connection",
    )
    packet = av.Packet(b"\x00")
    try:
        packet.opaque = 1.0
        packet.is_keyframe = True
    except (AttributeError, TypeError) as exc:
        _require(False, f"av.Packet.opaque / is_keyframe are not writable ({exc})")
