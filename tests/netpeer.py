"""A customer's phone in a network namespace: run by the network tests as
``ip netns exec NS python -m tests.netpeer URL TOKEN SERVICE [WIDTHxHEIGHT]``.

It connects to the hub at ``URL``, requests a call, starts media once an agent answers
(candidates gathered on whatever interfaces the namespace has, no STUN/TURN), then obeys
commands read from stdin, one a line, answering each with one JSON line on stdout:

* ``stats``: what it has received so far (``video``, ``audio`` frames) and its call;
* ``switch URL``: the phone changed networks: close the old peer connection, drop the
  old signalling connection without waiting for it, reconnect to ``URL`` (the hub's
  address on the new network), and offer a new leg for the same call (``call:state``
  brings the call and fresh ICE servers);
* ``close``: close the peer connection only (while the old network still works: the
  hub sees the DTLS close);
* ``hangup``: hang up and exit.

The first line it prints is ``{"ready": true, "call_id": ...}`` once media is negotiated.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from aiortc import RTCRtpSender

from cloudcounter.media.client import ClientPeer
from cloudcounter.media.sources import PatternVideoTrack, ToneAudioTrack
from cloudcounter.sim.client import Connection


RETRANSMISSIONS = [0]  # packets the hub asked again (NACK), over every leg


def count_retransmissions() -> None:
    original = RTCRtpSender._retransmit

    async def counted(self: RTCRtpSender, sequence_number: int) -> None:
        RETRANSMISSIONS[0] += 1
        await original(self, sequence_number)

    RTCRtpSender._retransmit = counted  # type: ignore[method-assign]


class Phone:
    def __init__(self, token: str, size: tuple[int, int] = (320, 240)) -> None:
        self.token = token
        self.size = size
        self.conn: Connection | None = None
        self.peer: ClientPeer | None = None
        self.call_id = ""
        self.ice_servers: list[dict[str, Any]] = []
        self.received = {"video": 0, "audio": 0}  # over every leg
        self.legs = 0
        self.dropping: list[asyncio.Future[None]] = []

    async def connect(self, url: str) -> Connection:
        conn = Connection(url, "/customer", self.token)
        await conn.connect()
        return conn

    async def start_call(self, url: str, service: str) -> None:
        self.conn = await self.connect(url)
        reply = await self.conn.call("call:request", {"service": service})
        assert reply.get("ok"), reply
        self.call_id = reply["call_id"]
        _, accepted = await self.conn.expect("call:accepted", timeout=60)
        self.ice_servers = accepted.get("ice_servers") or []
        await self.offer()

    async def offer(self) -> None:
        assert self.conn is not None
        self.peer = ClientPeer(audio=ToneAudioTrack(), video=PatternVideoTrack(*self.size),
                               ice_servers=self.ice_servers, host_addresses=None)
        self.legs += 1
        reply = await self.conn.call("media:offer", {"call_id": self.call_id, "type": "offer",
                                                     "sdp": await self.peer.offer()})
        assert reply.get("ok"), reply
        await self.peer.accept(reply["sdp"])

    def _count(self) -> dict[str, Any]:
        frames: dict[str, Any] = dict(self.received)
        if self.peer is not None:
            for kind in self.received:
                frames[kind] += self.peer.received.frames[kind]
        frames["retransmitted"] = RETRANSMISSIONS[0]
        frames["target_bitrate"] = self.target_bitrate()
        return frames

    def target_bitrate(self) -> int | None:
        """What the video encoder aims at now (aiortc follows the hub's REMB)."""
        if self.peer is None:
            return None
        for transceiver in self.peer.pc.getTransceivers():
            if transceiver.kind == "video":
                encoder = getattr(transceiver.sender, "_RTCRtpSender__encoder", None)
                rate = getattr(encoder, "target_bitrate", None)
                return int(rate) if rate is not None else None
        return None

    async def close_peer(self) -> None:
        if self.peer is not None:
            for kind in self.received:
                self.received[kind] += self.peer.received.frames[kind]
            peer, self.peer = self.peer, None
            await peer.close()

    async def switch(self, url: str) -> dict[str, Any]:
        steps: dict[str, float] = {}
        t0 = time.monotonic()
        # the old network is gone: its peer connection closes first (nothing reaches the
        # hub: it notices the silence), its socket is dropped without a goodbye
        await self.close_peer()
        steps["closed_peer"] = time.monotonic() - t0
        old, self.conn = self.conn, None
        if old is not None:  # in the background, as an app would: the old link is dead
            self.dropping.append(asyncio.ensure_future(drop(old)))
        self.conn = await self.connect(url)
        _, state = await self.conn.expect("call:state", timeout=20)
        assert state.get("call_id") == self.call_id and state.get("state") == "in_call", state
        steps["reconnected"] = time.monotonic() - t0
        self.ice_servers = state.get("ice_servers") or []
        await self.offer()
        steps["answered"] = time.monotonic() - t0
        return {"ok": True, "state": state["state"],
                "steps_s": {k: round(v, 3) for k, v in steps.items()}}

    async def hangup(self) -> dict[str, Any]:
        assert self.conn is not None
        reply = await self.conn.call("call:hangup", {"call_id": self.call_id})
        counts = self._count()
        await self.close_peer()
        await self.conn.close()
        await asyncio.gather(*self.dropping)
        return {"ok": bool(reply.get("ok")), **counts}


async def drop(conn: Connection) -> None:
    """Abandon a connection whose network is gone (no goodbye can get through)."""
    try:
        await asyncio.wait_for(conn.sio.eio.disconnect(abort=True), 5)
    except Exception:  # noqa: BLE001 - nothing to save on a dead link
        pass


def say(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


async def main(url: str, token: str, service: str, size: str = "320x240") -> None:
    count_retransmissions()
    width, height = (int(v) for v in size.split("x"))
    phone = Phone(token, (width, height))
    await phone.start_call(url, service)
    say({"ready": True, "call_id": phone.call_id})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line:
            await phone.close_peer()
            return
        command, _, arg = line.partition(" ")
        try:
            if command == "stats":
                say({"ok": True, "call_id": phone.call_id, "legs": phone.legs, **phone._count()})
            elif command == "close":
                await phone.close_peer()
                say({"ok": True})
            elif command == "switch":
                say(await phone.switch(arg))
            elif command == "hangup":
                say(await phone.hangup())
                return
            else:
                say({"ok": False, "error": f"unknown command {command!r}"})
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails
            say({"ok": False, "error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
