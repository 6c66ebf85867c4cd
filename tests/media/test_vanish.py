"""A peer that vanishes without hanging up ends its leg (``on_ended``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from cloudcounter.media.call import CallMedia, EndReason

from conftest import HERE, wait_for

# aioice checks consent every 5 s (+-20 %) and gives up after 6 failed checks:
# about 30 s, and there is no supported knob to shorten it. Hence "slow".
CONSENT_TIMEOUT_S = 40.0

pytestmark = pytest.mark.integration


async def _vanish(
    make_call: Callable[..., CallMedia], sig: signal.Signals, timeout: float
) -> tuple[str, EndReason, float]:
    ended: list[tuple[str, EndReason, float]] = []
    call = make_call(on_ended=lambda role, reason: ended.append((role, reason, time.monotonic())))
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, str(HERE / "run_peer.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        answer = await call.answer("customer", json.loads(line)["offer"])
        proc.stdin.write(json.dumps({"answer": answer}) + "\n")
        proc.stdin.flush()
        await wait_for(lambda: call.stats().from_customer.video_frames > 10, 10, "media")
        proc.send_signal(sig)
        gone = time.monotonic()
        await wait_for(lambda: bool(ended), timeout, f"on_ended after {sig.name}")
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    role, reason, at = ended[0]
    return role, reason, at - gone


@pytest.mark.slow
async def test_vanished_customer_ends_its_leg_within_the_consent_timeout(
    make_call: Callable[..., CallMedia],
) -> None:
    # SIGKILL: no RTCP BYE, no DTLS close; on loopback the hub gets no ICMP
    # either, so only ICE consent freshness can notice the customer is gone.
    role, reason, after = await _vanish(make_call, signal.SIGKILL, CONSENT_TIMEOUT_S)
    assert (role, reason) == ("customer", EndReason.CONNECTION_LOST)
    assert after <= CONSENT_TIMEOUT_S
