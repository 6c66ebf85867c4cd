"""A customer peer in a process of its own, for the vanishing-peer test (not collected).

Prints its offer as one JSON line, reads the answer as one JSON line, then
sends a test pattern and a tone until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys

from cloudcounter.media.client import ClientPeer
from cloudcounter.media.sources import PatternVideoTrack, ToneAudioTrack


async def main() -> None:
    peer = ClientPeer(
        audio=ToneAudioTrack(), video=PatternVideoTrack(320, 240), host_addresses=["127.0.0.1"]
    )
    print(json.dumps({"offer": await peer.offer()}), flush=True)
    line = await asyncio.to_thread(sys.stdin.readline)
    await peer.accept(json.loads(line)["answer"])
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main())
