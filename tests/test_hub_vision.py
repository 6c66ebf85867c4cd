"""Identity and liveness checks in live calls: real faces streamed through a running hub.

The customer simulator sends a real clip (or a still photo made into a video) over
WebRTC; the hub decodes it from the media tap, analyses it in the vision pool and
reports to the agent's socket, the customer's socket and the timeline, with evidence
frames saved beside the recordings.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fractions
import random
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from cloudcounter.hub.analysis.call import AnalysisConfig, CallAnalysis
from cloudcounter.hub.analysis.policy import AlertDebouncer, Sampler, SamplingConfig
from cloudcounter.media.tap import TapClosed
from cloudcounter.sim.client import Connection
from cloudcounter.sim.media import SimMedia
from cloudcounter.vision import FaceAnalysis, FaceBox, FaceMeasures, FrameAnalysis
from tests.conftest import Hub

pytestmark = [pytest.mark.integration, pytest.mark.vision]


# ------------------------------------------------------------------ clips
@pytest.fixture(scope="session")
def mouth_clip(faces: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mouth_open.mp4 (openings at 2.05-3.3 s and 3.75-5.2 s of 7.2 s), aspect kept."""
    from cloudcounter.media.sources import prepare_vp8_webm

    target = tmp_path_factory.mktemp("clips") / "mouth.webm"
    return prepare_vp8_webm(faces / "video/mouth_open.mp4", target, size=(480, 480), gop=30)


