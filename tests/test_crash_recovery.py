"""Crash recovery (issue 16): a hub killed mid-call leaves nothing open. The unit part
finalizes torn recordings (plain and sealed); the slow part kills a real hub during a real
call with media, starts it again, and checks the call, the recordings and the simulators."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from cloudcounter.recordings.crypto import EncryptedReader, EncryptedWriter, sha256_and_size
from cloudcounter.recordings.recovery import finalize
from tests.conftest import ROOT, wait_until
from tests.test_webhook_crash import CLI, hub_env, start_hub
from tests.webhook_receiver import free_port

KEY = bytes(range(32))


def torn_webm(path: Path, seconds: float = 4.0) -> bytes:
    """A VP8 WebM cut as a kill would leave it: no cues, no duration, a torn last cluster."""
    with av.open(str(path), "w", format="webm") as out:
        v = out.add_stream("libvpx", rate=30)
        v.width, v.height, v.pix_fmt = 160, 120, "yuv420p"
        v.codec_context.time_base = Fraction(1, 30)
        for i in range(int(seconds * 30)):
            frame = av.VideoFrame.from_ndarray(
                np.full((120, 160, 3), (i * 7) % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            for packet in v.encode(frame):
                out.mux(packet)
        for packet in v.encode(None):
            out.mux(packet)
    data = path.read_bytes()
    return data[:int(len(data) * 0.8)]  # the cues and the tail are gone


def frames_and_duration(path: Path) -> tuple[int, float | None]:
    with av.open(str(path)) as c:
        duration = c.duration / 1e6 if c.duration else None
        return sum(1 for _ in c.decode(video=0)), duration


def test_a_torn_recording_is_finalized_with_a_duration(tmp_path: Path) -> None:
    path = tmp_path / "rec.webm"
    path.write_bytes(torn_webm(tmp_path / "whole.webm"))
    done = finalize(path)
    frames, duration = frames_and_duration(path)
    assert frames > 60 and duration is not None and duration > 2.0
    assert done.packets >= frames and done.duration_s > 2.0
    assert (done.sha256, done.size_bytes) == sha256_and_size(path, None)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".recover-")]


def test_a_torn_sealed_recording_is_finalized_and_sealed_again(tmp_path: Path) -> None:
    plain = torn_webm(tmp_path / "whole.webm")
    path = tmp_path / "rec.webm"
    with EncryptedWriter(path, KEY, chunk=4096) as w:
        w.write(plain)
    with open(path, "r+b") as f:  # the chunk being written at the kill is torn
        f.truncate(path.stat().st_size - 100)
    done = finalize(path, KEY)
    with EncryptedReader(path, KEY) as r:
        (tmp_path / "check.webm").write_bytes(r.read_all())
    frames, duration = frames_and_duration(tmp_path / "check.webm")
    assert frames > 60 and duration is not None
    assert (done.sha256, done.size_bytes) == sha256_and_size(path, KEY)


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rec.webm"
    path.write_bytes(b"not a recording")
    with pytest.raises(Exception):
        finalize(path)
    assert path.read_bytes() == b"not a recording"  # untouched


def seeded_env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    """A hub's environment (``extra`` added) on a migrated database with the demo data."""
    env = hub_env(tmp_path, port) | extra
    for cmd in (["db", "upgrade"], ["demo", "seed"]):
        done = subprocess.run([str(CLI), *cmd], cwd=ROOT, env=env, capture_output=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
    return env


async def recorded_call(url: str, env: dict[str, str], db: Path,
                        logs: Path) -> list[subprocess.Popen[bytes]]:
    """An agent and a customer simulator in a call, both recordings growing; their output
    in ``logs``/agent.log and customer.log."""
    sim = [sys.executable, "-m", "cloudcounter", "sim"]
    sims: list[subprocess.Popen[bytes]] = []
    for name, args in (("agent", ["--username", "alice", "--password", "alice-demo-1",
                                  "--steps", "none"]),
                       ("customer", ["--customer", "cus_demo_joe", "--service", "card_loss",
                                     "--seconds", "600"])):
        with (logs / f"{name}.log").open("wb") as out:
            sims.append(subprocess.Popen([*sim, name, "--url", url, *args], cwd=ROOT, env=env,
                                         stdout=out, stderr=subprocess.STDOUT))

    def recorded_bytes() -> int:
        with sqlite3.connect(db) as conn:
            paths = [r[0] for r in conn.execute("SELECT path FROM recordings")]
        return min((Path(p).stat().st_size if Path(p).exists() else 0 for p in paths),
                   default=0) if len(paths) == 2 else 0
    try:
        await wait_until(lambda: recorded_bytes() > 50_000, 90, "both recordings growing")
    except BaseException:
        for p in sims:
            p.kill()
        raise
    return sims


async def restarted_and_recovered(env: dict[str, str], log: Path, db: Path) -> None:
    """The hub started again on the same database until it has recovered both recordings
    (finalized, on the timeline), then stopped."""
    proc = await start_hub(env, log)
    try:
        def recovered() -> bool:
            with sqlite3.connect(db) as conn:
                return conn.execute("SELECT COUNT(*) FROM recordings WHERE finished_at IS "
                                    "NOT NULL").fetchone()[0] == 2
        await wait_until(recovered, 60, "the recordings finalized")
        await wait_until(lambda: kinds(db).count("recording.recovered") == 2, 30,
                         "the timeline")
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.integration
@pytest.mark.slow
async def test_a_hub_killed_mid_call_ends_it_and_finalizes_its_recordings(
        tmp_path: Path) -> None:
    port = free_port()
    env = seeded_env(tmp_path, port)
    url, db, log = f"http://127.0.0.1:{port}", tmp_path / "hub.db", tmp_path / "hub.log"
    proc = await start_hub(env, log)
    try:
        sims = await recorded_call(url, env, db, tmp_path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    # the simulators notice the hub is gone and fail, instead of hanging
    for p, name in zip(sims, ("agent", "customer")):
        await wait_until(lambda p=p: p.poll() is not None, 60, f"the {name} simulator to exit")  # type: ignore[misc]
        assert p.returncode != 0, (tmp_path / f"{name}.log").read_text()[-2000:]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT state FROM call_sessions").fetchone()[0] == "in_call"
        assert conn.execute("SELECT COUNT(*) FROM recordings WHERE sha256 IS NULL"
                            ).fetchone()[0] == 2

    await restarted_and_recovered(env, log, db)  # the same database: recovery at start-up
    with sqlite3.connect(db) as conn:
        state, reason = conn.execute("SELECT state, end_reason FROM call_sessions").fetchone()
        rows = conn.execute("SELECT path, sha256, size_bytes, duration_s, error "
                            "FROM recordings").fetchall()
    assert (state, reason) == ("ended", "failed")
    assert kinds(db).count("recording.recovered") == 2
    ended = [p for k, p in events(db) if k == "call.ended"]
    assert ended == ['{"reason": "failed", "cause": "hub_restarted"}']
    for path, sha, size, duration, error in rows:
        assert error is None and duration and duration > 0.5
        assert (sha, size) == sha256_and_size(Path(path), None)
        frames, playable = frames_and_duration(Path(path))
        assert frames > 10 and playable is not None  # a player can seek in it now


def events(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return [(k, p) for k, p in conn.execute(
            "SELECT kind, payload FROM call_events ORDER BY call_id, seq")]


def kinds(db: Path) -> list[str]:
    return [k for k, _ in events(db)]
