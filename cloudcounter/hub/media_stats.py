"""What /metrics reads of the media layer: one :class:`LegStats` per live leg.

This is the only place that knows how the media layer keeps its figures, so that the
media forwarding can be rewritten under it. Today's :class:`~cloudcounter.media.call.
CallMedia` counts frames per direction (``stats()``), and aiortc's peer connection has
the rest (``getStats()``: transport bytes, inbound RTP packets, losses and jitter, and the
round-trip time from the participant's RTCP receiver reports). A media layer that
offers ``async leg_stats() -> list[LegStats]`` on its call object is used as it is.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

log = logging.getLogger(__name__)
CLOCK_RATES = {"audio": 48000.0, "video": 90000.0}


@dataclass(frozen=True)
class KindStats:
    """One kind of media from one participant, as the hub receives it."""

    packets: int = 0
    packets_lost: int = 0
    jitter_s: float | None = None


@dataclass(frozen=True)
class LegStats:
    """One participant's leg: cumulative counters and current gauges."""

    call_id: str
    participant: str  # customer | agent
    bytes_received: int = 0
    bytes_sent: int = 0
    video_frames: int = 0  # frames received from the participant
    rtt_s: float | None = None  # round trip to the participant (RTCP receiver reports)
    # what the participant reports losing of what the hub sends it (0..1)
    fraction_lost_sent: float | None = None
    inbound: dict[str, KindStats] | None = None  # by kind: audio, video


class LegStatsSource(Protocol):
    """What a media call object may offer directly (the rewritten forwarding)."""

    async def leg_stats(self) -> list[LegStats]: ...


async def collect(segments: Iterable[Any], timeout_s: float = 2.0) -> list[LegStats]:
    """Every live leg of the hub's segments (``HubMedia.segments.values()``)."""
    out: list[LegStats] = []
    for seg in list(segments):
        media = seg.media
        try:
            if hasattr(media, "leg_stats"):
                legs = await asyncio.wait_for(media.leg_stats(), timeout_s)
            else:
                legs = await asyncio.wait_for(_from_aiortc(seg.call_id, media), timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a closing leg must not break a scrape
            log.debug("media stats of %s unavailable: %r", seg.call_id, exc)
            continue
        out.extend(legs)
    return out


async def _from_aiortc(call_id: str, media: Any) -> list[LegStats]:
    """Today's CallMedia: frames from its counters, the rest from aiortc's getStats."""
    stats = media.stats()
    legs = getattr(media, "_legs", {})  # the one private read: {role: _Leg(pc=...)}
    out = []
    for role, leg in list(legs.items()):
        if media.closed or getattr(leg.pc, "connectionState", "closed") == "closed":
            continue
        report = await leg.pc.getStats()
        inbound: dict[str, KindStats] = {}
        received = sent = 0
        rtt: list[float] = []
        lost_sent: list[float] = []
        for item in report.values():
            kind = getattr(item, "type", "")
            if kind == "inbound-rtp":
                rate = CLOCK_RATES.get(item.kind, 90000.0)
                inbound[item.kind] = KindStats(int(item.packetsReceived),
                                               max(0, int(item.packetsLost)),
                                               float(item.jitter) / rate)
            elif kind == "transport":
                received += int(item.bytesReceived)
                sent += int(item.bytesSent)
            elif kind == "remote-inbound-rtp":
                if item.roundTripTime is not None:
                    rtt.append(float(item.roundTripTime))
                if item.fractionLost is not None:
                    lost_sent.append(float(item.fractionLost) / 256.0)  # RTCP: 8-bit fixed point
        direction = stats.from_customer if role == "customer" else stats.from_agent
        out.append(LegStats(call_id, role, received, sent, direction.video_frames,
                            max(rtt) if rtt else None,
                            max(lost_sent) if lost_sent else None, inbound))
    return out
