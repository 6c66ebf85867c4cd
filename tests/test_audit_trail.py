"""The access log nothing bypasses (issue 13): recordings and evidence logged once per
viewing session whatever the Range, the call search logged, opaque recording ids, and
recordings and evidence sealed at rest with range playback intact."""

from __future__ import annotations

import asyncio
import io
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from sqlalchemy import select

from cloudcounter.db.models import CallEvent, CallSession, Recording, User
from cloudcounter.db.security_models import SecurityEvent
from cloudcounter.recordings import crypto
from tests.conftest import Hub

pytestmark = pytest.mark.integration
CALL_ID = "call_00000000000000a1"
CHECK = "chk_0123456789ab"
KEY_B64 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # 32 bytes, base64


def webm(frames: int = 60) -> bytes:
    """A small real VP8 WebM."""
    out = io.BytesIO()
    with av.open(out, "w", format="webm") as c:
        s = c.add_stream("libvpx", rate=30)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.bit_rate = 8_000_000
        rng = np.random.default_rng(7)
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(rng.integers(0, 255, (240, 320, 3), np.uint8),
                                           format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return out.getvalue()


async def recorded_call(hub: Hub, tmp: Path, key: bytes | None = None) -> tuple[str, bytes]:
    """An ended call of alice's with a customer recording and an evidence frame on disk;
    returns the recording's public id and its (plain) bytes."""
    data = webm()
    directory = tmp / "rec"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{CALL_ID}-customer.webm"
    evidence = directory / f"{CALL_ID}-{CHECK}.jpg"
    if key is None:
        path.write_bytes(data)
        evidence.write_bytes(b"\xff\xd8 a jpeg \xff\xd9")
    else:
        path = path.with_suffix(".webm.enc")
        with crypto.EncryptedWriter(path, key) as w:
            w.write(data)
        crypto.write_encrypted(evidence, b"\xff\xd8 a jpeg \xff\xd9", key)
    now = datetime.now(timezone.utc)
    async with hub.ctx.sm() as s, s.begin():
        alice = (await s.scalars(select(User).where(User.username == "alice"))).one()
        s.add(CallSession(id=CALL_ID, customer_id="cus_demo_barack", service_code="card_loss",
                          state="ended", agent_id=alice.id, requested_at=now, ended_at=now,
                          outcome="resolved", notes="customer confirmed"))
        await s.flush()
        rec = Recording(call_id=CALL_ID, participant="customer", path=str(path), codecs=["vp8"],
                        size_bytes=len(data))
        s.add(rec)
        await s.flush()
        public_id = rec.public_id
    return public_id, data


async def staff_session(hub: Hub, user: str = "audrey") -> aiohttp.ClientSession:
    return aiohttp.ClientSession(headers={"Authorization": f"Bearer {await hub.agent_token(user)}"})


async def timeline(hub: Hub, kind: str) -> list[CallEvent]:
    await hub.ctx.journal.flush()
    async with hub.ctx.sm() as s:
        return list((await s.scalars(select(CallEvent).where(
            CallEvent.call_id == CALL_ID, CallEvent.kind == kind))).all())


async def security(hub: Hub, kind: str) -> list[SecurityEvent]:
    await hub.ctx.security.log.flush()
    async with hub.ctx.sm() as s:
        return list((await s.scalars(select(SecurityEvent).where(
            SecurityEvent.kind == kind))).all())


RANGES = [None, "bytes=-100", "bytes=1-", "BYTES=0-", "bytes=00-", "bytes=0-99",
          "bytes=500-999", "bytes=0-10,20-30", "items=0-9", "bytes=x-y"]


async def test_every_viewing_is_logged_once_whatever_the_range(hub: Hub, tmp_path: Path) -> None:
    rec_id, data = await recorded_call(hub, tmp_path)
    for n, header in enumerate(RANGES, start=1):
        async with await staff_session(hub) as http:  # a new viewing session each time
            for _ in range(3):  # a player's several requests of one viewing
                headers = {"Range": header} if header else {}
                async with http.get(f"{hub.url}/api/recordings/{rec_id}", headers=headers) as r:
                    assert r.status in (200, 206, 416), (header, r.status)
                    body = await r.read()
                    assert r.status == 416 or (body and body in data)
        events = await timeline(hub, "recording.accessed")
        assert len(events) == n, (header, len(events))  # exactly one more per viewing
        assert events[-1].actor == "auditor:audrey"
        assert events[-1].payload == {"recording_id": rec_id, "participant": "customer"}
    logged = await security(hub, "recording.accessed")
    assert len(logged) == len(RANGES) and logged[0].source == "127.0.0.1"


async def test_evidence_is_logged_once_per_viewing_and_for_its_agent(
        hub: Hub, tmp_path: Path) -> None:
    await recorded_call(hub, tmp_path)
    url = f"/api/calls/{CALL_ID}/evidence/{CALL_ID}-{CHECK}.jpg"
    for user in ("audrey", "alice"):
        async with await staff_session(hub, user) as http:
            for _ in range(3):
                async with http.get(hub.url + url, headers={"Range": "bytes=2-"}) as r:
                    assert r.status in (200, 206)
    events = await timeline(hub, "evidence.accessed")
    assert [e.actor for e in events] == ["auditor:audrey", "agent:alice"]
    async with await staff_session(hub, "bob") as http:  # not bob's call
        async with http.get(hub.url + url) as r:
            assert r.status == 403
    assert len(await timeline(hub, "evidence.accessed")) == 2


async def test_recording_ids_are_opaque(hub: Hub, tmp_path: Path) -> None:
    rec_id, _ = await recorded_call(hub, tmp_path)
    async with await staff_session(hub) as http:
        for path in ["1", "+1", "%201", "01", "1.0", "-1", "rec_1", "rec_" + "0" * 24,
                     "rec_" + "G" * 24, "%2e%2e%2fhub.db", rec_id.upper(), rec_id + "%00"]:
            async with http.get(f"{hub.url}/api/recordings/{path}") as r:
                assert r.status == 404, path
        async with http.get(f"{hub.url}/api/recordings/{rec_id}") as r:
            assert r.status == 200
        async with http.get(f"{hub.url}/api/calls/{CALL_ID}") as r:
            rec = (await r.json())["recordings"][0]
    assert rec["id"] == rec_id and rec["url"] == f"/api/recordings/{rec_id}"
    assert len(rec_id) == 28 and rec_id.startswith("rec_")


async def test_the_call_search_is_logged(hub: Hub, tmp_path: Path) -> None:
    await recorded_call(hub, tmp_path)
    async with await staff_session(hub) as http:
        async with http.get(hub.url + "/api/calls?q=Obama&limit=5") as r:
            body = await r.json()
            assert r.status == 200 and body["total"] == 1
            assert body["calls"][0]["notes"] == "customer confirmed"
        async with http.get(hub.url + "/api/calls?q=%1b[31m") as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_query"
    (event,) = await security(hub, "calls.searched")
    assert event.actor == "auditor:audrey" and event.source == "127.0.0.1"
    assert event.details["query"] == {"q": "Obama", "limit": 5}
    assert event.details["returned"] == [CALL_ID] and event.details["total"] == 1


async def test_sealed_recordings_play_with_ranges(hub_factory: Any, tmp_path: Path) -> None:
    hub = await hub_factory(at_rest_key=KEY_B64)
    key = hub.settings.at_rest_key_bytes
    assert key is not None
    rec_id, data = await recorded_call(hub, tmp_path, key)
    on_disk = next((tmp_path / "rec").glob("*.webm.enc")).read_bytes()
    assert on_disk[:8] == crypto.MAGIC and data[:64] not in on_disk  # no WebM at rest
    size = len(data)
    assert size > 2 * crypto.CHUNK
    async with await staff_session(hub) as http:
        url = f"{hub.url}/api/recordings/{rec_id}"
        async with http.get(url) as r:
            assert r.status == 200 and await r.read() == data
        for header, start, end in [("bytes=0-99", 0, 100), ("bytes=-100", size - 100, size),
                                   ("bytes=1000-", 1000, size),
                                   ("bytes=65530-65545", 65530, 65546)]:
            async with http.get(url, headers={"Range": header}) as r:
                assert r.status == 206, header
                assert await r.read() == data[start:end]
                assert r.headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}"
        async with http.get(url, headers={"Range": f"bytes={size + 10}-"}) as r:
            assert r.status == 416
        async with http.get(f"{hub.url}/api/calls/{CALL_ID}/evidence/{CALL_ID}-{CHECK}.jpg"
                            ) as r:
            assert r.status == 200 and await r.read() == b"\xff\xd8 a jpeg \xff\xd9"
    decoded = await asyncio.to_thread(lambda: sum(1 for _ in av.open(io.BytesIO(data))
                                                  .decode(video=0)))
    assert decoded == 60


