"""The hub's Socket.IO server: python-socketio's ``AsyncServer`` hardened at the packet edge.

python-socketio hands a client EVENT packet named ``connect`` or ``disconnect`` to the same
handlers as a real connection or disconnection, and lets malformed packets raise inside
its tasks. This subclass refuses both before dispatch: an event whose name is not a plain
string, or is reserved, gets an ``invalid_message`` acknowledgement; an undecodable or
binary packet is dropped (the protocol is JSON only). It overrides two internal methods of
python-socketio 5.18 (pinned); ``tests/test_security.py`` fails if they stop being called.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio
from socketio import packet

from cloudcounter.errors import InvalidMessage
from cloudcounter.signaling import edge

log = logging.getLogger(__name__)
RESERVED = frozenset({"connect", "disconnect", "connect_error"})
MAX_EVENT_NAME = 64


class JsonPacket(packet.Packet):
    """The protocol is JSON only: skip python-socketio's per-packet scan for binary data
    (a recursive walk of every payload, ~10 % of the hub's CPU under load). Binary packets
    from clients are dropped by :class:`HubSocketServer`."""

    uses_binary_events = False


class HubSocketServer(socketio.AsyncServer):
    refused_packets = 0

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        if not isinstance(data, str):
            self.refused_packets += 1
            log.debug("dropped a binary frame from %s", eio_sid)
            return
        try:
            pkt = self.packet_class(encoded_packet=data)
        except Exception:  # noqa: BLE001 - anything a client sends must not raise
            self.refused_packets += 1
            log.debug("dropped an undecodable packet from %s", eio_sid)
            return
        if pkt.packet_type in (packet.BINARY_EVENT, packet.BINARY_ACK, packet.CONNECT_ERROR) \
                or pkt.packet_type not in (packet.CONNECT, packet.DISCONNECT, packet.EVENT,
                                           packet.ACK):
            self.refused_packets += 1
            return
        try:
            await super()._handle_eio_message(eio_sid, data)
        except (ValueError, TypeError, KeyError, AttributeError):
            self.refused_packets += 1
            log.debug("dropped a malformed packet from %s", eio_sid, exc_info=True)

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: int | None,
                            data: Any) -> None:
        if not (isinstance(data, list) and data and isinstance(data[0], str)
                and data[0] not in RESERVED and len(data[0]) <= MAX_EVENT_NAME):
            self.refused_packets += 1
            if id is not None and isinstance(id, int):
                reply = edge.error(InvalidMessage(
                    "an event is a non-reserved name of at most 64 characters and a payload"))
                await self._send_packet(eio_sid, self.packet_class(
                    packet.ACK, namespace=namespace or "/", id=id, data=[reply]))
            return
        await super()._handle_event(eio_sid, namespace, id, data)
