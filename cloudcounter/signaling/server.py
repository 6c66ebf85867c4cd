"""The hub's Socket.IO server: python-socketio's ``AsyncServer`` hardened at the packet edge.

python-socketio hands a client EVENT packet named ``connect`` or ``disconnect`` to the same
handlers as a real connection or disconnection, and lets malformed packets raise inside
its tasks. This subclass refuses both before dispatch: an event whose name is not a plain
string, or is reserved, gets an ``invalid_message`` acknowledgement; an undecodable or
binary packet is dropped (the protocol is JSON only). It overrides two internal methods of
python-socketio 5.18 (pinned); ``tests/test_security.py`` fails if they stop being called.

One level down, Engine.IO's WebSocket loop decodes each frame outside its error handling:
a frame that is not an Engine.IO packet (``"\\x00"``, ``"bxyz"``, ``"4[[[["`` nested past the
recursion limit) raised out of it, and the connection died without its disconnect
handlers (an agent stayed online, its connection slot was never freed).
:class:`GuardedWebSocket` drops such frames before Engine.IO sees them.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp
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


class GuardedWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    """Engine.IO's aiohttp WebSocket, passing on only frames Engine.IO can decode."""

    refused = 0

    async def wait(self) -> Any:
        while True:
            data = await super().wait()
            if isinstance(data, bytes) or valid_eio_frame(data):
                return data
            GuardedWebSocket.refused += 1


def valid_eio_frame(data: str) -> bool:
    if not data or data[0] not in "0123456":
        return False
    if len(data) == 1 or data[1].isnumeric():  # the usual case: nothing for Engine.IO to parse
        return True
    try:
        eio_packet.Packet(encoded_packet=data)
    except Exception:  # noqa: BLE001 - ValueError, RecursionError...
        return False
    return True


class HubSocketServer(socketio.AsyncServer):
    refused_packets = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # a copy: the driver table is shared by every Engine.IO server in the process
        self.eio._async = {**self.eio._async, "websocket": GuardedWebSocket}

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
        if pkt.packet_type == packet.BINARY_EVENT and isinstance(pkt.id, int) \
                and self.manager.sid_from_eio_sid(eio_sid, pkt.namespace or "/") is not None:
            # every message with an id gets exactly one acknowledgement, this one too; its
            # attachments (binary frames) are dropped above as they arrive
            self.refused_packets += 1
            await self._send_packet(eio_sid, self.packet_class(
                packet.ACK, namespace=pkt.namespace or "/", id=pkt.id, data=[edge.error(
                    InvalidMessage("the protocol is JSON only: binary attachments are "
                                   "refused", code="binary_not_supported"))]))
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