# -- the at-rest format, pure ------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1, 100, crypto.CHUNK - 1, crypto.CHUNK, crypto.CHUNK + 1,
                                  3 * crypto.CHUNK + 17])
def test_sealed_files_round_trip_and_read_any_range(tmp_path: Path, size: int) -> None:
    key = os.urandom(32)
    data = os.urandom(size)
    path = tmp_path / "f.enc"
    with crypto.EncryptedWriter(path, key) as w:  # written in odd pieces, with a rewrite
        for i in range(0, size, 5000):
            w.write(data[i:i + 5000])
        if size > 10:
            w.seek(3)
            w.write(data[3:9])
    with crypto.EncryptedReader(path, key) as r:
        assert r.size == size and r.read_all() == data
        for a, b in [(0, size), (size // 3, size // 2), (max(0, size - 7), size)]:
            assert b"".join(r.read_range(a, b)) == data[a:b]
    assert crypto.sha256_and_size(path, key)[1] == size


def test_tampering_truncation_and_a_wrong_key_are_detected(tmp_path: Path) -> None:
    key = os.urandom(32)
    path = tmp_path / "f.enc"
    with crypto.EncryptedWriter(path, key) as w:
        w.write(os.urandom(3 * crypto.CHUNK))
    with pytest.raises(crypto.AtRestError) as info:
        crypto.EncryptedReader(path, os.urandom(32))
    assert info.value.code == "at_rest_key_mismatch"
    raw = bytearray(path.read_bytes())
    raw[crypto.HEADER + crypto.CHUNK + 100] ^= 1  # a bit flipped in the second chunk
    path.write_bytes(bytes(raw))
    with crypto.EncryptedReader(path, key) as r, pytest.raises(crypto.AtRestError):
        r.chunk(1)
    # two chunks swapped: each is bound to its place
    stride = crypto.CHUNK + crypto.OVERHEAD
    good = tmp_path / "g.enc"
    with crypto.EncryptedWriter(good, key) as w:
        w.write(os.urandom(3 * crypto.CHUNK))
    raw = bytearray(good.read_bytes())
    a = slice(crypto.HEADER, crypto.HEADER + stride)
    b = slice(crypto.HEADER + stride, crypto.HEADER + 2 * stride)
    raw[a], raw[b] = raw[b], raw[a]
    good.write_bytes(bytes(raw))
    with crypto.EncryptedReader(good, key) as r, pytest.raises(crypto.AtRestError):
        r.chunk(0)
