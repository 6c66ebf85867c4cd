"""A whole recorded call in one process, for the SIGKILL test (not collected by pytest).

usage: python run_call.py RECORDINGS_DIR CLIP.webm
Prints "READY <seconds since the call's origin>" once both participants are
being recorded, then every 0.25 s "AT <seconds>": the arrival time (since the origin) of the
latest packet of both participants, each handed to its recorder on arrival. Runs until
killed.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from cloudcounter.media.call import CallMedia
from cloudcounter.media.client import ClientPeer
from cloudcounter.media.sources import EncodedFilePlayer, PatternVideoTrack, ToneAudioTrack

LOOPBACK = ["127.0.0.1"]


async def main(directory: Path, clip: Path) -> None:
    call = CallMedia(call_id="killed", ice_servers=[], host_addresses=LOOPBACK)
    call.start_recording(directory)
    player = EncodedFilePlayer(clip)
    customer = ClientPeer(audio=player.audio, video=player.video, host_addresses=LOOPBACK)
    agent = ClientPeer(
        audio=ToneAudioTrack(), video=PatternVideoTrack(320, 240), host_addresses=LOOPBACK
    )
    for role, peer in (("customer", customer), ("agent", agent)):
        await peer.accept(await call.answer(role, await peer.offer()))  # type: ignore[arg-type]
    while True:
        stats = call.stats()
        if stats.from_customer.video_frames > 5 and stats.from_agent.video_frames > 5:
            break
        await asyncio.sleep(0.05)
    print(f"READY {time.monotonic() - call.origin:.3f}", flush=True)
    while True:
        await asyncio.sleep(0.25)
        stats = call.stats()
        latest = min(stats.from_customer.last_packet_at or 0, stats.from_agent.last_packet_at or 0)
        print(f"AT {latest - call.origin:.3f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