def still_webm(photo: Path, target: Path, seconds: float = 3.0, fps: int = 30) -> Path:
    """A photo presented as a video (a printed photo held to the camera), with silence."""
    import cv2

    bgr = cv2.imread(str(photo))
    h, w = bgr.shape[:2]
    scale = 480 / h
    small = cv2.resize(bgr, (round(w * scale) // 2 * 2, 480), interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 128, dtype=np.uint8)
    x = (640 - small.shape[1]) // 2
    canvas[:, x:x + small.shape[1]] = small[:, :640]
    picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(canvas[:, :, ::-1]), format="rgb24")
    with av.open(str(target), "w", format="webm") as out:
        v: Any = out.add_stream("libvpx", rate=fps)
        v.width, v.height, v.pix_fmt, v.gop_size = 640, 480, "yuv420p", fps
        v.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        a: Any = out.add_stream("libopus", rate=48000)
        a.layout = "stereo"
        for i in range(int(seconds * fps)):
            frame = picture.reformat(format="yuv420p")
            frame.pts, frame.time_base = i, fractions.Fraction(1, fps)
            out.mux(v.encode(frame))
        for i in range(int(seconds * 50)):
            silence = av.AudioFrame.from_ndarray(np.zeros((1, 960 * 2), dtype=np.int16),
                                                 format="s16", layout="stereo")
            silence.sample_rate, silence.pts = 48000, i * 960
            out.mux(a.encode(silence))
        out.mux(v.encode(None))
        out.mux(a.encode(None))
    return target


@pytest.fixture(scope="session")
def obama_still(faces: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return still_webm(faces / "photos/obama.jpg", tmp_path_factory.mktemp("clips") / "obama.webm")


# ------------------------------------------------------------------ helpers
class Client:
    """A socket with every event it received kept in order (Connection.expect drops)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.log: list[tuple[str, dict[str, Any]]] = []

    async def wait(self, name: str, timeout: float = 45.0, **match: Any) -> dict[str, Any]:
        """The next ``name`` event matching ``match``. The generous default covers a vision
        pool that is still loading its models on a busy machine."""
        for event, data in self.log:
            if event == name and all(data.get(k) == v for k, v in match.items()):
                self.log.remove((event, data))
                return data
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event, data = await asyncio.wait_for(self.conn.events.get(), deadline - loop.time())
            if event == name and all(data.get(k) == v for k, v in match.items()):
                return data
            self.log.append((event, data))

    def seen(self, name: str) -> list[dict[str, Any]]:
        return [d for e, d in self.log if e == name]


@dataclasses.dataclass
class Rig:
    call_id: str
    agent: Client
    customer: Client
    medias: list[SimMedia]

    async def close(self) -> None:
        await self.agent.conn.call("call:hangup", {"call_id": self.call_id})
        for m in self.medias:
            await m.stop()
        for c in (self.agent, self.customer):
            await c.conn.close()


def no_auto_checks(hub: Hub, service: str) -> None:
    hub.ctx.services[service] = dataclasses.replace(hub.ctx.services[service], auto_checks=())


async def answered_call(hub: Hub, service: str, video: Path | None, *, agent: str = "alice",
                        customer: str = "cus_demo_barack") -> Rig:
    a = Client(Connection(hub.url, "/agent", await hub.agent_token(agent)))
    await a.conn.connect()
    await a.conn.call("agent:status", {"status": "available"})
    c = Client(Connection(hub.url, "/customer", hub.customer_token(customer)))
    await c.conn.connect()
    call_id = (await c.conn.call("call:request", {"service": service}))["call_id"]
    await a.wait("call:offer", call_id=call_id)
    assert (await a.conn.call("call:accept", {"call_id": call_id}))["ok"]
    await c.wait("call:accepted", call_id=call_id)
    medias = [SimMedia("customer", video=video), SimMedia("agent")] if video else []
    if medias:
        await asyncio.gather(medias[0].start(c.conn, call_id), medias[1].start(a.conn, call_id))
    return Rig(call_id, a, c, medias)


async def video_arrived(hub: Hub, call_id: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        analysis = hub.ctx.analysis.calls.get(call_id)
        if analysis is not None and analysis.video_at is not None:
            return
        assert loop.time() < deadline, "no customer video reached the analysis"
        await asyncio.sleep(0.05)


async def find_files(hub: Hub, name: str) -> list[Path]:
    root = Path(hub.settings.recordings_dir)
    return await asyncio.to_thread(lambda: list(root.glob(f"**/{name}")))


async def timeline(hub: Hub, call_id: str) -> list[dict[str, Any]]:
    return list((await hub.call_detail(call_id))["timeline"])


# ------------------------------------------------------------------ integration
async def test_identity_check_in_a_call_reports_no_match_with_evidence(
        hub: Hub, face_clip: Path) -> None:
    """talking.mp4 is not Obama (the customer's reference photo): no_match, evidence saved."""
    no_auto_checks(hub, "card_loss")
    rig = await answered_call(hub, "card_loss", face_clip)
    agent = rig.agent.conn
    bad = await agent.call("check:liveness", {"call_id": rig.call_id, "count": 9})
    assert bad["error"]["code"] == "invalid_message"
    other = await agent.call("check:identity", {"call_id": "call_" + "0" * 16})
    assert other["error"]["code"] == "unknown_call"
    await video_arrived(hub, rig.call_id)
    ack = await agent.call("check:identity", {"call_id": rig.call_id})
    assert ack["ok"], ack
    again = await agent.call("check:identity", {"call_id": rig.call_id})
    assert again["error"]["code"] == "check_running"
    result = await rig.agent.wait("check:result", check_id=ack["check_id"])
    assert result["kind"] == "identity" and result["verdict"] == "no_match", result
    assert result["details"]["threshold"] == 0.6 and result["details"]["distance"] > 0.6
    name = f"{rig.call_id}-{ack['check_id']}.jpg"
    assert result["evidence_url"] == f"/api/calls/{rig.call_id}/evidence/{name}"
    # the handling agent may see it during the call
    status, body, headers = await hub.get(result["evidence_url"], user="alice")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    await rig.close()
    (webm,) = await find_files(hub, f"{rig.call_id}-customer.webm")
    assert await asyncio.to_thread((webm.parent / name).is_file)  # beside the recordings
    assert (await hub.get(result["evidence_url"]))[0] == 200
    assert (await hub.get(result["evidence_url"], user="carol"))[0] == 403
    for bad_name in ("..%2F..%2Fhub.db", f"{rig.call_id}-chk_zzzzzzzzzzzz.jpg",
                     f"call_{'1' * 16}-{ack['check_id']}.jpg"):
        status, _, _ = await hub.get(f"/api/calls/{rig.call_id}/evidence/{bad_name}")
        assert status == 404, bad_name
    events = await timeline(hub, rig.call_id)
    kinds = [e["kind"] for e in events]
    assert "check.requested" in kinds and "evidence.accessed" in kinds
    (res,) = [e for e in events if e["kind"] == "check.result"]
    assert res["payload"]["verdict"] == "no_match" and res["payload"]["evidence"] == name
    assert res["payload"]["details"]["distance"] > 0.6


async def test_check_refusals_without_media(hub: Hub) -> None:
    rig = await answered_call(hub, "card_loss", None, customer="cus_demo_grace")
    reply = await rig.agent.conn.call("check:identity", {"call_id": rig.call_id})
    assert reply["error"]["code"] == "no_reference_photo"
    reply = await rig.agent.conn.call("check:liveness", {"call_id": rig.call_id})
    assert reply["error"]["code"] == "no_video"
    manager, hub.ctx.analysis = hub.ctx.analysis, None  # CLOUDCOUNTER_VISION_WORKERS=0
    reply = await rig.agent.conn.call("check:liveness", {"call_id": rig.call_id})
    assert reply["error"]["code"] == "vision_unavailable"
    hub.ctx.analysis = manager
    assert (await rig.agent.conn.call("call:hangup", {"call_id": rig.call_id}))["ok"]
    ended = await rig.agent.conn.call("check:identity", {"call_id": rig.call_id})
    assert ended["error"]["code"] == "unknown_call"  # not in progress any more
    await rig.close()


async def test_auto_checks_match_a_still_photo_and_fail_its_liveness(
        hub_factory: Any, obama_still: Path) -> None:
    """password_reset runs identity then liveness on its own; a photo matches but is not alive."""
    hub = await hub_factory(vision_liveness_window_s=2.0)
    rig = await answered_call(hub, "password_reset", obama_still)
    identity = await rig.agent.wait("check:result", kind="identity", timeout=60)
    # the product's verdict; the distance of a still (0.44-0.51 seen) against the 0.6 threshold
    # varies with which frame of the call is compared, so no tighter bound is asserted
    assert identity["verdict"] == "match", identity
    assert identity["details"]["distance"] < identity["details"]["threshold"] == 0.6
    progress = await rig.agent.wait("check:progress", timeout=30)
    assert progress["kind"] == "liveness" and progress["index"] == 0 and progress["total"] == 3
    assert progress["passed_so_far"] == 0 and 0 < progress["expires_in_s"] <= 2.0
    challenge = await rig.customer.wait("liveness:challenge", timeout=30)
    assert challenge["action"] == progress["action"] and challenge["prompt"]
    liveness = await rig.agent.wait("check:result", kind="liveness", timeout=30)
    assert liveness["verdict"] == "fail" and liveness["details"]["reason"] == "timeout"
    assert [c["passed"] for c in liveness["details"]["challenges"]] == [False] * 3
    assert (await rig.customer.wait("liveness:done", timeout=30))["verdict"] == "fail"
    await rig.close()
    events = await timeline(hub, rig.call_id)
    requested = [e for e in events if e["kind"] == "check.requested"]
    assert [(e["actor"], e["payload"]["kind"]) for e in requested] == [
        ("system", "identity"), ("system", "liveness")]
    assert any(e["kind"] == "liveness.challenge" for e in events)
    results = [e["payload"] for e in events if e["kind"] == "check.result"]
    assert [(r["kind"], r["verdict"]) for r in results] == [("identity", "match"),
                                                             ("liveness", "fail")]
    for r in results:
        assert await find_files(hub, r["evidence"])


async def test_liveness_passes_when_the_customer_opens_their_mouth(
        hub_factory: Any, mouth_clip: Path) -> None:
    # The looping clip keeps the mouth closed for up to 4.05 s (5.2 s to 2.05 s of the next
    # loop): an 8 s window always holds a whole opening, however the challenge falls.
    # The clip is a recording, so the prompt is not what starts the opening: the onset window
    # must span the longest gap between two openings' onsets (5.5 s) for any prompt time.
    hub = await hub_factory(vision_liveness_window_s=8.0, vision_liveness_onset_s=6.0)
    no_auto_checks(hub, "card_loss")
    hub.ctx.analysis.rng = random.Random(1)  # test seam: the challenge is open_mouth
    rig = await answered_call(hub, "card_loss", mouth_clip)
    await video_arrived(hub, rig.call_id)
    ack = await rig.agent.conn.call("check:liveness", {"call_id": rig.call_id, "count": 1})
    assert ack["ok"] and ack["challenges"] == ["open_mouth"], ack
    progress = await rig.agent.wait("check:progress", check_id=ack["check_id"])
    assert progress["action"] == "open_mouth" and progress["total"] == 1
    challenge = await rig.customer.wait("liveness:challenge")
    assert challenge["prompt"] == "Open your mouth" and challenge["index"] == 0
    result = await rig.agent.wait("check:result", check_id=ack["check_id"], timeout=45)
    assert result["verdict"] == "pass", result
    (only,) = result["details"]["challenges"]
    assert only["action"] == "open_mouth" and only["passed"] and only["seen_at_s"] > 0
    assert 0.15 <= only["reaction_s"] <= 6.0  # began after the prompt, within the window
    assert result["details"]["pad"]["verdict"] != "attack", result["details"]["pad"]
    assert (await rig.customer.wait("liveness:done"))["verdict"] == "pass"
    stats = hub.ctx.analysis.calls[rig.call_id].stats
    await rig.close()
    assert stats.analysed >= 10


# ------------------------------------------------------------------ unit: sampling, alerts
def test_sampler_keeps_the_rate_and_drops_when_the_pool_is_busy() -> None:
    s = Sampler(SamplingConfig(idle_fps=3, challenge_fps=20))
    frames = [i / 30 for i in range(90)]  # 3 s at 30 fps
    assert sum(s.admit(t, fast=False, busy=0, capacity=1) for t in frames) == 9
    s = Sampler(SamplingConfig(idle_fps=3, challenge_fps=20))
    assert sum(s.admit(t, fast=True, busy=0, capacity=1) for t in frames) == 60
    s = Sampler()
    assert not any(s.admit(t, fast=False, busy=1, capacity=1) for t in frames)
    assert s.stats.dropped_busy == 90
    assert s.admit(3.0, fast=True, busy=1, capacity=1)  # one may wait during a challenge
    assert not s.admit(3.5, fast=True, busy=2, capacity=1)
    assert s.admit(3.51, fast=False, busy=0, capacity=1, urgent=True)  # a check waits


def test_alerts_are_debounced_and_sent_on_change() -> None:
    d = AlertDebouncer(hold_s=1.5)
    assert [d.update(t / 3, "no_face") for t in range(4)] == [None] * 4  # 1 s: not yet
    assert d.update(1.0, "face_ok") is None  # back before the hold: nothing to report
    out = [d.update(1.0 + t / 3, "no_face") for t in range(6)]
    assert out[-1] == "no_face" and out.count("no_face") == 1
    assert [d.update(3.0 + t / 3, "face_ok") for t in range(6)][-1] == "face_ok"


class FakePool:
    """The pool's interface with a fixed delay; ``others`` are analyses of other calls."""

    def __init__(self, faces: list[int], delay: float = 0.01) -> None:
        self.size, self.others, self.delay, self.faces = 1, 0, delay, faces
        self.submitted = 0
        self._mine = 0

    @property
    def busy(self) -> int:
        return self.others + self._mine

    async def analyse(self, frame: Any, want_descriptor: bool = False, *,
                      stream: str | None = None, want_cues: bool = False) -> FrameAnalysis:
        self.submitted += 1
        self._mine += 1
        try:
            await asyncio.sleep(self.delay)
        finally:
            self._mine -= 1
        n = self.faces[int(frame[0, 0, 0])]
        face = FaceAnalysis(FaceBox(0, 0, 10, 10, 1.0), np.zeros((68, 2), np.float32),
                            FaceMeasures(0.3, 0.05, 0.0, 0.0, 0.0))
        return FrameAnalysis(640, 480, (face,) * n)


class FakeSource:
    def __init__(self) -> None:
        self.frames: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
        self.closed = False
        self.taken = 0  # frames handed to the analysis
        self.calls = 0  # recv() calls
        self._calls_at_take = 0

    async def recv(self) -> Any:
        self.calls += 1
        frame = await self.frames.get()
        if frame is None:
            raise TapClosed
        self.taken += 1
        self._calls_at_take = self.calls
        return frame

    def handled(self, count: int) -> bool:
        """``count`` frames were taken and the analysis came back for the next one."""
        return self.taken == count and self.calls > self._calls_at_take

    def close(self) -> None:
        self.closed = True


class FakeOutlet:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.journal_log: list[tuple[str, dict[str, Any]]] = []

    def journal(self, actor: str, kind: str, payload: dict[str, Any]) -> None:
        self.journal_log.append((kind, payload))

    async def to_agent(self, event: str, data: dict[str, Any]) -> None:
        self.sent.append((event, data))

    async def to_customer(self, event: str, data: dict[str, Any]) -> None:
        self.sent.append((event, data))

    async def save_evidence(self, name: str, rgb: Any) -> bool:
        return True


async def test_call_analysis_samples_drops_and_alerts_with_a_fake_pool() -> None:
    """0.6 s of a face, 1 s of none, then the face, at 30 frames per second of the call's
    clock: 10 analysed per second, no_face then face_ok; nothing analysed while other calls
    keep the pool busy. The clock is the test's: each frame is handed over and fully
    handled before the next, so the counts do not depend on the machine's speed."""
    pool = FakePool(faces=[1, 0], delay=0)
    source, outlet = FakeSource(), FakeOutlet()
    now = [100.0]
    config = AnalysisConfig(sampling=SamplingConfig(idle_fps=10), alert_hold_s=0.3, tick_s=0.05)
    analysis = CallAnalysis("call_" + "a" * 16, source, pool, outlet, config,
                            convert=lambda f: _ready(f), clock=lambda: now[0])
    task = asyncio.create_task(analysis.run())

    async def play(seconds: float, pixel: int) -> None:
        for _ in range(round(seconds * 30)):
            now[0] += 1 / 30
            count = source.taken + 1
            await source.frames.put(np.full((4, 4, 3), pixel, np.uint8))
            while not source.handled(count):
                await asyncio.sleep(0.001)

    await play(0.6, 0)
    await play(1.0, 1)
    await play(1.0, 0)
    analysed = pool.submitted
    pool.others = 1
    await play(0.5, 1)
    assert pool.submitted == analysed  # busy: dropped, not queued
    await source.frames.put(None)
    await task
    assert source.closed
    assert abs(analysed - 2.6 * 10) <= 1, analysed  # 2.6 s of video at 10 analysed/s
    alerts = [d["signal"] for e, d in outlet.sent if e == "analysis:alert"]
    assert alerts == ["no_face", "face_ok"]
    assert [k for k, _ in outlet.journal_log].count("analysis.alert") == 2


async def _ready(frame: Any) -> Any:
    return frame
