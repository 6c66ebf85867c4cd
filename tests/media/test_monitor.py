"""Silent monitoring (issue 15): a receive-only third peer gets the customer's and the
agent's audio and video, the very packets forwarded between the legs (real aiortc peers on
loopback); neither participant is touched; bad monitor offers are refused."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from cloudcounter.media.call import CallMedia
from cloudcounter.media.client import ClientPeer, MonitorPeer
from cloudcounter.media.errors import InvalidOffer, MediaStateError
from cloudcounter.media.sources import PatternVideoTrack, ToneAudioTrack

from conftest import LOOPBACK, connect, wait_for

pytestmark = pytest.mark.integration


def Watcher(role: str) -> MonitorPeer:  # noqa: N802 - reads like the class it makes
    return MonitorPeer([], LOOPBACK)


async def test_a_monitor_sees_and_hears_both_participants(
    make_call: Callable[..., CallMedia], make_peer: Callable[..., ClientPeer]
) -> None:
    call = make_call()
    customer = make_peer(audio=ToneAudioTrack(), video=PatternVideoTrack())
    agent = make_peer(audio=ToneAudioTrack(), video=PatternVideoTrack(320, 240))
    await connect(call, "customer", customer)
    await connect(call, "agent", agent)
    await wait_for(lambda: agent.received.frames["video"] > 10, 10, "the call's video")
    watchers = {role: Watcher(role) for role in ("customer", "agent")}
    received: Counter[str] = Counter()
    try:
        for role, w in watchers.items():
            await w.accept(await call.add_monitor(f"lead:leo/{role}", role, await w.offer()))
        assert call.monitors == ["lead:leo/customer", "lead:leo/agent"]

        def got() -> Counter[str]:
            received.clear()
            for role, w in watchers.items():
                received.update({f"{role}/{k}": n for k, n in w.received.items()})
            return received
        await wait_for(lambda: all(got()[k] >= 10 for k in (
            "customer/video", "customer/audio", "agent/video", "agent/audio")), 15,
            "both participants at the monitor")
        # the customer's picture is the customer's, the agent's the agent's (not re-encoded)
        assert watchers["customer"].video_size == (640, 480)
        assert watchers["agent"].video_size == (320, 240)
        again = Watcher("agent")
        with pytest.raises(MediaStateError):
            await call.add_monitor("lead:leo/agent", "agent", await again.offer())
        await again.close()
        # the participants go on untouched
        before = agent.received.frames["video"]
        await wait_for(lambda: agent.received.frames["video"] > before + 10, 10,
                       "the agent's video after the monitor joined")
        for role in watchers:
            assert await call.remove_monitor(f"lead:leo/{role}")
        assert call.monitors == [] and not await call.remove_monitor("lead:leo/agent")
    finally:
        for w in watchers.values():
            await w.close()


async def test_a_monitor_offer_must_be_four_recvonly_sections(
    make_call: Callable[..., CallMedia], make_peer: Callable[..., ClientPeer]
) -> None:
    call = make_call()
    sendrecv = make_peer(audio=ToneAudioTrack(), video=PatternVideoTrack())
    with pytest.raises(InvalidOffer):
        await call.add_monitor("lead:x", "customer", await sendrecv.offer())  # sendrecv
    assert call.monitors == []
    await call.close()
    with pytest.raises(MediaStateError):
        await call.add_monitor("lead:x", "customer", "v=0")
