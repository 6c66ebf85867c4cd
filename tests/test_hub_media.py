"""Media through a running hub: real aiortc peers on loopback, real recordings, real decoders."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from cloudcounter.media.client import ClientPeer
from cloudcounter.media.sources import PatternVideoTrack
from cloudcounter.sim.agent import run_agent
from cloudcounter.sim.client import Connection
from cloudcounter.sim.customer import run_customer
from cloudcounter.sim.media import SimMedia
from tests.conftest import ROOT, Hub, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.vision]


def probe(path: Path) -> dict[str, Any]:
    """Decode a recording with PyAV: frames and duration of each stream."""
    out: dict[str, Any] = {}
    with av.open(str(path)) as c:
        for stream in c.streams:
            out[stream.type] = {"codec": stream.codec_context.name, "frames": 0, "first": None,
                                "last": None}
        for frame in c.decode(*c.streams):
            kind = "video" if isinstance(frame, av.VideoFrame) else "audio"
            s = out[kind]
            s["frames"] += 1
            t = float(frame.time or 0)
            s["first"] = t if s["first"] is None else s["first"]
            s["last"] = t
    for s in out.values():
        s["duration"] = (s["last"] or 0) - (s["first"] or 0)
    return out


async def answered_call(hub: Hub) -> tuple[Connection, Connection, str]:
    """An agent (alice) and a customer connected, a card-loss call requested and answered."""
    agent = Connection(hub.url, "/agent", await hub.agent_token("alice"))
    await agent.connect()
    await agent.call("agent:status", {"status": "available"})
    cust = Connection(hub.url, "/customer", hub.customer_token())
    await cust.connect()
    call_id = (await cust.call("call:request", {"service": "card_loss"}))["call_id"]
    await agent.expect("call:offer", timeout=5)
    assert (await agent.call("call:accept", {"call_id": call_id}))["ok"]
    await cust.expect("call:accepted", timeout=5)
    return agent, cust, call_id


async def test_a_call_carries_media_both_ways_and_is_recorded(hub: Hub, face_clip: Path) -> None:
    ready = asyncio.Event()
    agent_task = asyncio.create_task(run_agent(
        hub.url, await hub.agent_token("carol"), calls=1, accept_delay=0, ready=ready,
        media_factory=lambda: SimMedia("agent")))
    await ready.wait()
    res = await run_customer(hub.url, hub.customer_token(), "car_loan", seconds=4.0,
                             media=SimMedia("customer", video=face_clip))
    agent = await agent_task
    assert res.outcome == "completed" and agent.calls == 1, (res, agent)
    cm, am = res.media, agent.media[0]
    # both directions carried video and audio (at least a second of each of the 4 s held;
    # how fast media starts and at what rate it arrives depend on the machine's load and
    # are measured by loadtests/bench_media.py, not asserted here)
    assert cm["video_frames"] > 30 and cm["audio_frames"] > 50, cm
    assert am["video_frames"] > 30 and am["audio_frames"] > 50, am
    assert am["first_frame_ms"] is not None, am
    detail = await hub.call_detail(res.call_id)  # type: ignore[arg-type]
    call, recs = detail["call"], detail["recordings"]
    kinds = [e["kind"] for e in detail["timeline"]]
    for k in ("media.negotiated", "recording.started", "recording.stopped"):
        assert k in kinds, kinds
    assert sorted(r["participant"] for r in recs) == ["agent", "customer"]
    assert recs[0]["started_at"] == recs[1]["started_at"]  # one time origin for both files
    call_s = call["duration_s"]
    for rec in recs:
        path = Path(hub.settings.recordings_dir).glob(f"**/{res.call_id}-{rec['participant']}.webm")
        (file,) = list(path)
        assert hashlib.sha256(file.read_bytes()).hexdigest() == rec["sha256"]
        assert rec["size_bytes"] == file.stat().st_size
        info = await asyncio.to_thread(probe, file)
        assert info["video"]["codec"] == "vp8" and info["audio"]["codec"] == "opus"
        assert info["video"]["frames"] > 30 and info["audio"]["frames"] > 50, info
        # the file covers the call's media and no more; its audio and video run together
        # (both timed on the same arrival clock)
        for kind in ("video", "audio"):
            assert info[kind]["duration"] <= call_s + 0.5, (rec["participant"], kind, info)
        assert abs(info["video"]["duration"] - info["audio"]["duration"]) < 0.5, info
        assert abs(info["video"]["first"] - info["audio"]["first"]) < 0.5, info
        # playback with range requests, auditors only, on the timeline
        status, body, headers = await hub.get(rec["url"], headers={"Range": "bytes=0-99"})
        assert status == 206 and len(body) == 100
        assert headers["Content-Range"].startswith("bytes 0-99/")
    assert (await hub.get(recs[0]["url"], user="alice"))[0] == 403  # an agent may not
    detail = await hub.call_detail(res.call_id)
    assert "recording.accessed" in [e["kind"] for e in detail["timeline"]]
    # the real call's record proves itself: its chain and both recordings (supervision)
    status, body, _ = await hub.get(f"/api/audit/calls/{res.call_id}/verify")
    assert status == 200 and body["ok"] is True, body


async def test_unwritable_recordings_dir_keeps_the_call_and_tells_the_agent(
        hub_factory: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the recordings directory should be")
    hub = await hub_factory(recordings_dir=blocker / "rec")
    agent, cust, call_id = await answered_call(hub)
    cm, am = SimMedia("customer"), SimMedia("agent")
    await asyncio.gather(cm.start(cust, call_id), am.start(agent, call_id))
    _, failed = await agent.expect("call:recording_failed", timeout=10)
    assert failed["call_id"] == call_id and "not being recorded" in failed["message"]
    peer = cm.peer
    assert peer is not None
    await wait_until(lambda: peer.received.frames["video"] > 5, 30, "media going on")
    assert (await agent.call("call:hangup", {"call_id": call_id}))["ok"]
    await cm.stop()
    await am.stop()
    detail = await hub.call_detail(call_id)
    kinds = [e["kind"] for e in detail["timeline"]]
    assert "recording.failed" in kinds and kinds[-1] in ("call.ended", "recording.stopped",
                                                         "agent.state")
    assert all(r["error"] for r in detail["recordings"])
    for c in (agent, cust):
        await c.close()


async def test_offer_without_vp8_is_refused_with_a_code(hub: Hub) -> None:
    agent, cust, call_id = await answered_call(hub)
    h264_only = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
                 "m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 127.0.0.1\r\n"
                 "a=rtpmap:102 H264/90000\r\na=sendrecv\r\na=mid:0\r\n")
    reply = await cust.call("media:offer", {"call_id": call_id, "type": "offer",
                                            "sdp": h264_only})
    assert reply["ok"] is False and reply["error"]["code"] == "unsupported_codec"
    assert "h264" in reply["error"]["message"]
    # the call itself goes on and ends normally
    assert (await agent.call("call:hangup", {"call_id": call_id}))["ok"]
    for c in (agent, cust):
        await c.close()


async def test_a_participant_can_offer_again_and_media_resumes(hub: Hub) -> None:
    """A browser that lost its peer connection offers again: its leg is replaced, the other
    leg and the recording go on."""
    agent, cust, call_id = await answered_call(hub)
    first, am = SimMedia("customer"), SimMedia("agent")
    await asyncio.gather(first.start(cust, call_id), am.start(agent, call_id))
    await first.stop()  # the customer's browser drops its peer connection
    second = SimMedia("customer")
    await second.start(cust, call_id)  # and offers again on the same call
    assert am.peer is not None
    seen = am.peer.received.frames["video"]
    agent_peer, customer_peer = am.peer, second.peer
    assert customer_peer is not None
    await wait_until(lambda: agent_peer.received.frames["video"] > seen + 20  # the agent sees
                     and customer_peer.received.frames["video"] > 20,  # the customer again
                     30, "video both ways after the new offer")
    assert (await agent.call("call:hangup", {"call_id": call_id}))["ok"]
    await second.stop()
    await am.stop()
    detail = await hub.call_detail(call_id)
    negotiated = [e["payload"] for e in detail["timeline"] if e["kind"] == "media.negotiated"]
    assert [p["renegotiated"] for p in negotiated if p["role"] == "customer"] == [False, True]
    assert len(detail["recordings"]) == 2  # still one file per participant
    for c in (agent, cust):
        await c.close()


async def test_a_vanished_customer_ends_the_call(hub: Hub, face_clip: Path) -> None:
    """The customer's phone dies (SIGKILL: no hang-up, no BYE): the call ends as failed."""
    agent = Connection(hub.url, "/agent", await hub.agent_token("alice"))
    await agent.connect()
    await agent.call("agent:status", {"status": "available"})
    env = {**os.environ, "CLOUDCOUNTER_DEMO": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloudcounter", "sim", "customer", "--url", hub.url, "--token",
         hub.customer_token(), "--service", "card_loss", "--seconds", "60", "--video",
         str(face_clip)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _, offer = await agent.expect("call:offer", timeout=30)
        call_id = offer["call_id"]
        await agent.call("call:accept", {"call_id": call_id})
        am = SimMedia("agent")
        await am.start(agent, call_id)
        while am.peer is not None and am.peer.received.frames["video"] < 10:
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        _, ended = await agent.expect("call:ended", timeout=40)
        # the grace period for its socket or ICE consent for its leg, whichever comes first
        assert ended["call_id"] == call_id and ended["reason"] == "failed"
        await am.stop()
    finally:
        proc.kill()
        proc.wait()
    await agent.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_hub_killed_mid_call_leaves_playable_recordings(tmp_path: Path,
                                                              face_clip: Path) -> None:
    port = free_port()
    rec_dir = tmp_path / "rec"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDCOUNTER_")}
    env.update(CLOUDCOUNTER_DEMO="1",
               CLOUDCOUNTER_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/h.db",
               CLOUDCOUNTER_RECORDINGS_DIR=str(rec_dir), CLOUDCOUNTER_PORT=str(port),
               CLOUDCOUNTER_ICE_SERVERS="[]", CLOUDCOUNTER_MEDIA_HOST_ADDRESSES="127.0.0.1",
               CLOUDCOUNTER_LOG_LEVEL="WARNING", CLOUDCOUNTER_VISION_WORKERS="0",
               PYTHONWARNINGS="ignore")
    exe = [sys.executable, "-m", "cloudcounter"]
    for step in (["db", "upgrade"], ["demo", "seed"]):
        subprocess.run([*exe, *step], env=env, check=True, capture_output=True, cwd=ROOT)
    hub = subprocess.Popen([*exe, "serve"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    conns: list[Connection] = []
    medias: list[SimMedia] = []
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(url + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
        from cloudcounter.hub.auth import mint_customer_token
        from cloudcounter.hub.settings import DEMO_CUSTOMER_TOKEN_SECRET
        from cloudcounter.sim.client import login
        agent = Connection(url, "/agent", await login(url, "alice", "alice-demo-1"))
        cust = Connection(url, "/customer", mint_customer_token(
            DEMO_CUSTOMER_TOKEN_SECRET, "cus_demo_barack", 60))
        conns = [agent, cust]
        await agent.connect()
        await agent.call("agent:status", {"status": "available"})
        await cust.connect()
        call_id = (await cust.call("call:request", {"service": "card_loss"}))["call_id"]
        await agent.expect("call:offer", timeout=10)
        await agent.call("call:accept", {"call_id": call_id})
        medias = [SimMedia("customer", video=face_clip), SimMedia("agent")]
        await asyncio.gather(medias[0].start(cust, call_id), medias[1].start(agent, call_id))
        # 3 s of the customer's video forwarded to the agent: the hub has recorded it (the
        # writer flushes every second, so at most the last second may be lost)
        agent_peer = medias[1].peer
        assert agent_peer is not None
        await wait_until(lambda: agent_peer.received.frames["video"] >= 90, 60, "3 s of video")
        hub.send_signal(signal.SIGKILL)
        hub.wait()
    finally:
        if hub.poll() is None:
            hub.kill()
            hub.wait()
        for m in medias:
            await m.stop()
        for c in conns:
            await c.close()
    files = sorted(rec_dir.glob("**/*.webm"))
    assert [f.name for f in files] == [f"{call_id}-agent.webm", f"{call_id}-customer.webm"]
    for f in files:
        info = await asyncio.to_thread(probe, f)  # decodes up to the kill point
        assert info["video"]["frames"] > 30, (f.name, info)
        assert info["video"]["duration"] > 1.5 and info["audio"]["duration"] > 1.5, info


async def test_sequential_calls_leave_no_tasks_or_peers(hub: Hub) -> None:
    ready = asyncio.Event()
    agent_task = asyncio.create_task(run_agent(
        hub.url, await hub.agent_token("carol"), calls=5, accept_delay=0, ready=ready,
        media_factory=lambda: SimMedia("agent")))
    await ready.wait()
    for _ in range(5):
        res = await run_customer(hub.url, hub.customer_token(), "card_loss", seconds=0.5,
                                 media=SimMedia("customer"))
        assert res.outcome == "completed", res
    assert (await agent_task).calls == 5
    assert hub.ctx.media.segments == {}  # every call's media is closed
    # the autouse fixture then fails the test if any task or peer connection is left


class StoppableVideo(PatternVideoTrack):
    """A camera whose frames stop on ``stop_sending()`` (the peer connection stays up)."""

    def __init__(self) -> None:
        super().__init__(320, 240)
        self.sending = asyncio.Event()
        self.sending.set()

    def stop_sending(self) -> None:
        self.sending.clear()

    async def recv(self) -> Any:
        await self.sending.wait()
        return await super().recv()


async def test_video_that_stops_is_restarted_and_both_sides_are_told(hub_factory: Any) -> None:
    """The customer's camera stops sending although the connection stays up: the hub
    tells the agent and the customer that the customer's media stalled, asks the customer
    to renegotiate, and reports the media flowing again once the new leg delivers."""
    hub = await hub_factory(media_stall_s=1.0, media_start_timeout_s=4.0, media_restarts=2,
                            vision_workers=0)  # no analysis: only the media matters here
    agent, cust, call_id = await answered_call(hub)
    camera = StoppableVideo()
    first = ClientPeer(audio=None, video=camera)
    reply = await cust.call("media:offer", {"call_id": call_id, "type": "offer",
                                            "sdp": await first.offer()})
    await first.accept(reply["sdp"])
    media = hub.ctx.media.segments[call_id].media
    await wait_until(lambda: media.stats().from_customer.video_frames > 10, 10, "video")
    camera.stop_sending()
    _, news = await agent.expect("call:media", timeout=10)
    assert news == {"call_id": call_id, "participant": "customer", "state": "stalled",
                    "silent_s": news["silent_s"], "restarts": 1}
    assert news["silent_s"] >= 1.0
    _, told = await cust.expect("call:media", timeout=5)
    assert told == news
    _, restart = await cust.expect("media:restart", timeout=5)
    assert restart == {"call_id": call_id, "reason": "no_media", "attempt": 1}
    # the customer's app renegotiates with a new peer connection
    second = ClientPeer(audio=None, video=PatternVideoTrack(320, 240))
    reply = await cust.call("media:offer", {"call_id": call_id, "type": "offer",
                                            "sdp": await second.offer()})
    await second.accept(reply["sdp"])
    _, news = await agent.expect("call:media", timeout=10)
    assert (news["participant"], news["state"]) == ("customer", "flowing")
    assert (await agent.call("call:hangup", {"call_id": call_id}))["ok"]
    for peer in (first, second):
        await peer.close()
    await cust.close()
    await agent.close()
    timeline = [e["kind"] for e in (await hub.call_detail(call_id))["timeline"]]
    stalled, restarted, restored = (timeline.index(k) for k in (
        "media.stalled", "media.restart_requested", "media.restored"))
    assert stalled < restored and restarted < restored


async def test_a_leg_closed_before_its_replacement_keeps_the_call(hub_factory: Any) -> None:
    """A phone switching networks closes its old peer connection and then offers a new
    one: the call goes on (the hub asks for the new leg and waits for it); a leg that is
    never replaced ends the call after ``media_start_timeout_s``."""
    hub = await hub_factory(media_start_timeout_s=3.0, vision_workers=0)
    agent, cust, call_id = await answered_call(hub)
    peers: list[ClientPeer] = []

    async def offer() -> ClientPeer:
        peer = ClientPeer(audio=None, video=PatternVideoTrack(320, 240))
        peers.append(peer)
        reply = await cust.call("media:offer", {"call_id": call_id, "type": "offer",
                                                "sdp": await peer.offer()})
        assert reply["ok"], reply
        await peer.accept(reply["sdp"])
        return peer

    first = await offer()
    media = hub.ctx.media.segments[call_id].media
    await wait_until(lambda: media.stats().from_customer.video_frames > 5, 10, "video")
    await first.close()  # the old connection goes first (DTLS close)
    _, restart = await cust.expect("media:restart", timeout=10)
    assert restart["call_id"] == call_id and restart["reason"] == "connection_closed"
    _, news = await agent.expect("call:media", timeout=5)
    assert (news["participant"], news["state"]) == ("customer", "stalled")
    frames = media.stats().from_customer.video_frames
    await offer()
    _, news = await agent.expect("call:media", "call:ended", timeout=10)
    assert news["state"] == "flowing", news  # not ended: restored
    assert media.stats().from_customer.video_frames > frames
    # this time nobody replaces the leg: the call ends once the wait is over
    await peers[-1].close()
    _, ended = await agent.expect("call:ended", timeout=15)
    assert ended["call_id"] == call_id and ended["reason"] == "completed"
    for peer in peers:
        await peer.close()
    await cust.close()
    await agent.close()
    timeline = [(e["kind"], e["payload"]) for e in (await hub.call_detail(call_id))["timeline"]]
    kinds = [k for k, _ in timeline]
    assert kinds.count("media.leg_ended") == 2 and "media.restored" in kinds
    (end,) = [p for k, p in timeline if k == "call.ended"]
    assert end.get("cause") == "connection_closed", end
