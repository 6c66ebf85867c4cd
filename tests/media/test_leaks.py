"""Nothing outlives its call: 20 short calls in a row leave no task, thread or peer."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

import pytest
from aiortc import RTCPeerConnection

from cloudcounter.media.call import CallMedia
from cloudcounter.media.client import ClientPeer
from cloudcounter.media.sources import PatternVideoTrack, ToneAudioTrack

from conftest import LOOPBACK, connect, wait_for

pytestmark = pytest.mark.integration


async def test_twenty_sequential_calls_leak_nothing(tmp_path: Path) -> None:
    pcs: list[weakref.ref[RTCPeerConnection]] = []
    for i in range(20):
        call = CallMedia(call_id=f"leak{i}", ice_servers=[], host_addresses=LOOPBACK)
        call.start_recording(tmp_path)
        tap = call.add_tap(maxsize=1)
        customer = ClientPeer(audio=ToneAudioTrack(), video=PatternVideoTrack(160, 120))
        agent = ClientPeer(audio=ToneAudioTrack(), video=PatternVideoTrack(160, 120))
        try:
            await connect(call, "customer", customer)
            await connect(call, "agent", agent)
            received = agent.received
            await wait_for(lambda: received.frames["video"] > 2, 5, "video at the agent")
        finally:
            pcs += [weakref.ref(customer.pc), weakref.ref(agent.pc)]
            pcs += [weakref.ref(leg.pc) for leg in call._legs.values()]
            await customer.close()
            await agent.close()
            infos = await call.close()
        assert tap.closed
        assert set(infos) == {"customer", "agent"}
        del call, customer, agent, tap
    await asyncio.sleep(0.2)
    gc.collect()
    alive = [ref for ref in pcs if ref() is not None]
    assert not alive, f"{len(alive)} of {len(pcs)} peer connections outlived their call"
    # no_leaks (conftest) then checks tasks and threads.
